package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/search"
)

// TestSearchKeysCLI: keys create makes search keys and list shows them;
// rotate -search gives new ones, after which reencrypt seals exact-match
// tokens under the new exact-match key and makes the index words of a
// words value again, so lookups and searches find the stored rows; the
// audit trail records the rotation.
func TestSearchKeysCLI(t *testing.T) {
	ring, trail, polPath := keysPolicy(t, t.TempDir(), `search: {index_chars: 10}
orgs: [{id: org_a}]
routes:
  - {name: hook, match: {path: "/hooks/{org}"}, auth: none, org_from: {path_param: org}, encrypt_request: [{field: "form:Body", searchable: words}]}
`)
	cli := func(args ...string) string { t.Helper(); return mustRun(t, args...) }
	cli("keys", "init", "-keyring", ring)
	cli("keys", "create", "-config", polPath, "-org", "org_a")
	if list := cli("keys", "list", "-config", polPath); !strings.Contains(list, "exact-match key") || !strings.Contains(list, "index key") {
		t.Errorf("list: %s", list)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *keys.Keyring {
		t.Helper()
		k, err := openKeyring(context.Background(), pol.File.Keys, pol.File.Orgs, nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// A row as phiguard stores it: a words value and an exact value.
	indexed := func(k *keys.Keyring, text string) string {
		tok, _ := k.Encrypt(context.Background(), "org_a", []byte(`"`+text+`"`))
		out, _, err := search.AppendIndex([]byte(tok), text, pol.Search.Words, func(dst, w []byte) ([]byte, error) {
			return k.AppendIndexWord(dst, "org_a", w, pol.Search.IndexChars)
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	k := open()
	oldBody := indexed(k, "chest pain")
	phone, _ := k.AppendEncryptExact(context.Background(), nil, "org_a", []byte(`"+15551234567"`))
	row := `{"body":"` + oldBody + `","phone":"` + string(phone) + `"}` + "\n"

	if out := cli("keys", "rotate", "-config", polPath, "-org", "org_a", "-search"); !strings.Contains(out, "new primary search keys") {
		t.Errorf("rotate -search: %q", out)
	}
	k = open()
	if indexed(k, "chest pain") == oldBody {
		t.Fatal("the index words did not change with the index key")
	}
	stdin = strings.NewReader(row)
	defer func() { stdin = os.Stdin }()
	var outBuf, errBuf bytes.Buffer
	if err := run(context.Background(), []string{"keys", "reencrypt", "-config", polPath}, &outBuf, &errBuf); err != nil {
		t.Fatalf("reencrypt: %v %s", err, errBuf.String())
	}
	var got struct{ Body, Phone string }
	if err := json.Unmarshal(outBuf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	_, newWords, _ := strings.Cut(indexed(k, "chest pain"), " ")
	_, gotWords, _ := strings.Cut(got.Body, " ")
	if gotWords != newWords || strings.Count(gotWords, " ") != 1 {
		t.Errorf("re-indexed body %q: want index words %q", got.Body, newWords)
	}
	newPhone, _ := k.AppendEncryptExact(context.Background(), nil, "org_a", []byte(`"+15551234567"`))
	if got.Phone != string(newPhone) || got.Phone == string(phone) {
		t.Errorf("phone %q after reencrypt, want the new exact token %q", got.Phone, newPhone)
	}
	if !strings.Contains(errBuf.String(), "2 tokens sealed again") {
		t.Errorf("report %q", errBuf.String())
	}
	// Without the policy, index words cannot be made again as it says.
	stdin = strings.NewReader(row)
	if _, _, err := runCLI(t, "keys", "reencrypt", "-keyring", ring); exitCode(err) != 2 || !strings.Contains(err.Error(), "-config") {
		t.Errorf("reencrypt of searchable values without the policy: %v", err)
	}
	mustOpen(t, k, "org_a", strings.SplitN(got.Body, " ", 2)[0], "chest pain")
	raw, _ := os.ReadFile(trail)
	if !bytes.Contains(raw, []byte(`"event":"key_search_rotate"`)) || bytes.Contains(raw, []byte("chest")) {
		t.Errorf("audit trail:\n%s", raw)
	}
}

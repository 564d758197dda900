package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phiguard/phiguard/keys"
)

// TestCheckKeys: check -keys opens the keyring as serve would and names
// each org whose keys are missing, do not unwrap, or lack the search keys
// the policy's searchable fields need; with every org in order it passes.
func TestCheckKeys(t *testing.T) {
	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring")
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: j.json}}
keys: {keyring: keyring}
orgs: [{id: org_a}, {id: org_b}]
routes:
  - name: contacts
    match: {path: /contacts}
    encrypt_request: [{field: "$.phone", searchable: exact}]
`), 0o600)
	cli := func(args ...string) (string, string, error) {
		t.Helper()
		return runCLI(t, args...)
	}
	if _, _, err := cli("keys", "init", "-keyring", keyring); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := cli("keys", "create", "-keyring", keyring, "-org", "org_a"); err != nil {
		t.Fatal(err, stderr)
	}
	out, stderr, err := cli("check", "-config", pol, "-keys")
	if exitCode(err) != 1 || !strings.Contains(stderr, "keys: org_b: no keyset") || !strings.Contains(out, "keys: org_a: ok") {
		t.Errorf("org_b without keys: %v\n%s\n%s", err, out, stderr)
	}
	if _, stderr, err := cli("keys", "create", "-keyring", keyring, "-org", "org_b"); err != nil {
		t.Fatal(err, stderr)
	}
	out, stderr, err = cli("check", "-config", pol, "-keys")
	if err != nil || strings.Count(out, ": ok (wrapped by") != 2 {
		t.Errorf("every org with keys: %v\n%s\n%s", err, out, stderr)
	}
	// A master key that is not the keyring's: nothing unwraps.
	other := filepath.Join(dir, "other")
	if _, _, err := cli("keys", "init", "-keyring", other); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PHIGUARD_MASTER_KEY", readFile(t, filepath.Join(other, "master.json")))
	_, stderr, err = cli("check", "-config", pol, "-keys")
	if exitCode(err) != 1 || !strings.Contains(stderr, "org_a: its keyset does not unwrap") || !strings.Contains(stderr, "2 organization(s)") {
		t.Errorf("the wrong master key: %v\n%s", err, stderr)
	}
	noKeys := filepath.Join(dir, "nokeys.yaml")
	os.WriteFile(noKeys, []byte("version: 1\ningress: {upstream: \"http://127.0.0.1:8080\"}\nroutes:\n  - {name: h, match: {path: /h}, auth: none}\n"), 0o600)
	if _, _, err := cli("check", "-config", noKeys, "-keys"); exitCode(err) != 2 {
		t.Errorf("-keys without a keys section: %v, want a usage error", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCheckWarnings: a policy that loads but probably does not say what
// its author meant passes check (exit 0) with each warning on stderr, at
// its line, naming its route.
func TestCheckWarnings(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte(`version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: j.json}}
keys: {keyring: k}
orgs: [{id: org_a}]
routes:
  - name: read
    match: {path: "/m/{id}", methods: [GET]}
    decrypt_response: ["$.body"]
`), 0o600)
	out, stderr, err := runCLI(t, "check", "-config", pol)
	if err != nil || !strings.Contains(out, ": ok (1 routes") || !strings.Contains(stderr, pol+":9:23: warning: routes[0].decrypt_response (route read): no readers") {
		t.Errorf("got %v\n%s\n%s", err, out, stderr)
	}
}

// TestOrgKeysVerdict: what check -keys says of each state an org's keys
// can be in, searchable fields or not.
func TestOrgKeysVerdict(t *testing.T) {
	withSearch := keys.OrgInfo{Wrap: keys.Wrap{Provider: "local", Key: "master:ab"}, Primary: 0x1234, Exact: []keys.KeyStatus{{KeyInfo: keys.KeyInfo{ID: 1}, Status: "enabled"}}}
	noSearch := keys.OrgInfo{Wrap: keys.Wrap{Provider: "local", Key: "master:ab"}, Primary: 0x1234}
	shredded := keys.OrgInfo{Shredded: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	for _, c := range []struct {
		name                           string
		info                           keys.OrgInfo
		known, unavailable, searchable bool
		want                           string
		bad                            bool
	}{
		{"missing", keys.OrgInfo{}, false, false, false, "no keyset in kr", true},
		{"does not unwrap", withSearch, true, true, false, "does not unwrap", true},
		{"shredded", shredded, true, false, true, "shredded 2026-03-01", false},
		{"no search keys, searchable fields", noSearch, true, false, true, "no search keys, and routes have searchable fields", true},
		{"no search keys, none needed", noSearch, true, false, false, "ok (wrapped by local master:ab, primary 00001234)", false},
		{"ok", withSearch, true, false, true, "ok (wrapped by local master:ab, primary 00001234)", false},
	} {
		line, bad := orgKeysVerdict("org_a", "kr", c.info, c.known, c.unavailable, c.searchable)
		if bad != c.bad || !strings.Contains(line, c.want) {
			t.Errorf("%s: got %q %v, want %q %v", c.name, line, bad, c.want, c.bad)
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// TestKeyLifecycleCLI runs the lifecycle as an operator would, end to
// end: tokens stored under the first key; rotate; reencrypt the stored
// JSON lines; retire the first key; expire by the policy's schedule;
// shred. Old and new values are read after each step, and every step
// leaves an audit record naming the operator.
func TestKeyLifecycleCLI(t *testing.T) {
	dir := t.TempDir()
	ring, trail, polPath := keysPolicy(t, dir, `orgs:
  - {id: org_a, rotate_every: 720h, retain: 2190d}
  - {id: org_b}
routes:
  - {name: hook, match: {path: "/hooks/{org}"}, auth: none, org_from: {path_param: org}, encrypt_request: ["form:Body"]}
`)
	cli := func(args ...string) string { t.Helper(); return mustRun(t, args...) }
	cli("keys", "init", "-keyring", ring)
	cli("keys", "create", "-config", polPath, "-org", "org_a")
	cli("keys", "create", "-config", polPath, "-org", "org_b")
	open := func() *keys.Keyring {
		t.Helper()
		pol, err := policy.Load(polPath)
		if err != nil {
			t.Fatal(err)
		}
		k, err := openKeyring(context.Background(), pol.File.Keys, pol.File.Orgs, nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k := open()
	first, _ := k.Info("org_a")
	seal := func(k *keys.Keyring, org, v string) string {
		t.Helper()
		tok, err := k.Encrypt(context.Background(), org, []byte(`"`+v+`"`))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	oldA, oldB := seal(k, "org_a", "old a"), seal(k, "org_b", "old b")
	stored := `{"id":1,"body":"` + oldA + `","meta":{"n":1}}` + "\n" + `{"id":2,"notes":["` + oldB + `","plain"]}` + "\n"

	out := cli("keys", "rotate", "-config", polPath, "-org", "org_a")
	k = open()
	second, _ := k.Info("org_a")
	if second.Primary == first.Primary || !strings.Contains(out, "new primary key") {
		t.Fatalf("rotate: %q; primary %08x, was %08x", out, second.Primary, first.Primary)
	}
	mustOpen(t, k, "org_a", oldA, "old a")
	newA := seal(k, "org_a", "new a")

	// reencrypt the stored rows: org_a's token moves to the new primary,
	// org_b's is already under its primary; the rest is untouched.
	stdin = strings.NewReader(stored)
	defer func() { stdin = os.Stdin }()
	var outBuf, errBuf bytes.Buffer
	if err := run(context.Background(), []string{"keys", "reencrypt", "-config", polPath}, &outBuf, &errBuf); err != nil {
		t.Fatalf("reencrypt: %v %s", err, errBuf.String())
	}
	if !strings.Contains(errBuf.String(), "2 values; 1 tokens sealed again") || !strings.Contains(errBuf.String(), "1 already as they would be") {
		t.Errorf("reencrypt report: %q", errBuf.String())
	}
	rows := bufio.NewScanner(&outBuf)
	var row1 struct {
		ID   int
		Body string
		Meta map[string]int
	}
	rows.Scan()
	if err := json.Unmarshal(rows.Bytes(), &row1); err != nil || row1.ID != 1 || row1.Meta["n"] != 1 {
		t.Fatalf("first row after reencrypt %q: %v", rows.Text(), err)
	}
	if tk, _ := keys.ParseToken(row1.Body); tk.KeyID != second.Primary {
		t.Errorf("reencrypted token under key %08x, want the new primary %08x", tk.KeyID, second.Primary)
	}
	rows.Scan()
	if !strings.Contains(rows.Text(), oldB) || !strings.Contains(rows.Text(), `"plain"`) {
		t.Errorf("second row changed: %s", rows.Text())
	}

	// Retire the first key: the reencrypted value opens, the old one never.
	if _, _, err := runCLI(t, "keys", "retire", "-config", polPath, "-org", "org_a", "-key", hex8(first.Primary), "-confirm", "x"); exitCode(err) != 2 {
		t.Errorf("retire without a matching -confirm: %v", err)
	}
	retire := []string{"keys", "retire", "-config", polPath, "-org", "org_a", "-key", hex8(first.Primary), "-confirm", hex8(first.Primary)}
	if _, _, err := runCLI(t, retire...); exitCode(err) != 2 {
		t.Errorf("retire with no evidence: %v", err)
	}
	// The export before reencrypt still holds the old key's token.
	before, after := filepath.Join(dir, "before.jsonl"), filepath.Join(dir, "after.jsonl")
	writeFile(t, before, stored)
	writeFile(t, after, outBuf.String())
	if _, _, err := runCLI(t, append(retire, "-scan", after, "-scan", before)...); err == nil || !strings.Contains(err.Error(), before+" holds 1 token(s) of key "+hex8(first.Primary)) {
		t.Errorf("retire while an export holds a token of the key: %v", err)
	}
	mustOpen(t, open(), "org_a", oldA, "old a")
	if out := cli(append(retire, "-scan", after)...); !strings.Contains(out, "no token of the key") {
		t.Errorf("retire: %q", out)
	}
	k = open()
	mustOpen(t, k, "org_a", row1.Body, "old a")
	mustOpen(t, k, "org_a", newA, "new a")
	if _, err := k.Decrypt(context.Background(), "org_a", []byte(oldA)); !errors.Is(err, keys.ErrDecrypt) {
		t.Errorf("a token of the retired key: %v", err)
	}

	// expire: org_a's primary is fresh and nothing is past retention.
	if out := cli("keys", "expire", "-config", polPath); !strings.Contains(out, "organization org_a: new primary none; destroyed 0 key(s)") || strings.Contains(out, "org_b") {
		t.Errorf("expire: %q", out)
	}

	// shred org_b: its values are gone, org_a's are not.
	if _, _, err := runCLI(t, "keys", "shred", "-config", polPath, "-org", "org_b", "-confirm", "org_a"); exitCode(err) != 2 {
		t.Errorf("shred with the wrong -confirm: %v", err)
	}
	cli("keys", "shred", "-config", polPath, "-org", "org_b", "-confirm", "org_b")
	k = open()
	if _, err := k.Decrypt(context.Background(), "org_b", []byte(oldB)); !errors.Is(err, keys.ErrShredded) {
		t.Errorf("a shredded org's token: %v", err)
	}
	mustOpen(t, k, "org_a", newA, "new a")
	if list := cli("keys", "list", "-config", polPath); !strings.Contains(list, "org_b") {
		t.Errorf("list after shred: %q", list)
	}

	raw, err := os.ReadFile(trail)
	if err != nil {
		t.Fatal(err)
	}
	for _, event := range []string{"key_create", "key_rotate", "key_reencrypt", "key_retire", "key_expire", "key_shred"} {
		if !bytes.Contains(raw, []byte(`"event":"`+event+`"`)) {
			t.Errorf("no %s record in the audit trail:\n%s", event, raw)
		}
	}
	if !bytes.Contains(raw, []byte(`"operator":`)) || bytes.Contains(raw, []byte("old a")) {
		t.Errorf("audit trail without operator, or with a value:\n%s", raw)
	}
}

// keysPolicy writes DIR/policy.yaml with its keyring (DIR/keyring) and
// audit trail (DIR/audit.jsonl) in dir, and rest (orgs, routes…) after them.
func keysPolicy(t *testing.T, dir, rest string) (ring, trail, polPath string) {
	t.Helper()
	ring, trail, polPath = filepath.Join(dir, "keyring"), filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "policy.yaml")
	writeFile(t, polPath, `version: 1
ingress: {upstream: "http://127.0.0.1:1"}
keys: {keyring: "`+ring+`"}
audit: {sinks: [{type: file, path: "`+trail+`"}]}
`+rest)
	return ring, trail, polPath
}

// mustRun runs the CLI and returns its standard output; an error fails t.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, errOut)
	}
	return out
}

func hex8(id uint32) string { return fmt.Sprintf("%08x", id) }

func mustOpen(t *testing.T, k *keys.Keyring, org, tok, want string) {
	t.Helper()
	pt, err := k.Decrypt(context.Background(), org, []byte(tok))
	if err != nil || string(pt) != `"`+want+`"` {
		t.Errorf("%s token: %q %v, want %q", org, pt, err, want)
	}
}

// TestReencryptRefusesBadInput: input that is not JSON stops reencrypt
// with the byte offset only (a JSON error would quote member names, which
// can be PHI), after writing the complete values before it.
func TestReencryptRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := runCLI(t, "keys", "init", "-keyring", dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "keys", "create", "-keyring", dir, "-org", "org_a"); err != nil {
		t.Fatal(err)
	}
	stdin = strings.NewReader(`{"a":1}` + "\n" + `{"John Smith 555-0100": tru}`)
	defer func() { stdin = os.Stdin }()
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"keys", "reencrypt", "-keyring", dir}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "input at byte") || !strings.Contains(err.Error(), "1 values before it were written") {
		t.Errorf("bad input: %v", err)
	}
	if strings.Contains(err.Error()+errOut.String(), "John") {
		t.Errorf("the error quotes the input: %v %s", err, errOut.String())
	}
	if strings.TrimSpace(out.String()) != `{"a":1}` {
		t.Errorf("output %q, want the complete value before the error", out.String())
	}
}

// TestReencryptKeepsStdoutForData: with a policy whose audit sink is
// stdout (the default), reencrypt's record goes to stderr, so the data on
// stdout stays what it read.
func TestReencryptKeepsStdoutForData(t *testing.T) {
	dir := t.TempDir()
	ring := filepath.Join(dir, "keyring")
	polPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, polPath, `version: 1
ingress: {upstream: "http://127.0.0.1:1"}
keys: {keyring: "`+ring+`"}
orgs: [{id: org_a}]
routes:
  - {name: hook, match: {path: "/hooks/{org}"}, auth: none, org_from: {path_param: org}, encrypt_request: ["form:Body"]}
`)
	for _, args := range [][]string{{"keys", "init", "-keyring", ring}, {"keys", "create", "-config", polPath, "-org", "org_a"}} {
		if _, _, err := runCLI(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	stdin = strings.NewReader(`{"n":1}`)
	defer func() { stdin = os.Stdin }()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"keys", "reencrypt", "-config", polPath}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != `{"n":1}` || !strings.Contains(errOut.String(), `"event":"key_reencrypt"`) {
		t.Errorf("stdout %q, stderr %q: want the data alone on stdout and the record on stderr", out.String(), errOut.String())
	}
}

// TestKeysFlagConflicts: -config with -keyring, or with -master, is a
// usage error rather than one of them silently ignored.
func TestKeysFlagConflicts(t *testing.T) {
	for _, args := range [][]string{
		{"keys", "list", "-config", "p.yaml", "-keyring", "k"},
		{"keys", "list", "-config", "p.yaml", "-master", "m.json"},
		{"keys", "list"},
	} {
		if _, _, err := runCLI(t, args...); exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestRetireScan: the scan finds a key's tokens in any text, including
// a token split between two reads, and only that key's; an unreadable
// export refuses the retire.
func TestRetireScan(t *testing.T) {
	tag := keys.TokenTag("org_a", 0x0badcafe)
	escaped := strings.ReplaceAll(tag, ":", `\u003a`)
	text := `id,body` + "\n" + `1,` + tag + `AAAA` + "\n" + `2,"{""b"":""` + tag + `BBBB""}"` + "\n" +
		`3,` + keys.TokenTag("org_a", 0x0badcaff) + `CCCC,` + keys.TokenTag("org_b", 0x0badcafe) + "CCCC\n" + tag +
		"\n4,https://x.example/?t=" + url.QueryEscape(tag+"DDDD") + "\n" + `{"e":"` + escaped + `EEEE"}` +
		"\n5," + keys.ExactTokenTag("org_a", 0x0badcafe) + "FFFF"
	for _, r := range map[string]io.Reader{"one byte at a time": iotest.OneByteReader(strings.NewReader(text)), "whole": strings.NewReader(text)} {
		stdin = r
		found, read, err := countTag("-", tag, keys.ExactTokenTag("org_a", 0x0badcafe))
		if err != nil || found != 6 || read != int64(len(text)) {
			t.Errorf("countTag: %d found, %d bytes read, %v; want 6, %d", found, read, err, len(text))
		}
	}
	defer func() { stdin = os.Stdin }()
	stdin = iotest.ErrReader(errors.New("disk gone"))
	if _, _, err := countTag("-", tag); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Errorf("a failing read: %v", err)
	}
	if _, _, err := countTag(filepath.Join(t.TempDir(), "missing"), tag); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestDestructiveKeyCommandNeedsTheTrail: a retire or shred whose intent
// the audit trail cannot record is not made.
func TestDestructiveKeyCommandNeedsTheTrail(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("the test writes the trail to /dev/full (every write fails): %v", err)
	}
	dir := t.TempDir()
	ring := filepath.Join(dir, "keyring")
	polPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, polPath, `version: 1
ingress: {upstream: "http://127.0.0.1:1"}
keys: {keyring: "`+ring+`"}
audit: {sinks: [{type: file, path: /dev/full}]}
orgs: [{id: org_a}]
routes:
  - {name: hook, match: {path: "/hooks/{org}"}, auth: none, org_from: {path_param: org}, encrypt_request: ["form:Body"]}
`)
	for _, args := range [][]string{{"keys", "init", "-keyring", ring}, {"keys", "create", "-keyring", ring, "-org", "org_a"}} {
		if _, _, err := runCLI(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := keys.Open(context.Background(), ring, mustLocal(t, ring))
	primary, _ := info.Info("org_a")
	for _, args := range [][]string{
		{"keys", "shred", "-config", polPath, "-org", "org_a", "-confirm", "org_a"},
		{"keys", "retire", "-config", polPath, "-org", "org_a", "-key", hex8(primary.Primary), "-confirm", hex8(primary.Primary), "-unscanned"},
	} {
		_, _, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "not done") {
			t.Errorf("%v with the trail failing: %v, want not done", args[1], err)
		}
	}
	k, err := keys.Open(context.Background(), ring, mustLocal(t, ring))
	if err != nil || !k.Has("org_a") {
		t.Errorf("org_a after refused commands: %v; want its keys intact", err)
	}
}

// TestRotateMasterCLI: a new local master key takes over every keyset of
// the old one; tokens still open, the old master key opens nothing, and
// the audit trail has the rotation.
func TestRotateMasterCLI(t *testing.T) {
	dir := t.TempDir()
	ring := filepath.Join(dir, "keyring")
	for _, args := range [][]string{{"keys", "init", "-keyring", ring}, {"keys", "create", "-keyring", ring, "-org", "org_a"}, {"keys", "create", "-keyring", ring, "-org", "org_b"}} {
		if _, _, err := runCLI(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	oldMaster := mustLocal(t, ring)
	k, err := keys.Open(context.Background(), ring, oldMaster)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := k.Encrypt(context.Background(), "org_b", []byte(`"v"`))
	newPath := filepath.Join(dir, "elsewhere", "master.json")
	out, errOut, err := runCLI(t, "keys", "rotate-master", "-keyring", ring, "-new", newPath)
	if err != nil || !strings.Contains(out, "2 keysets rewrapped") {
		t.Fatalf("rotate-master: %q %v %s", out, err, errOut)
	}
	fresh, err := keys.OpenLocalFile(newPath)
	if err != nil {
		t.Fatal(err)
	}
	k, err = keys.Open(context.Background(), ring, fresh)
	if err != nil {
		t.Fatalf("the keyring under the new master key: %v", err)
	}
	mustOpen(t, k, "org_b", tok, "v")
	if _, err := keys.Open(context.Background(), ring, oldMaster); err == nil {
		t.Error("the old master key still opens the keyring")
	}
	if _, _, err := runCLI(t, "keys", "rotate-master", "-keyring", ring, "-master", newPath, "-new", newPath); err == nil {
		t.Error("rotate-master over an existing file succeeded")
	}
	raw, _ := os.ReadFile(filepath.Join(ring, "audit.jsonl"))
	if !bytes.Contains(raw, []byte(`"event":"key_rotate_master","to":"master:`)) {
		t.Errorf("audit trail:\n%s", raw)
	}
}

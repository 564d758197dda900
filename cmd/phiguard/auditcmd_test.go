package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestAuditTrailVerifiesEndToEnd: phiguard with a signing key serves
// requests and stops; a key command appends its own chain to the same
// file; `phiguard audit verify` with the public key alone proves the file
// whole and closed. One byte changed in a record, and verify names it.
func TestAuditTrailVerifiesEndToEnd(t *testing.T) {
	// The demo policy signs with audit-keys/signing.json and hashes with
	// audit-keys/hash.json, which the stack's `audit keygen` wrote.
	s := startStackWith(t, false, func(pol []byte) []byte {
		return bytes.Replace(pol, []byte("  fail_closed: true"), []byte("  fail_closed: true\n  checkpoint_every: 3"), 1)
	})
	keys := filepath.Join(s.dir, "audit-keys")
	msgs := s.proxyURL + "/api/v1/conversations/cv_1/messages"
	for range 4 {
		if status, body := s.do(t, "POST", msgs, "alice", "application/json", []byte(`{"body":"`+phi+`"}`)); status != 201 {
			t.Fatalf("send: %d %s", status, body)
		}
	}
	s.do(t, "GET", msgs, "mallory", "", nil) // a refusal, on the trail too
	s.stop()
	if out, stderr, err := runCLI(t, "keys", "rotate", "-config", s.policy, "-org", "org_b"); err != nil {
		t.Fatalf("keys rotate: %v %s %s", err, out, stderr)
	}
	trail := filepath.Join(s.dir, "audit.jsonl")
	pub := filepath.Join(keys, "verify.json")
	out, stderr, err := runCLI(t, "audit", "verify", "-pub", pub, "-closed", trail)
	if err != nil || !strings.HasPrefix(out, "ok: 1 files") || strings.Count(out, ", closed") != 2 {
		t.Fatalf("verify: %v\n%s%s", err, out, stderr)
	}
	raw, _ := os.ReadFile(trail)
	if bytes.Count(raw, []byte(`"event":"checkpoint"`)) < 3 {
		t.Errorf("fewer checkpoints than expected:\n%s", raw)
	}
	// Path parameters are keyed-hashed: the investigator finds cv_1's
	// records with the hash key; the raw id is nowhere.
	hashed, _, err := runCLI(t, "audit", "hash", "-key", filepath.Join(keys, "hash.json"), "cv_1")
	if err != nil || !bytes.Contains(raw, []byte(`"path":"/api/v1/conversations/{id}/messages","params":[{"name":"id","value":"`+strings.TrimSpace(hashed)+`"}]`)) || bytes.Contains(raw, []byte("cv_1")) {
		t.Errorf("audit hash cv_1 = %q (%v); the trail:\n%s", hashed, err, raw)
	}
	// One byte changed: the user of a record.
	bad := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(bad, bytes.Replace(raw, []byte(`"user":"mallory"`), []byte(`"user":"mallorz"`), 1), 0o600)
	out, _, err = runCLI(t, "audit", "verify", "-pub", pub, bad)
	if err == nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "altered") {
		t.Errorf("verify of an altered trail: %v\n%s", err, out)
	}
}

func TestAuditCLIErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := runCLI(t, "audit", "keygen", "-out", dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		msg  string
		code int
	}{
		{[]string{"audit"}, "subcommand", 2},
		{[]string{"audit", "sign"}, "unknown audit subcommand", 2},
		{[]string{"audit", "keygen"}, "-out", 2},
		{[]string{"audit", "keygen", "-out", dir}, "exists", 1},
		{[]string{"audit", "verify", "-pub", filepath.Join(dir, "verify.json")}, "at least one audit file", 2},
		{[]string{"audit", "verify", "-pub", filepath.Join(dir, "verify.json"), "a.jsonl", "-closed"}, "flags come before the files", 2},
		{[]string{"audit", "verify", filepath.Join(dir, "x.jsonl")}, "-pub", 2},
		{[]string{"audit", "hash", "-key", filepath.Join(dir, "hash.json")}, "VALUE", 2},
		{[]string{"audit", "hash", "x"}, "-key", 2},
		{[]string{"audit", "hash", "-key", filepath.Join(dir, "signing.json"), "x"}, "not a MAC keyset", 1},
		{[]string{"audit", "hash", "-key", filepath.Join(dir, "nope.json"), "x"}, "audit.hash_key", 1},
		{[]string{"audit", "verify", "-pub", filepath.Join(dir, "signing.json"), filepath.Join(dir, "verify.json")}, "public", 1},
		{[]string{"audit", "verify", "-pub", filepath.Join(dir, "verify.json"), filepath.Join(dir, "missing.jsonl")}, "no such file", 1},
	} {
		_, _, err := runCLI(t, c.args...)
		if err == nil || exitCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v (exit %d), want %q exit %d", c.args, err, exitCode(err), c.msg, c.code)
		}
	}
	// A file that holds no chain.
	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, nil, 0o600)
	if _, _, err := runCLI(t, "audit", "verify", "-pub", filepath.Join(dir, "verify.json"), empty); err == nil || !strings.Contains(err.Error(), "no audit chain") {
		t.Errorf("an empty file: %v", err)
	}
	// A policy whose signing key is not a signing keyset does not serve.
	if _, err := loadSigner(filepath.Join(dir, "verify.json")); err == nil {
		t.Error("the public keyset loaded as a signer")
	}
	if _, err := loadSigner(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "audit.signing_key") {
		t.Errorf("a missing signing key: %v", err)
	}
}

// TestSIEMSinkEndToEnd: with an http sink beside the file, the collector
// receives the same chain, which verifies on its own once phiguard stops;
// the bearer token comes from the environment.
func TestSIEMSinkEndToEnd(t *testing.T) {
	var (
		mu   sync.Mutex
		got  bytes.Buffer
		auth string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got.Write(body)
		auth = r.Header.Get("Authorization")
		mu.Unlock()
	}))
	defer collector.Close()
	t.Setenv("SIEM_TOKEN", "s3cret")
	spool := filepath.Join(t.TempDir(), "spool")
	s := startStackWith(t, false, func(pol []byte) []byte {
		return bytes.Replace(pol, []byte("  sinks: [{type: file, path: audit.jsonl}]"),
			[]byte("  sinks: [{type: file, path: audit.jsonl}, {type: http, url: \""+collector.URL+"\", token_env: SIEM_TOKEN, spool_dir: "+spool+"}]"), 1)
	})
	msgs := s.proxyURL + "/api/v1/conversations/cv_1/messages"
	if status, body := s.do(t, "POST", msgs, "alice", "application/json", []byte(`{"body":"`+phi+`"}`)); status != 201 {
		t.Fatalf("send: %d %s", status, body)
	}
	s.stop()
	mu.Lock()
	sent, token := got.Bytes(), auth
	mu.Unlock()
	file, _ := os.ReadFile(filepath.Join(s.dir, "audit.jsonl"))
	if !bytes.Equal(sent, file) || token != "Bearer s3cret" || bytes.Contains(sent, []byte(phi)) {
		t.Fatalf("the collector got (auth %q):\n%s\nthe file holds:\n%s", token, sent, file)
	}
	trail := filepath.Join(t.TempDir(), "siem.jsonl")
	os.WriteFile(trail, sent, 0o600)
	if out, _, err := runCLI(t, "audit", "verify", "-pub", filepath.Join(s.dir, "audit-keys", "verify.json"), "-closed", trail); err != nil {
		t.Errorf("verify what the SIEM got: %v\n%s", err, out)
	}
}

// TestAuditQueryTailExport: an auditor selects lines by org, user,
// action, route and time, in each format; tails the trail; and exports a
// verified extract that verifies alone and embeds the original lines.
func TestAuditQueryTailExport(t *testing.T) {
	s := startStack(t, false)
	msgs := s.proxyURL + "/api/v1/conversations/cv_1/messages"
	s.do(t, "POST", msgs, "alice", "application/json", []byte(`{"body":"`+phi+`"}`))
	s.do(t, "GET", msgs, "bob", "", nil)
	s.do(t, "GET", msgs, "mallory", "", nil)
	s.stop()
	trail := filepath.Join(s.dir, "audit.jsonl")
	keys := filepath.Join(s.dir, "audit-keys")

	out, _, err := runCLI(t, "audit", "query", "-user", "mallory", "-format", "csv", trail)
	if err != nil || strings.Count(out, "\n") != 2 || !strings.HasPrefix(out, "time,chain,seq,event,org,user") || !strings.Contains(out, ",mallory,agent,list-messages,GET,/api/v1/conversations/{id}/messages,deny,deny,403,") {
		t.Errorf("query -user mallory -format csv: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "audit", "query", "-org", "org_a", "-action", "encrypt", "-format", "json", trail)
	if err != nil || strings.Count(out, "\n") != 2 || strings.Count(out, `"user":"alice"`) != 2 || !strings.Contains(out, `"phase":"intent"`) {
		t.Errorf("query -action encrypt -format json (intent and outcome): %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "audit", "query", "-action", "start", trail)
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, " start ") {
		t.Errorf("query -action start (an event): %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "audit", "query", "-since", "2999-01-01T00:00:00Z", trail)
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("query -since the future: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "audit", "tail", "-n", "2", trail)
	if err != nil || strings.Count(out, "\n") != 3 || !strings.Contains(out, "stop") {
		t.Errorf("tail -n 2: %v\n%s", err, out)
	}

	extract := filepath.Join(t.TempDir(), "extract.jsonl")
	out, stderr, err := runCLI(t, "audit", "export", "-pub", filepath.Join(keys, "verify.json"), "-key", filepath.Join(keys, "signing.json"),
		"-out", extract, "-user", "alice", trail)
	if err != nil || !strings.Contains(out, "exported 2 lines") {
		t.Fatalf("export: %v %s %s", err, out, stderr)
	}
	if out, _, err := runCLI(t, "audit", "verify", "-pub", filepath.Join(keys, "verify.json"), "-closed", extract); err != nil {
		t.Errorf("the extract alone: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(trail)
	ex, _ := os.ReadFile(extract)
	for line := range bytes.Lines(raw) {
		if bytes.Contains(line, []byte(`"user":"alice"`)) {
			quoted, _ := json.Marshal(string(bytes.TrimSuffix(line, []byte("\n"))))
			if !bytes.Contains(ex, quoted) {
				t.Errorf("the extract does not embed %s", line)
			}
		}
	}
	// A source that does not verify is not exported.
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, bytes.Replace(raw, []byte(`"user":"bob"`), []byte(`"user":"bo8"`), 1), 0o600)
	if _, _, err := runCLI(t, "audit", "export", "-pub", filepath.Join(keys, "verify.json"), "-key", filepath.Join(keys, "signing.json"),
		"-out", filepath.Join(t.TempDir(), "x.jsonl"), bad); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("export of an altered source: %v", err)
	}
	for _, args := range [][]string{
		{"audit", "query", trail, "-format"},
		{"audit", "query", "-format", "xml", trail},
		{"audit", "query", "-since", "yesterday", trail},
		{"audit", "query"},
		{"audit", "tail", "-n", "0", trail},
		{"audit", "export", trail},
	} {
		if _, _, err := runCLI(t, args...); err == nil || exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestNoSelectedValueOrPathIdentifierAnywhere: through a whole run, a
// value in a selected field, an identifier in the path and a search term
// in the query appear in no audit line, log line or metric.
func TestNoSelectedValueOrPathIdentifierAnywhere(t *testing.T) {
	s := startStack(t, false)
	const pathID, term = "MRN-CANARY-9931", "CANARYTERMxyz"
	msgs := s.proxyURL + "/api/v1/conversations/" + pathID + "/messages"
	s.do(t, "POST", msgs, "alice", "application/json", []byte(`{"body":"`+phi+` `+term+`"}`))
	s.do(t, "GET", msgs, "alice", "", nil)
	s.do(t, "GET", msgs, "victor", "", nil)
	s.do(t, "GET", msgs, "mallory", "", nil)
	s.do(t, "GET", s.proxyURL+"/api/v1/messages/search?q="+term, "alice", "", nil)
	s.do(t, "GET", s.proxyURL+"/no/such/"+pathID, "alice", "", nil)
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.stop()
	trail := s.read(t, "audit.jsonl")
	if !bytes.Contains(trail, []byte(`"route":"send-message"`)) || !bytes.Contains(metrics, []byte("phiguard_requests_total")) {
		t.Fatalf("the run left no trail or metrics:\n%s", trail)
	}
	for name, out := range map[string][]byte{"audit": trail, "logs": s.logs.Bytes(), "metrics": metrics} {
		for _, secret := range []string{phi, pathID, term} {
			if bytes.Contains(out, []byte(secret)) {
				t.Errorf("%s hold %q", name, secret)
			}
		}
	}
}

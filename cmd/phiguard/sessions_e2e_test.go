package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phiguard/phiguard/internal/redistest"
	"github.com/phiguard/phiguard/policy"
)

// withRedis puts the demo policy's state in the Redis server at url, and
// gives org_a the session limits in extra (", idle_timeout: 1s").
func withRedis(url, extra string) func([]byte) []byte {
	return func(pol []byte) []byte {
		pol = bytes.Replace(pol, []byte("{id: org_a, hipaa: true, enabled_at: 2026-01-01T00:00:00Z"),
			[]byte("{id: org_a, hipaa: true, enabled_at: 2026-01-01T00:00:00Z"+extra), 1)
		return append(pol, []byte("\nstate:\n  store: redis\n  redis: {url: \""+url+"\"}\n")...)
	}
}

// errorCode is the error code of a JSON error answer.
func errorCode(body []byte) string {
	var e struct{ Error struct{ Code string } }
	json.Unmarshal(body, &e)
	return e.Error.Code
}

// TestSessionsRevokedAcrossReplicas: two phiguards share a Redis store;
// `phiguard sessions revoke` (written to Redis) ends the user's and then
// the org's sessions on both, audited; the app is not called for them.
func TestSessionsRevokedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	s := startStackWith(t, false, withRedis(srv.URL(0), ""))
	second, _ := s.launch(t, io.Discard, false)
	msgs := "/api/v1/conversations/cv_1/messages"
	expect := func(step, base, user string, status int, code string) {
		t.Helper()
		hits := s.appHits.Load()
		got, body := s.do(t, "GET", base+msgs, user, "", nil)
		if got != status || errorCode(body) != code {
			t.Errorf("%s: %s on %s: %d %s, want %d %s", step, user, base, got, body, status, code)
		}
		if status != 200 && s.appHits.Load() != hits {
			t.Errorf("%s: %s: the app was called", step, user)
		}
	}
	for _, base := range []string{s.proxyURL, second} {
		expect("before", base, "alice", 200, "")
		expect("before", base, "victor", 200, "")
	}
	if out, stderr, err := runCLI(t, "sessions", "revoke", "-config", s.policy, "-org", "org_a", "-user", "alice"); err != nil || !strings.Contains(out, "every session of user alice in org org_a") {
		t.Fatalf("revoke alice: %v %s %s", err, out, stderr)
	}
	for _, base := range []string{s.proxyURL, second} {
		expect("alice revoked", base, "alice", 401, "session_revoked")
		expect("alice revoked", base, "victor", 200, "")
		expect("alice revoked", base, "bob", 200, "") // org_b tracks no sessions
	}
	if _, stderr, err := runCLI(t, "sessions", "revoke", "-config", s.policy, "-org", "org_a"); err != nil {
		t.Fatalf("revoke org_a: %v %s", err, stderr)
	}
	for _, base := range []string{second, s.proxyURL} {
		expect("org_a revoked", base, "victor", 401, "session_revoked")
	}
	var events, denied int
	for _, line := range bytes.Split(s.read(t, "audit.jsonl"), []byte("\n")) {
		var rec struct{ Event, Org, User, Via, Session, Decision, Reason string }
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		if rec.Event == "session_revoke" && rec.Org == "org_a" && rec.Via == "cli" {
			events++
		}
		if rec.Decision == "deny" && strings.Contains(rec.Reason, "revoked") && rec.Org == "org_a" && strings.HasPrefix(rec.Session, "ses_") {
			denied++
		}
	}
	if events != 2 || denied != 4 {
		t.Errorf("%d session_revoke events (want 2), %d refusals audited with org and session (want 4):\n%s", events, denied, s.read(t, "audit.jsonl"))
	}
}

// TestSessionIdleSeenByReplica: a session used on one phiguard and then
// left idle past the limit is refused by the other: the second knows of
// the first's use (were it a new session there, it would be live).
func TestSessionIdleSeenByReplica(t *testing.T) {
	srv := redistest.Start(t)
	s := startStackWith(t, false, withRedis(srv.URL(0), ", idle_timeout: 1s"))
	second, _ := s.launch(t, io.Discard, false)
	msgs := "/api/v1/conversations/cv_1/messages"
	if status, body := s.do(t, "GET", s.proxyURL+msgs, "alice", "", nil); status != 200 {
		t.Fatalf("first use: %d %s", status, body)
	}
	time.Sleep(1100 * time.Millisecond) // past the limit: idle, whatever else happens
	hits := s.appHits.Load()
	if status, body := s.do(t, "GET", second+msgs, "alice", "", nil); status != 401 || errorCode(body) != "session_idle_timeout" {
		t.Errorf("on the other replica after the idle limit: %d %s, want 401 session_idle_timeout", status, body)
	}
	if status, body := s.do(t, "GET", s.proxyURL+msgs, "alice", "", nil); status != 401 || errorCode(body) != "session_idle_timeout" {
		t.Errorf("back on the first: %d %s, want 401 session_idle_timeout", status, body)
	}
	if s.appHits.Load() != hits {
		t.Error("the app was called for an idle session")
	}
}

// TestSessionStoreDownFailsClosed: with Redis gone, a tracked org's
// caller gets 503 state_unavailable and the app is not called; an
// untracked org's caller is served; /readyz says why; revoking fails
// and says nothing was revoked.
func TestSessionStoreDownFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := startStackWith(t, false, withRedis(srv.URL(0), ""))
	msgs := s.proxyURL + "/api/v1/conversations/cv_1/messages"
	if status, _ := s.do(t, "GET", msgs, "alice", "", nil); status != 200 {
		t.Fatalf("with Redis up: %d", status)
	}
	srv.Stop()
	hits := s.appHits.Load()
	if status, body := s.do(t, "GET", msgs, "alice", "", nil); status != 503 || errorCode(body) != "state_unavailable" {
		t.Errorf("alice with Redis down: %d %s, want 503 state_unavailable", status, body)
	}
	if s.appHits.Load() != hits {
		t.Error("the app was called with the session unchecked")
	}
	if status, body := s.do(t, "GET", msgs, "bob", "", nil); status != 200 {
		t.Errorf("bob (org_b tracks no sessions): %d %s", status, body)
	}
	resp, err := http.Get("http://" + s.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !bytes.Contains(body, []byte("session store")) {
		t.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}
	if _, _, err := runCLI(t, "sessions", "revoke", "-config", s.policy, "-org", "org_a"); err == nil || !strings.Contains(err.Error(), "nothing was revoked") {
		t.Errorf("revoke with Redis down: %v", err)
	}
}

// TestSessionsRevokedInMemory: with the memory store, `phiguard sessions
// revoke` reaches the running phiguard through its admin listener.
func TestSessionsRevokedInMemory(t *testing.T) {
	s := startStack(t, false)
	msgs := s.proxyURL + "/api/v1/conversations/cv_1/messages"
	for _, u := range []string{"alice", "victor"} {
		if status, _ := s.do(t, "GET", msgs, u, "", nil); status != 200 {
			t.Fatalf("%s before: %d", u, status)
		}
	}
	out, stderr, err := runCLI(t, "sessions", "revoke", "-config", s.policy, "-admin", "http://"+s.admin, "-user", "alice")
	if err != nil || !strings.Contains(out, "every session of user alice in every org") {
		t.Fatalf("revoke: %v %s %s", err, out, stderr)
	}
	if status, body := s.do(t, "GET", msgs, "alice", "", nil); status != 401 || errorCode(body) != "session_revoked" {
		t.Errorf("alice after: %d %s", status, body)
	}
	if status, _ := s.do(t, "GET", msgs, "victor", "", nil); status != 200 {
		t.Errorf("victor after: %d", status)
	}
	if !bytes.Contains(s.read(t, "audit.jsonl"), []byte(`"event":"session_revoke"`)) {
		t.Error("no session_revoke event on the trail")
	}
	// A revocation the running phiguard refuses comes back as the error.
	if _, _, err := runCLI(t, "sessions", "revoke", "-config", s.policy, "-admin", "http://"+s.admin, "-org", "org_b"); err == nil || !strings.Contains(err.Error(), "no session tracking") {
		t.Errorf("revoke an untracked org: %v", err)
	}
}

// TestRevokeHandler: the admin endpoint takes revocations only from
// loopback, and only well-formed ones; nothing else reaches the store.
func TestRevokeHandler(t *testing.T) {
	jwks := writeTestJWKS(t)
	dir := filepath.Dir(jwks)
	path := filepath.Join(dir, "policy.yaml")
	os.WriteFile(path, []byte(`version: 1
ingress: {upstream: "http://127.0.0.1:1"}
identity: {jwt: {jwks: jwks.json}}
audit: {sinks: [{type: file, path: audit.jsonl}]}
orgs: [{id: org_a, hipaa: true}, {id: org_b}]
routes:
  - {name: m, match: {path: /m}}
`), 0o600)
	pol, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newSidecar(context.Background(), path, pol, io.Discard, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	h := sc.revokeHandler()
	for _, c := range []struct {
		name, remote, body string
		status             int
		msg                string
	}{
		{"from outside the pod", "10.0.0.7:5555", `{"org":"org_a"}`, 403, "loopback"},
		{"not JSON", "127.0.0.1:5555", `org=org_a`, 400, "JSON object"},
		{"an unknown member", "127.0.0.1:5555", `{"org":"org_a","all":true}`, 400, "JSON object"},
		{"nothing named", "127.0.0.1:5555", `{}`, 400, "say whose sessions"},
		{"a bad org id", "127.0.0.1:5555", `{"org":"org a"}`, 400, "only letters"},
		{"an org without sessions", "127.0.0.1:5555", `{"org":"org_b"}`, 400, "no session tracking"},
		{"a session that is no reference", "127.0.0.1:5555", `{"session":"abc"}`, 400, "reference"},
		{"a session and an org", "127.0.0.1:5555", `{"session":"sid:abc","org":"org_a"}`, 400, "not both"},
		{"an over-long user", "127.0.0.1:5555", `{"user":"` + strings.Repeat("u", 300) + `"}`, 400, "too long"},
		{"a session by sid", "[::1]:5555", `{"session":"sid:abc"}`, 200, ""},
	} {
		req := httptest.NewRequest("POST", "/sessions/revoke", strings.NewReader(c.body))
		req.RemoteAddr = c.remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.msg) {
			t.Errorf("%s: %d %s, want %d %q", c.name, rec.Code, rec.Body, c.status, c.msg)
		}
	}
}

// TestSessionsCLIUsage: the command's usage errors.
func TestSessionsCLIUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"sessions"}, "subcommand"},
		{[]string{"sessions", "list"}, "subcommand"},
		{[]string{"sessions", "revoke", "-org", "org_a"}, "-config"},
		{[]string{"sessions", "revoke", "-config", "../../configs/demo.yaml"}, "whose sessions"},
		{[]string{"sessions", "revoke", "-config", "../../configs/demo.yaml", "-session", "nope"}, "reference"},
	} {
		_, _, err := runCLI(t, c.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want a usage error with %q", c.args, err, c.msg)
		}
	}
	if out, _, err := runCLI(t, "sessions", "-h"); err != nil || !strings.Contains(out, "remote wipe") {
		t.Errorf("sessions -h: %v %s", err, out)
	}
	// With the memory store and nothing listening, the CLI says where it looked.
	if _, _, err := runCLI(t, "sessions", "revoke", "-config", "../../configs/demo.yaml", "-admin", "http://127.0.0.1:1", "-org", "org_a"); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("no phiguard running: %v", err)
	}
}

package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// canary is PHI no log, audit record or error may ever hold.
const canary = "CANARY-PHI-5e1f"

const testPolicy = `version: 1
ingress: {upstream: "http://UPSTREAM", max_body_bytes: 4096}
identity:
  jwt: {jwks: unused.json}
  claims: {org: org_id, user: sub, role: role}
keys: {keyring: unused}
orgs: [{id: org_a}, {id: org_b}, {id: org_nokeys}]
routes:
  - name: tokens
    match: {path: "/api/v1/tokens/**"}
    deny: personal access tokens are disabled for HIPAA organizations
  - name: send-message
    match: {methods: [POST], path: "/api/v1/conversations/{id}/messages"}
    encrypt_request: ["$.body", "$.attachments[*].caption"]
    decrypt_response: ["$.body", "$.attachments[*].caption"]
  - name: list-messages
    match: {methods: [GET], path: "/api/v1/conversations/{id}/messages"}
    decrypt_response: ["$.data[*].body", "$.data[*].attachments[*].caption"]
    readers: [agent, admin]
  - name: webhook
    match: {methods: [POST], path: "/webhooks/sms/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body"]
  - name: health
    match: {methods: [GET], path: /healthz}
    auth: none
`

// upstream records what the app received and answers with a canned or echoed body.
type upstream struct {
	mu       sync.Mutex
	requests []seen
	answer   func(w http.ResponseWriter, r *http.Request, body []byte)
}

type seen struct {
	method, path, rawPath, query string
	header                       http.Header
	body                         []byte
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.requests = append(u.requests, seen{r.Method, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), body})
	answer := u.answer
	u.mu.Unlock()
	if answer != nil {
		answer(w, r, body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(body) // echo, as many APIs return the created object
}

func (u *upstream) hits() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.requests)
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.requests) == 0 {
		t.Fatal("the app was never called")
	}
	return u.requests[len(u.requests)-1]
}

type recordSink struct {
	mu      sync.Mutex
	records []audit.Record
	fail    bool
	// hold, when set, keeps each write waiting until it is closed: a
	// sink that hangs.
	hold chan struct{}
}

// Write decodes the records the auditor encoded, as an auditor reading
// the trail would; event lines (the chain's own) are not records.
func (s *recordSink) Write(_ context.Context, lines []byte) error {
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return io.ErrClosedPipe
	}
	for line := range bytes.Lines(lines) {
		var r struct {
			audit.Record
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		if r.Event == "" {
			s.records = append(s.records, r.Record)
		}
	}
	return nil
}

func (s *recordSink) all() []audit.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Record(nil), s.records...)
}

func (s *recordSink) lastRecord(t *testing.T) audit.Record {
	t.Helper()
	all := s.all()
	if len(all) == 0 {
		t.Fatal("no audit record")
	}
	return all[len(all)-1]
}

type harness struct {
	t        *testing.T
	app      *upstream
	appSrv   *httptest.Server
	proxy    *httptest.Server
	p        *Proxy
	log      *slog.Logger
	keyring  *keys.Keyring
	sink     *recordSink
	logs     *bytes.Buffer
	signer   jwt.Signer
	tokens   map[string]string // name → bearer token
	auditAll *bytes.Buffer     // JSON lines, as a file sink would write them
	hasher   *audit.Hasher     // when the policy names audit.hash_key
}

// harnessAuditTimeout bounds each record's write: ample for memory
// sinks, and what a request waits on a sink that hangs.
const harnessAuditTimeout = 2 * time.Second

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWithPolicy(t, testPolicy)
}

// newHarnessWithPolicy runs phiguard with src, whose upstream is http://UPSTREAM.
func newHarnessWithPolicy(t *testing.T, src string) *harness {
	t.Helper()
	h := &harness{t: t, app: &upstream{}, sink: &recordSink{}, logs: &bytes.Buffer{}, auditAll: &bytes.Buffer{}}
	h.appSrv = httptest.NewServer(h.app)
	t.Cleanup(h.appSrv.Close)

	src = strings.Replace(src, "http://UPSTREAM", h.appSrv.URL, 1)
	pol, err := policy.Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := keys.InitLocal(dir); err != nil {
		t.Fatal(err)
	}
	lp, err := keys.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"org_a", "org_b"} { // org_nokeys has none: a keyring failure
		if _, err := keys.CreateOrg(context.Background(), dir, org, lp); err != nil {
			t.Fatal(err)
		}
	}
	if h.keyring, err = keys.Open(context.Background(), dir, lp); err != nil {
		t.Fatal(err)
	}

	kh, err := keyset.NewHandle(jwt.ES256Template())
	if err != nil {
		t.Fatal(err)
	}
	if h.signer, err = jwt.NewSigner(kh); err != nil {
		t.Fatal(err)
	}
	pub, _ := kh.Public()
	jwks, err := jwt.JWKSetFromPublicKeysetHandle(pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifierFromJWKS(identity.Config{OrgClaim: "org_id", UserClaim: "sub", RoleClaim: "role"}, jwks)
	if err != nil {
		t.Fatal(err)
	}
	h.tokens = map[string]string{
		"alice": h.token("alice", "org_a", "agent"),
		"vic":   h.token("vic", "org_a", "viewer"),
		"bob":   h.token("bob", "org_b", "agent"),
		"nokey": h.token("nina", "org_nokeys", "agent"),
		"zed":   h.token("zed", "org_z", "agent"),
	}

	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	aud := audit.New(audit.Options{Log: log, FailClosed: true, Sinks: []audit.Sink{h.sink, audit.NewWriterSink("buf", h.auditAll)}, Timeout: harnessAuditTimeout})
	if pol.File.Audit.HashKey != "" {
		// The policy names a hash key file; the test makes one in memory.
		kh, err := keyset.NewHandle(mac.HMACSHA256Tag256KeyTemplate())
		if err != nil {
			t.Fatal(err)
		}
		m, err := mac.New(kh)
		if err != nil {
			t.Fatal(err)
		}
		h.hasher = audit.NewHasher(m)
	}
	p, err := New(Options{Policy: pol, Keys: h.keyring, Verifier: v, Auditor: aud, Log: log, Hasher: h.hasher})
	if err != nil {
		t.Fatal(err)
	}
	h.p, h.log = p, log
	h.proxy = httptest.NewServer(p)
	t.Cleanup(h.proxy.Close)
	t.Cleanup(h.assertNoCanaryLeaked)
	t.Cleanup(aud.Close) // first: every line written before the check reads them
	return h
}

func (h *harness) token(sub, org, role string) string {
	return h.tokenWith(&sub, map[string]any{"org_id": org, "role": role})
}

type reqOpt func(*http.Request)

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Add(k, v) } }

// do sends a request through phiguard as the named user ("" for none).
func (h *harness) do(method, path, user, contentType string, body []byte, opts ...reqOpt) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.proxy.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
		req.ContentLength = 0
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+h.tokens[user])
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, o := range opts {
		o(req)
	}
	return h.send(req)
}

func (h *harness) send(req *http.Request) (*http.Response, []byte) {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, out
}

func (h *harness) assertNoCanaryLeaked() {
	for name, b := range map[string]*bytes.Buffer{"logs": h.logs, "audit": h.auditAll} {
		if strings.Contains(b.String(), canary) {
			h.t.Errorf("%s hold PHI:\n%s", name, b.String())
		}
	}
}

// wantStatus checks a refused request's status, JSON error and audit record.
func (h *harness) wantRefused(resp *http.Response, body []byte, status int, hitsBefore int) {
	h.t.Helper()
	if resp.StatusCode != status {
		h.t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Status != status || e.Error.Message == "" || e.Error.RequestID == "" {
		h.t.Errorf("error body %s is not a JSON error with status, message and request id", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		h.t.Errorf("error Content-Type %q", ct)
	}
	if strings.Contains(string(body), canary) {
		h.t.Errorf("error body holds PHI: %s", body)
	}
	if n := h.app.hits(); n != hitsBefore {
		h.t.Errorf("the app was called %d times, want %d: it saw a request phiguard refused", n, hitsBefore)
	}
	rec := h.sink.lastRecord(h.t)
	if rec.Status != status || rec.RequestID != e.Error.RequestID {
		h.t.Errorf("audit record %+v does not match the refusal", rec)
	}
}

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return m
}

package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/phiguard/phiguard/internal/redistest"
	"github.com/phiguard/phiguard/internal/testca"
	"github.com/phiguard/phiguard/policy"
)

// carrier is a fake SMS carrier behind TLS, recording what it gets.
type carrier struct {
	mu    sync.Mutex
	forms []url.Values
}

func (c *carrier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	c.mu.Lock()
	c.forms = append(c.forms, r.PostForm)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"sid":"SM1","status":"queued"}`)
}

func (c *carrier) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.forms)
}

// egressStack is phiguard served as `phiguard serve` serves it, with an
// egress route to a fake carrier over TLS, as its own replicas share it.
type egressStack struct {
	dir, base string
	policy    string // the last replica's policy, naming its admin listener
	carrier   *carrier
}

func newEgressStack(t *testing.T, state string) *egressStack {
	t.Helper()
	s := &egressStack{dir: t.TempDir(), carrier: &carrier{}}
	keyring := filepath.Join(s.dir, "keyring")
	for _, args := range [][]string{
		{"keys", "init", "-keyring", keyring},
		{"keys", "create", "-keyring", keyring, "-org", "org_a"},
		{"audit", "keygen", "-out", filepath.Join(s.dir, "audit-keys")},
	} {
		if _, stderr, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.dir, "ca.pem"), ca.PEM, 0o600)
	srv := httptest.NewUnstartedServer(s.carrier)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.base = filepath.Join(s.dir, "policy.yaml")
	s.policy = s.base
	pol := fmt.Sprintf(`version: 1
ingress: {upstream: "http://127.0.0.1:1"}
keys: {keyring: keyring}
audit:
  sinks: [{type: file, path: audit.jsonl}]
  hash_key: audit-keys/hash.json
  signing_key: audit-keys/signing.json
orgs: [{id: org_a}]
%s
egress: {ca_file: ca.pem}
egress_routes:
  - name: carrier-send
    host: api.twilio.com
    upstream: %q
    match: {methods: [POST], path: "/2010-04-01/Accounts/{account}/Messages.json"}
    baa: true
    decrypt_request: ["form:Body"]
    consent: {to: "form:To"}
`, state, srv.URL)
	if err := os.WriteFile(s.base, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// launch serves the policy with one more phiguard until the test ends;
// it returns the egress listener's URL.
func (s *egressStack) launch(t *testing.T) string {
	t.Helper()
	ln, aln, eln := listen(t), listen(t), listen(t)
	raw, _ := os.ReadFile(s.base)
	// The CLI finds the admin listener where the policy says.
	raw = append(raw, []byte("admin: {listen: \""+aln.Addr().String()+"\"}\n")...)
	path := filepath.Join(s.dir, "policy-"+strings.ReplaceAll(aln.Addr().String(), ":", "_")+".yaml")
	os.WriteFile(path, raw, 0o600)
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sc, err := newSidecar(ctx, path, p, io.Discard, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sc.egressLn = eln
	done := make(chan error, 1)
	go func() { done <- sc.serve(ctx, ln, aln, signals{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		sc.Close()
	})
	s.policy = path // the CLI reads the admin address from it
	return "http://" + eln.Addr().String()
}

// sms sends an SMS as the app does, with the vendor's name in Host.
func sms(t *testing.T, egress, to, body string) (int, string) {
	t.Helper()
	form := url.Values{"To": {to}, "Body": {body}}
	req, _ := http.NewRequest("POST", egress+"/2010-04-01/Accounts/AC1/Messages.json", strings.NewReader(form.Encode()))
	req.Host = "api.twilio.com"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestEgressServedWithConsentCLI: `phiguard serve` opens the egress
// listener; an SMS reaches the carrier over TLS; `phiguard consent
// revoke` (through the admin listener of the memory store) blocks the
// next one, `show` and `list` see it, `grant` lifts it, and each change is
// on the audit trail by the number's keyed hash, never the number.
func TestEgressServedWithConsentCLI(t *testing.T) {
	s := newEgressStack(t, "")
	egress := s.launch(t)
	if status, out := sms(t, egress, "+15555550100", "hello"); status != 201 || s.carrier.count() != 1 {
		t.Fatalf("first SMS: %d %s", status, out)
	}
	consent := func(args ...string) string {
		t.Helper()
		out, stderr, err := runCLI(t, append([]string{"consent"}, append(args, "-config", s.policy, "-org", "org_a")...)...)
		if err != nil {
			t.Fatalf("consent %v: %v %s", args, err, stderr)
		}
		return out
	}
	if out := consent("revoke", "-number", "(555) 555-0100", "-source", "front-desk-form"); !strings.Contains(out, "consent revoked for h1:") {
		t.Errorf("revoke: %s", out)
	}
	if status, out := sms(t, egress, "+15555550100", "hello"); status != 403 || !strings.Contains(out, "no_consent") || s.carrier.count() != 1 {
		t.Errorf("after revoke: %d %s (carrier calls %d)", status, out, s.carrier.count())
	}
	if out := consent("show", "-number", "+15555550100"); !strings.Contains(out, "\trevoked\t") || !strings.Contains(out, "front-desk-form") {
		t.Errorf("show: %q", out)
	}
	if out := consent("list"); strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "h1:") {
		t.Errorf("list: %q", out)
	}
	consent("grant", "-number", "+15555550100")
	if status, out := sms(t, egress, "+15555550100", "hello"); status != 201 {
		t.Errorf("after grant: %d %s", status, out)
	}
	trail, _ := os.ReadFile(filepath.Join(s.dir, "audit.jsonl"))
	if bytes.Count(trail, []byte(`"event":"consent_change"`)) != 2 || !bytes.Contains(trail, []byte(`"destination":"api.twilio.com"`)) {
		t.Errorf("the trail lacks the changes or the calls:\n%s", trail)
	}
	if bytes.Contains(trail, []byte("555-0100")) || bytes.Contains(trail, []byte("5555550100")) {
		t.Error("the trail holds the number")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"consent"}, "subcommand"},
		{[]string{"consent", "list", "-config", s.policy, "-org", "org_a", "-number", "+15555550100"}, "no -number"},
		{[]string{"consent", "grant", "-config", s.policy, "-org", "org_a", "-number", "call-me-555"}, "not a phone number"},
		{[]string{"consent", "grant", "-config", s.policy, "-org", "org_z", "-number", "+15555550100"}, "not listed"},
		{[]string{"consent", "grant", "-config", s.policy, "-number", "+15555550100"}, "-org"},
	} {
		_, stderr, err := runCLI(t, c.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error()+stderr, c.want) || strings.Contains(err.Error()+stderr, "call-me-555") {
			t.Errorf("%v: %v %s", c.args, err, stderr)
		}
	}
}

// TestConsentAcrossReplicas: with state in Redis, `phiguard consent
// revoke` writes the registry directly, and both replicas refuse the SMS.
func TestConsentAcrossReplicas(t *testing.T) {
	rs := redistest.Start(t)
	s := newEgressStack(t, "state: {store: redis, redis: {url: \""+rs.URL(0)+"\"}}")
	a, b := s.launch(t), s.launch(t)
	for _, e := range []string{a, b} {
		if status, out := sms(t, e, "+15555550100", "hello"); status != 201 {
			t.Fatalf("before: %d %s", status, out)
		}
	}
	if _, stderr, err := runCLI(t, "consent", "revoke", "-config", s.policy, "-org", "org_a", "-number", "+15555550100"); err != nil {
		t.Fatalf("revoke: %v %s", err, stderr)
	}
	for _, e := range []string{a, b} {
		if status, out := sms(t, e, "+15555550100", "hello"); status != 403 || !strings.Contains(out, "no_consent") {
			t.Errorf("after: %d %s", status, out)
		}
	}
	rs.Stop()
	if status, out := sms(t, a, "+15555550100", "hello"); status != 503 || !strings.Contains(out, "state_unavailable") {
		t.Errorf("registry down: %d %s", status, out)
	}
}

// TestConsentHandler: the admin endpoint takes only loopback callers and
// well-formed changes, answers each refusal with what is wrong, and
// lists and shows entries by their keyed hash.
func TestConsentHandler(t *testing.T) {
	s := newEgressStack(t, "")
	pol, err := policy.Load(s.base)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newSidecar(context.Background(), s.base, pol, io.Discard, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	h := sc.consentHandler()
	const ref = "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJo"
	for _, c := range []struct {
		name, method, target, remote, body string
		status                             int
		msg                                string
	}{
		{"from outside the pod", "POST", "/consent", "10.0.0.7:5555", `{"org":"org_a","ref":"` + ref + `","state":"revoked","source":"cli"}`, 403, "loopback"},
		{"not JSON", "POST", "/consent", "127.0.0.1:5555", `org=org_a`, 400, "JSON object"},
		{"an unknown member", "POST", "/consent", "127.0.0.1:5555", `{"org":"org_a","number":"+15555550100"}`, 400, "JSON object"},
		{"an unknown org", "POST", "/consent", "127.0.0.1:5555", `{"org":"org_z","ref":"` + ref + `","state":"revoked","source":"cli"}`, 400, "not listed"},
		{"a bad state", "POST", "/consent", "127.0.0.1:5555", `{"org":"org_a","ref":"` + ref + `","state":"maybe","source":"cli"}`, 400, "granted or revoked"},
		{"a number, not its hash", "POST", "/consent", "127.0.0.1:5555", `{"org":"org_a","ref":"+15555550100","state":"revoked","source":"cli"}`, 400, ""},
		{"no source", "POST", "/consent", "127.0.0.1:5555", `{"org":"org_a","ref":"` + ref + `","state":"revoked"}`, 400, "source"},
		{"a change", "POST", "/consent", "[::1]:5555", `{"org":"org_a","ref":"` + ref + `","state":"revoked","source":"cli"}`, 200, `"applied":true`},
		{"one entry", "GET", "/consent?org=org_a&ref=" + ref, "127.0.0.1:5555", "", 200, `"state":"revoked"`},
		{"the list", "GET", "/consent?org=org_a", "127.0.0.1:5555", "", 200, ref},
		{"a list of an unknown org", "GET", "/consent?org=org_z", "127.0.0.1:5555", "", 400, "not an organization"},
		{"a read from outside", "GET", "/consent?org=org_a", "10.0.0.7:5555", "", 403, "loopback"},
		{"another method", "DELETE", "/consent", "127.0.0.1:5555", "", 405, "GET or POST"},
	} {
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
		req.RemoteAddr = c.remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.msg) || strings.Contains(rec.Body.String(), "5555550100") {
			t.Errorf("%s: %d %s, want %d %q", c.name, rec.Code, rec.Body, c.status, c.msg)
		}
	}
}

// TestSignedWebhookReadBack: a patient's SMS on the carrier's signed
// webhook is checked by phiguard, stored encrypted by the real app, which
// checks phiguard's re-signature, and read back in plaintext by an agent;
// the same body posted to the app without phiguard's signature is
// refused by the app itself.
func TestSignedWebhookReadBack(t *testing.T) {
	s := startStack(t, false)
	const path = "/webhooks/sms/org_a"
	form := url.Values{"From": {"+15555550123"}, "Body": {phi + " the rash is spreading"}, "To": {"+15555550000"}}
	sig := twilioSignature(demoCarrierToken, "https://hooks.clinic.example"+path, form)
	if code, body := s.do(t, "POST", s.proxyURL+path, "", "application/x-www-form-urlencoded", []byte(form.Encode()), "X-Twilio-Signature", sig); code/100 != 2 {
		t.Fatalf("signed webhook: %d %s", code, body)
	}
	if store := s.read(t, "store.json"); bytes.Contains(store, []byte(phi)) || !bytes.Contains(store, []byte(`"body": "ephi:v1:org_a:`)) && !bytes.Contains(store, []byte(`"body":"ephi:v1:org_a:`)) {
		t.Errorf("the app stored:\n%s", store)
	}
	code, body := s.do(t, "GET", s.proxyURL+"/api/v1/inbound", "alice", "", nil)
	if code != 200 || !bytes.Contains(body, []byte(phi+" the rash is spreading")) || !bytes.Contains(body, []byte("+15555550123")) {
		t.Errorf("read back: %d %s", code, body)
	}
	if code, body := s.do(t, "POST", s.appURL+path, "", "application/x-www-form-urlencoded", []byte(form.Encode()), "X-Twilio-Signature", sig); code != 401 {
		t.Errorf("straight to the app, unsigned by phiguard: %d %s", code, body)
	}
}

// twilioSignature signs as Twilio does: base64 HMAC-SHA1 of the URL and
// each parameter's name and values, names sorted.
func twilioSignature(token, u string, form url.Values) string {
	names := slices.Sorted(maps.Keys(form))
	data := u
	for _, k := range names {
		for _, v := range slices.Sorted(slices.Values(form[k])) {
			data += k + v
		}
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

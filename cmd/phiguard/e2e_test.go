package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/phiguard/phiguard/examples/messaging-app/app"
	"github.com/phiguard/phiguard/internal/testca"
	"github.com/phiguard/phiguard/policy"
)

const phi = "CANARY-PHI-e2e-Biopsy"

// The secrets of the demo policy's carrier webhook: the carrier's, and
// the one phiguard shares with the app.
const (
	demoCarrierToken  = "carrier-auth-token-0123456789abcdef"
	demoWebhookSecret = "shared-with-the-app-0123456789abcd"
)

// stack is the demo app behind phiguard, wired exactly as `phiguard serve` wires it.
type stack struct {
	dir      string
	proxyURL string
	// egressURL is the last launched phiguard's egress listener.
	egressURL string
	admin     string // the admin listener's address
	policy    string // the policy file's path
	stop      func() // stops the first phiguard (drains, closes the audit chain)
	appURL    string
	appHits   *atomic.Int64
	appProto  atomic.Value // protocol of the app's last request
	tokens    map[string]string
	client    *http.Client
	logs      *bytes.Buffer
	// appLog is the app's access log: request lines, queries included.
	appLog *lockedBuffer
}

func startStack(t *testing.T, h2cUpstream bool) *stack {
	t.Helper()
	return startStackWith(t, h2cUpstream, nil)
}

// startStackWith is startStack with the demo policy's text passed
// through edit first (nil: as it is).
func startStackWith(t *testing.T, h2cUpstream bool, edit func([]byte) []byte) *stack {
	t.Helper()
	s := &stack{dir: t.TempDir(), appHits: new(atomic.Int64), tokens: map[string]string{}, logs: &bytes.Buffer{}, appLog: newLockedBuffer()}
	keyring := filepath.Join(s.dir, "keyring")
	for _, args := range [][]string{
		{"keys", "init", "-keyring", keyring},
		{"keys", "create", "-keyring", keyring, "-org", "org_a"},
		{"keys", "create", "-keyring", keyring, "-org", "org_b"},
		{"audit", "keygen", "-out", filepath.Join(s.dir, "audit-keys")},
	} {
		if _, stderr, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	s.writeIdentities(t)
	// The demo policy's carrier webhook and egress listener need their
	// secrets and the CA of the vendors' certificates.
	t.Setenv("TWILIO_AUTH_TOKEN", demoCarrierToken)
	t.Setenv("PHIGUARD_WEBHOOK_SECRET", demoWebhookSecret)
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "vendor-ca.pem"), ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// The real messaging app, counting the requests it receives.
	a, err := app.New(filepath.Join(s.dir, "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	a.AccessLog = s.appLog
	a.WebhookSecret = []byte(demoWebhookSecret)
	appLn := listen(t)
	appSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.appHits.Add(1)
		s.appProto.Store(r.Proto)
		a.ServeHTTP(w, r)
	}), Protocols: new(http.Protocols)}
	appSrv.Protocols.SetHTTP1(true)
	appSrv.Protocols.SetUnencryptedHTTP2(true)
	go appSrv.Serve(appLn)
	t.Cleanup(func() { appSrv.Close(); a.Close() })
	s.appURL = "http://" + appLn.Addr().String()

	pol, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol = bytes.Replace(pol, []byte("http://127.0.0.1:8080"), []byte(s.appURL), 1)
	if h2cUpstream {
		pol = bytes.Replace(pol, []byte("ingress:\n"), []byte("ingress:\n  upstream_h2c: true\n"), 1)
	}
	if edit != nil {
		pol = edit(pol)
	}
	polPath := filepath.Join(s.dir, "policy.yaml")
	if err := os.WriteFile(polPath, pol, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runCLI(t, "check", "-config", polPath); err != nil {
		t.Fatalf("check: %v %s", err, stderr)
	}

	s.policy = polPath
	s.proxyURL, s.admin = s.launch(t, s.logs, true)
	s.client = &http.Client{Timeout: 10 * time.Second}
	return s
}

// launch serves the stack's policy with one more phiguard, as a replica
// beside the first, until the test ends; logs go to logs. It returns the
// proxy's URL and the admin listener's address. With canary, the logs
// and the audit trail are checked for PHI at the end.
func (s *stack) launch(t *testing.T, logs io.Writer, canary bool) (proxyURL, admin string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := policy.Load(s.policy)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	sc, err := newSidecar(ctx, s.policy, p, io.Discard, io.Discard, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, aln := listen(t), listen(t)
	if sc.egress != nil {
		sc.egressLn = listen(t)
		s.egressURL = "http://" + sc.egressLn.Addr().String()
	}
	done := make(chan error, 1)
	go func() { done <- sc.serve(ctx, ln, aln, signals{}) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			sc.Close()
		})
	}
	if canary {
		s.stop = stop
	}
	t.Cleanup(func() {
		stop()
		if !canary {
			return
		}
		for name, b := range map[string][]byte{"logs": s.logs.Bytes(), "audit": s.read(t, "audit.jsonl")} {
			if bytes.Contains(b, []byte(phi)) {
				t.Errorf("%s hold PHI:\n%s", name, b)
			}
		}
	})
	return "http://" + ln.Addr().String(), aln.Addr().String()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (s *stack) writeIdentities(t *testing.T) {
	kh, err := keyset.NewHandle(jwt.RS256_2048_F4_Key_Template())
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := jwt.NewSigner(kh)
	pub, _ := kh.Public()
	jwks, err := jwt.JWKSetFromPublicKeysetHandle(pub)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.dir, "jwks.json"), jwks, 0o644)
	iss, aud := "https://auth.demo.example", "messaging-app"
	exp, iat := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)
	for name, claims := range map[string]map[string]any{
		"alice":   {"org_id": "org_a", "role": "agent", "amr": []any{"pwd", "otp"}},
		"bob":     {"org_id": "org_b", "role": "agent"},
		"mallory": {"org_id": "org_a", "role": "agent", "amr": []any{"pwd"}},
		"olivia":  {"org_id": "org_a", "role": "agent", "amr": []any{"pwd", "otp"}, "old": true},
		"victor":  {"org_id": "org_a", "role": "viewer", "amr": []any{"hwk"}},
	} {
		sub := name
		iat := iat
		if claims["old"] == true {
			iat = time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC) // before org_a's enabled_at
		}
		raw, _ := jwt.NewRawJWT(&jwt.RawJWTOptions{Issuer: &iss, Audience: &aud, Subject: &sub, ExpiresAt: &exp, IssuedAt: &iat, CustomClaims: claims})
		tok, err := signer.SignAndEncode(raw)
		if err != nil {
			t.Fatal(err)
		}
		s.tokens[name] = tok
	}
}

func (s *stack) read(t *testing.T, name string) []byte {
	raw, _ := os.ReadFile(filepath.Join(s.dir, name))
	return raw
}

func (s *stack) do(t *testing.T, method, url, user, ct string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+s.tokens[user])
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1] // net/http sends req.Host, not a Host header
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestEndToEnd(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		name := "http1-upstream"
		if h2c {
			name = "h2c-upstream"
		}
		t.Run(name, func(t *testing.T) { endToEnd(t, h2c) })
	}
}

func endToEnd(t *testing.T, h2cUpstream bool) {
	s := startStack(t, h2cUpstream)
	msgs := "/api/v1/conversations/cv_1/messages"
	msg := []byte(`{"body":{"text":"` + phi + `","severity":3,"urgent":true,"tags":["derm",null]},"attachments":[{"url":"https://files.example/a.png","caption":"` + phi + ` photo"},{"url":"https://files.example/b.png","caption":42.10}]}`)

	// POST through phiguard: the persisted store holds tokens at every selected path, the rest unchanged.
	code, body := s.do(t, "POST", s.proxyURL+msgs, "alice", "application/json", msg)
	if code != 201 {
		t.Fatalf("POST: %d %s", code, body)
	}
	wantProto := "HTTP/1.1"
	if h2cUpstream {
		wantProto = "HTTP/2.0"
	}
	if got := s.appProto.Load(); got != wantProto {
		t.Errorf("phiguard reached the app over %v, want %s", got, wantProto)
	}
	var store app.Store
	if err := json.Unmarshal(s.read(t, "store.json"), &store); err != nil || len(store.Messages) != 1 {
		t.Fatalf("store: %v %s", err, s.read(t, "store.json"))
	}
	m := store.Messages[0]
	for _, v := range []json.RawMessage{m.Body, m.Attachments[0].Caption, m.Attachments[1].Caption} {
		var tok string
		if json.Unmarshal(v, &tok) != nil || !strings.HasPrefix(tok, "ephi:v1:org_a:") {
			t.Errorf("stored %s, want an org_a token", v)
		}
	}
	if m.Attachments[0].URL != "https://files.example/a.png" || m.ConversationID != "cv_1" {
		t.Errorf("unselected fields changed: %+v", m)
	}
	if bytes.Contains(s.read(t, "store.json"), []byte(phi)) {
		t.Fatal("the store holds plaintext PHI")
	}

	// GET through phiguard: the original JSON values, types preserved.
	code, body = s.do(t, "GET", s.proxyURL+msgs, "alice", "", nil)
	if code != 200 {
		t.Fatalf("GET: %d %s", code, body)
	}
	var got struct {
		Data []struct {
			Body        json.RawMessage `json:"body"`
			Attachments []struct {
				Caption json.RawMessage `json:"caption"`
			} `json:"attachments"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &got); err != nil || len(got.Data) != 1 {
		t.Fatalf("GET body %s", body)
	}
	if string(got.Data[0].Body) != `{"text":"`+phi+`","severity":3,"urgent":true,"tags":["derm",null]}` ||
		string(got.Data[0].Attachments[0].Caption) != `"`+phi+` photo"` || string(got.Data[0].Attachments[1].Caption) != `42.10` {
		t.Errorf("values or types changed: %s", body)
	}

	// GET from the app directly: tokens.
	code, body = s.do(t, "GET", s.appURL+msgs, "", "", nil)
	if code != 200 || bytes.Contains(body, []byte(phi)) || !bytes.Contains(body, []byte("ephi:v1:org_a:")) {
		t.Errorf("direct GET: %d %s", code, body)
	}

	// org_b's user reads org_a's message: masked, and audited.
	code, body = s.do(t, "GET", s.proxyURL+msgs, "bob", "", nil)
	if code != 200 || bytes.Contains(body, []byte(phi)) || bytes.Count(body, []byte(`"[protected]"`)) != 3 {
		t.Errorf("org_b read: %d %s", code, body)
	}
	last := lastAudit(t, s)
	if last["org"] != "org_b" || !strings.Contains(mustJSON(last["fields"]), "token of another organization") {
		t.Errorf("org_b read audit: %v", last)
	}

	// A deny route: 403 with the reason, the app never hit, a record written.
	before := s.appHits.Load()
	code, body = s.do(t, "POST", s.proxyURL+"/api/v1/tokens", "alice", "application/json", []byte(`{"name":"x"}`))
	if code != 403 || !bytes.Contains(body, []byte("personal access tokens are disabled")) || s.appHits.Load() != before {
		t.Errorf("deny: %d %s, app hits %d → %d", code, body, before, s.appHits.Load())
	}
	if last := lastAudit(t, s); last["decision"] != "deny" || last["route"] != "personal-access-tokens" {
		t.Errorf("deny audit: %v", last)
	}

	// Bad bodies: the app is never hit.
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte(`{"body":"`))
	zw.Write(bytes.Repeat([]byte{'A'}, 11<<20))
	zw.Write([]byte(`"}`))
	zw.Close()
	for _, tc := range []struct {
		name, ct string
		body     []byte
		hdr      []string
		status   int
	}{
		{"malformed JSON", "application/json", []byte(`{"body":"` + phi), nil, 400},
		{"wrong content type", "text/plain", []byte(phi), nil, 415},
		{"gzip bomb", "application/json", bomb.Bytes(), []string{"Content-Encoding", "gzip"}, 413},
		{"oversized", "application/json", []byte(`{"body":"` + strings.Repeat("x", 11<<20) + `"}`), nil, 413},
	} {
		before := s.appHits.Load()
		code, body := s.do(t, "POST", s.proxyURL+msgs, "alice", tc.ct, tc.body, tc.hdr...)
		if code != tc.status || s.appHits.Load() != before {
			t.Errorf("%s: %d %s, app hits %d → %d", tc.name, code, body, before, s.appHits.Load())
		}
	}
}

func TestHTTP2ClientPriorKnowledge(t *testing.T) {
	s := startStack(t, false)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	s.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("POST", s.proxyURL+"/api/v1/conversations/c/messages", strings.NewReader(`{"body":"`+phi+`"}`))
	req.Header.Set("Authorization", "Bearer "+s.tokens["alice"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 201 {
		t.Errorf("HTTP/2 request: proto %s status %d", resp.Proto, resp.StatusCode)
	}
	if bytes.Contains(s.read(t, "store.json"), []byte(phi)) {
		t.Error("plaintext stored over HTTP/2")
	}
}

func lastAudit(t *testing.T, s *stack) map[string]any {
	t.Helper()
	lines := bytes.Split(bytes.TrimSpace(s.read(t, "audit.jsonl")), []byte("\n"))
	var m map[string]any
	if err := json.Unmarshal(lines[len(lines)-1], &m); err != nil {
		t.Fatalf("audit line %s: %v", lines[len(lines)-1], err)
	}
	return m
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

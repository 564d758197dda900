package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

// These tests drive the engine the way any adapter does, with no HTTP
// server in the way: a request description in, a decision, bodies and an
// audit record out.

const enginePolicy = `version: 1
ingress: {upstream: "http://app.invalid", max_body_bytes: 4096, max_response_bytes: 262144, max_concurrent_requests: 2}
identity: {jwt: {jwks: unused.json}}
keys: {keyring: unused}
orgs: [{id: org_a}, {id: org_nokeys}]
routes:
  - name: tokens
    match: {path: "/api/v1/tokens/**"}
    deny: personal access tokens are disabled
  - name: send-message
    match: {methods: [POST], path: "/api/v1/conversations/{id}/messages"}
    encrypt_request: ["$.body"]
    decrypt_response: ["$.body"]
    readers: [agent]
  - name: list-messages
    match: {methods: [GET], path: "/api/v1/conversations/{id}/messages"}
    decrypt_response: ["$.data[*].body"]
    readers: [agent]
  - name: health
    match: {methods: [GET], path: /healthz}
    auth: none
`

const canary = "CANARY-diagnosis-7731"

type ctxKey struct{}

// callers verifies "Bearer NAME" for the names it knows and notes the
// context it was given.
type callers struct {
	mu   sync.Mutex
	ctxs []any
	// extra maps more Authorization values to the org of an agent; pats
	// to the org of a token that says it is a personal access token.
	extra, pats map[string]string
}

func (c *callers) Verify(ctx context.Context, auth []string) (*identity.Caller, error) {
	c.mu.Lock()
	c.ctxs = append(c.ctxs, ctx.Value(ctxKey{}))
	c.mu.Unlock()
	if len(auth) > 0 && c.extra[auth[0]] != "" {
		return &identity.Caller{Org: c.extra[auth[0]], User: auth[0], Role: "agent"}, nil
	}
	if len(auth) > 0 && c.pats[auth[0]] != "" {
		return &identity.Caller{Org: c.pats[auth[0]], User: strings.TrimPrefix(auth[0], "Bearer "), Role: "agent", PAT: true}, nil
	}
	switch {
	case len(auth) == 0:
		return nil, identity.ErrNoToken
	case auth[0] == "Bearer alice":
		return &identity.Caller{Org: "org_a", User: "alice", Role: "agent"}, nil
	case auth[0] == "Bearer vic":
		return &identity.Caller{Org: "org_a", User: "vic", Role: "viewer"}, nil
	case auth[0] == "Bearer nina":
		return &identity.Caller{Org: "org_nokeys", User: "nina", Role: "agent"}, nil
	case auth[0] == "Bearer zed":
		return &identity.Caller{Org: "org_z", User: "zed", Role: "agent"}, nil
	}
	return nil, identity.ErrInvalidToken
}

// ctxKeys wraps a keyring and notes the contexts of key operations.
type ctxKeys struct {
	*keys.Keyring
	mu   sync.Mutex
	ctxs []any
}

func (k *ctxKeys) note(ctx context.Context) {
	k.mu.Lock()
	k.ctxs = append(k.ctxs, ctx.Value(ctxKey{}))
	k.mu.Unlock()
}

func (k *ctxKeys) AppendEncrypt(ctx context.Context, dst []byte, org string, pt []byte) ([]byte, error) {
	k.note(ctx)
	return k.Keyring.AppendEncrypt(ctx, dst, org, pt)
}

func (k *ctxKeys) Decrypt(ctx context.Context, org string, tok []byte) ([]byte, error) {
	k.note(ctx)
	return k.Keyring.Decrypt(ctx, org, tok)
}

type records struct {
	mu   sync.Mutex
	list []audit.Record
	ctxs []any
	fail bool
}

func (r *records) Record(ctx context.Context, rec *audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return audit.ErrUnavailable
	}
	r.ctxs = append(r.ctxs, ctx.Value(ctxKey{}))
	r.list = append(r.list, *rec)
	return nil
}

func (r *records) last(t *testing.T) audit.Record {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.list) == 0 {
		t.Fatal("no audit record")
	}
	return r.list[len(r.list)-1]
}

type rig struct {
	eng  *Engine
	ver  *callers
	keys *ctxKeys
	aud  *records
	dir  string // the keyring folder
}

func newRig(t testing.TB) *rig {
	return newRigWith(t, enginePolicy, "org_a")
}

// newRigWith is a rig for policy src, with keys for orgs.
func newRigWith(t testing.TB, src string, orgs ...string) *rig {
	t.Helper()
	pol, err := policy.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.InitLocal(dir); err != nil {
		t.Fatal(err)
	}
	lp, _ := keys.OpenLocal(dir)
	for _, org := range orgs {
		if _, err := keys.CreateOrg(context.Background(), dir, org, lp); err != nil {
			t.Fatal(err)
		}
	}
	kr, err := keys.Open(context.Background(), dir, lp)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{ver: &callers{}, keys: &ctxKeys{Keyring: kr}, aud: &records{}, dir: dir}
	r.eng, err = New(Options{Policy: pol, Keys: r.keys, Verifier: r.ver, Auditor: r.aud})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func request(method, path, user string) *Request {
	h := http.Header{}
	if user != "" {
		h.Set("Authorization", "Bearer "+user)
	}
	return &Request{Method: method, Path: path, Header: h, Peer: netip.MustParseAddrPort("10.1.2.3:5555")}
}

const msgPath = "/api/v1/conversations/c1/messages"

// sendMessage runs alice's message {"body": text} through the engine: the
// request sealed, then the app's echo of it opened. The caller closes x.
func (r *rig) sendMessage(t *testing.T, text string) (x *Exchange, sealed, opened []byte) {
	t.Helper()
	ctx := context.Background()
	req := request("POST", msgPath, "alice")
	req.Header.Set("Content-Type", "application/json")
	x, err := r.eng.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"body":"` + text + `"}`
	if sealed, err = x.SealRequest(ctx, req.Header, strings.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if opened, _, err = x.OpenResponse(ctx, 200, h, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
		t.Fatal(err)
	}
	return x, sealed, opened
}

// TestExchange runs one request through every step, as an adapter would,
// and checks what the app would receive, what the client would get back
// and the audit record. The context reaches identity, keys and audit.
func TestExchange(t *testing.T) {
	r := newRig(t)
	ctx := context.WithValue(context.Background(), ctxKey{}, "request-ctx")
	req := request("post", msgPath, "alice")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Phiguard-User", "mallory")
	// An adapter that builds the map itself may not canonicalize keys.
	req.Header["x-forwarded-host"] = []string{"evil.example"}
	req.Header["x-phiguard-org"] = []string{"org_b"}
	x, err := r.eng.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if x.Method() != "POST" || x.Path() != msgPath || !x.TouchesPHI() || x.RequestID() == "" {
		t.Fatalf("exchange: method %q path %q phi %v id %q", x.Method(), x.Path(), x.TouchesPHI(), x.RequestID())
	}
	if req.Header.Get("X-Forwarded-For") != "" || req.Header.Get("X-Phiguard-User") != "" || len(req.Header) != 3 { // Authorization, Content-Type, Accept-Encoding
		t.Error("Begin left a header the app must not act on")
	}
	if req.Header.Get("Accept-Encoding") != "identity" {
		t.Error("a decrypting route must ask the app for an uncompressed answer")
	}
	body := []byte(`{"body":"` + canary + `","to":"+15550100"}`)
	sealed, err := x.SealRequest(ctx, req.Header, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(canary)) || !bytes.Contains(sealed, []byte(`"body":"ephi:v1:org_a:`)) || !bytes.Contains(sealed, []byte(`"to":"+15550100"`)) {
		t.Fatalf("sealed body %s", sealed)
	}
	if req.Header.Get("Content-Length") != strconv.Itoa(len(sealed)) {
		t.Errorf("Content-Length %s for a %d-byte body", req.Header.Get("Content-Length"), len(sealed))
	}
	up := http.Header{}
	x.SetUpstreamHeaders(up)
	if up.Get("X-Phiguard-User") != "alice" || up.Get("X-Phiguard-Org") != "org_a" || up.Get("X-Phiguard-Request-Id") != x.RequestID() {
		t.Errorf("upstream headers %v", up)
	}

	// The app echoes what it stored, with caching headers of its own.
	rh := http.Header{"Content-Type": {"application/json"}, "Etag": {`"v1"`}, "Cache-Control": {"public, max-age=600"}}
	out, replaced, err := x.OpenResponse(ctx, 201, rh, bytes.NewReader(sealed), int64(len(sealed)))
	if err != nil || !replaced {
		t.Fatalf("OpenResponse: %v (replaced %v)", err, replaced)
	}
	if string(out) != string(body) {
		t.Errorf("opened %s, want %s", out, body)
	}
	if rh.Get("Etag") != "" || !strings.Contains(rh.Get("Cache-Control"), "no-store") {
		t.Errorf("a decrypted answer may be cached: %v", rh)
	}
	if err := x.Allow(ctx, 201); err != nil {
		t.Fatal(err)
	}
	rec := r.aud.last(t)
	if rec.Decision != audit.DecisionAllow || rec.Status != 201 || rec.UpstreamStatus != 201 || rec.Route != "send-message" ||
		rec.Org != "org_a" || rec.User != "alice" || rec.ClientIP != "10.1.2.3" || rec.Method != "POST" {
		t.Errorf("record %+v", rec)
	}
	if len(rec.Fields) != 2 || rec.Fields[0].Action != audit.ActionEncrypt || rec.Fields[1].Action != audit.ActionDecrypt {
		t.Errorf("record fields %+v, want one encrypt and one decrypt of $.body", rec.Fields)
	}
	line := rec.AppendJSON(nil)
	if bytes.Contains(line, []byte(canary)) {
		t.Error("the audit record holds the PHI value")
	}
	for name, ctxs := range map[string][]any{"identity": r.ver.ctxs, "keys": r.keys.ctxs, "audit": r.aud.ctxs} {
		if len(ctxs) == 0 {
			t.Errorf("%s was never called", name)
		}
		for _, v := range ctxs {
			if v != "request-ctx" {
				t.Errorf("%s got a context without the request's values", name)
			}
		}
	}
}

// TestRefusals: each class of refusal comes back from the engine as one
// *refusal.Error of the right kind, with its status, recorded once.
func TestRefusals(t *testing.T) {
	json := "application/json"
	for _, tc := range []struct {
		name string
		req  func() *Request
		body string
		ct   string
		kind refusal.Kind
	}{
		{"encoded slash", func() *Request { return request("GET", "/api/v1/conversations/a%2Fb/messages", "alice") }, "", "", refusal.BadRequest},
		{"token in the path", func() *Request { return request("GET", "/ephi:v1:org_a:00000001:AAAA", "alice") }, "", "", refusal.BadRequest},
		{"unknown method", func() *Request { return request("PROPFIND", "/healthz", "") }, "", "", refusal.MethodNotAllowed},
		{"no token", func() *Request { return request("POST", msgPath, "") }, "", "", refusal.Unauthenticated},
		{"bad token", func() *Request { return request("POST", msgPath, "eve") }, "", "", refusal.Unauthenticated},
		{"deny route", func() *Request { return request("POST", "/api/v1/tokens/new", "alice") }, "", "", refusal.Denied},
		{"no route", func() *Request { return request("GET", "/nowhere", "alice") }, "", "", refusal.Denied},
		{"org not enrolled", func() *Request { return request("POST", msgPath, "zed") }, "", "", refusal.Forbidden},
		{"trailers", func() *Request { r := request("POST", msgPath, "alice"); r.Trailers = true; return r }, "", "", refusal.BadRequest},
		{"upgrade", func() *Request {
			r := request("POST", msgPath, "alice")
			r.Header.Set("Connection", "Upgrade")
			return r
		}, "", "", refusal.BadRequest},
		{"query names an encrypted field", func() *Request { r := request("POST", msgPath, "alice"); r.Query = "body=x"; return r }, "", "", refusal.BadRequest},
		{"method override in the query", func() *Request { r := request("POST", msgPath, "alice"); r.Query = "_method=DELETE"; return r }, "", "", refusal.BadRequest},
		{"media type", func() *Request { return request("POST", msgPath, "alice") }, `{"body":"` + canary + `"}`, "text/plain", refusal.UnsupportedMedia},
		{"malformed JSON", func() *Request { return request("POST", msgPath, "alice") }, `{"body":"` + canary + `",}`, json, refusal.BadRequest},
		{"duplicate key", func() *Request { return request("POST", msgPath, "alice") }, `{"body":"x","body":"` + canary + `"}`, json, refusal.BadRequest},
		{"planted token", func() *Request { return request("POST", msgPath, "alice") }, `{"body":"x","note":"ephi:v1:org_a:00000001:AAAA"}`, json, refusal.BadRequest},
		{"too large", func() *Request { return request("POST", msgPath, "alice") }, `{"body":"` + strings.Repeat("x", 5000) + `"}`, json, refusal.TooLarge},
		{"no keys for the org", func() *Request { return request("POST", msgPath, "nina") }, `{"body":"` + canary + `"}`, json, refusal.KeysUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			ctx := context.Background()
			req := tc.req()
			x, err := r.eng.Begin(ctx, req)
			defer x.Close()
			if err == nil && tc.body != "" {
				req.Header.Set("Content-Type", tc.ct)
				_, err = x.SealRequest(ctx, req.Header, strings.NewReader(tc.body), int64(len(tc.body)))
			}
			if err == nil {
				t.Fatal("the request was not refused")
			}
			ref := x.Refuse(ctx, err)
			if ref.Kind != tc.kind {
				t.Fatalf("refused as %v (%s), want %v", ref.Kind, ref.Reason, tc.kind)
			}
			rec := r.aud.last(t)
			if rec.Status != Status(tc.kind) || rec.Reason != ref.Reason || rec.Decision != decisionOf(tc.kind) {
				t.Errorf("record %+v for a %v refusal", rec, tc.kind)
			}
			if strings.Contains(ref.Reason, canary) || bytes.Contains(rec.AppendJSON(nil), []byte(canary)) {
				t.Error("the refusal or its record holds the PHI value")
			}
			if len(r.aud.list) != 1 {
				t.Errorf("%d records, want 1", len(r.aud.list))
			}
		})
	}
}

// TestCapacity: Begin refuses past max_concurrent_requests, and Close
// gives the slot back.
func TestCapacity(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	a, _ := r.eng.Begin(ctx, request("GET", "/healthz", ""))
	b, _ := r.eng.Begin(ctx, request("GET", "/healthz", ""))
	c, err := r.eng.Begin(ctx, request("GET", "/healthz", ""))
	if !errors.Is(err, refusal.Busy) {
		t.Fatalf("third request in flight: %v, want busy", err)
	}
	c.Close() // holds no slot: must not free one of the others
	if _, err := r.eng.Begin(ctx, request("GET", "/healthz", "")); !errors.Is(err, refusal.Busy) {
		t.Fatalf("after closing a refused exchange: %v, want busy", err)
	}
	a.Close()
	a.Close() // twice is harmless
	d, err := r.eng.Begin(ctx, request("GET", "/healthz", ""))
	if err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
	b.Close()
	d.Close()
}

// TestAuditDownFailsClosed: when the record cannot be written, Allow
// reports it and the answer becomes the audit refusal: no record, no PHI.
func TestAuditDownFailsClosed(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	x, _, _ := r.sendMessage(t, canary)
	defer x.Close()
	r.aud.fail = true
	err := x.Allow(ctx, 200)
	if err == nil {
		t.Fatal("Allow reported success without a record")
	}
	if ref := x.Refuse(ctx, err); ref.Kind != refusal.AuditUnavailable {
		t.Errorf("answer %v, want audit_unavailable", ref.Kind)
	}
	// A refusal whose own record fails is answered as the audit failure.
	y, _ := r.eng.Begin(ctx, request("POST", msgPath, ""))
	defer y.Close()
	if ref := y.Refuse(ctx, refusal.New(refusal.Unauthenticated, "no token")); ref.Kind != refusal.AuditUnavailable {
		t.Errorf("unrecorded refusal answered as %v, want audit_unavailable", ref.Kind)
	}
}

// TestNonReaderSeesMask: a caller whose role is not a reader gets the mask,
// and the record says why.
func TestNonReaderSeesMask(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	tok, err := r.keys.Encrypt(ctx, "org_a", []byte(`"`+canary+`"`))
	if err != nil {
		t.Fatal(err)
	}
	req := request("POST", msgPath, "vic")
	x, err := r.eng.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	app := []byte(`{"body":"` + tok + `"}`)
	out, _, err := x.OpenResponse(ctx, 200, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(app), int64(len(app)))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"body":"[protected]"}` {
		t.Errorf("viewer got %s", out)
	}
	x.Allow(ctx, 200)
	if f := r.aud.last(t).Fields; len(f) != 1 || f[0].Action != audit.ActionMask || f[0].Reason != MaskNotReader {
		t.Errorf("fields %+v", f)
	}
}

// TestMaskedAnswerOutgrowsItsBuffer: values that are not tokens are
// masked, and a mask longer than the value makes the answer longer than
// what the app sent; it grows, and nothing is lost.
func TestMaskedAnswerOutgrowsItsBuffer(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	x, err := r.eng.Begin(ctx, request("GET", msgPath, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	var app, want strings.Builder
	app.WriteString(`{"data":[`)
	want.WriteString(`{"data":[`)
	for i := range 2000 {
		if i > 0 {
			app.WriteByte(',')
			want.WriteByte(',')
		}
		app.WriteString(`{"body":1}`)
		want.WriteString(`{"body":"[protected]"}`)
	}
	app.WriteString(`]}`)
	want.WriteString(`]}`)
	out, _, err := x.OpenResponse(ctx, 200, http.Header{"Content-Type": {"application/json"}}, strings.NewReader(app.String()), int64(app.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want.String() {
		t.Fatalf("answer of %d bytes, want %d", len(out), want.Len())
	}
	x.Allow(ctx, 200)
	if f := r.aud.last(t).Fields; len(f) != 1 || f[0].Count != 2000 || f[0].Reason != MaskNotToken {
		t.Errorf("fields %+v", f)
	}
}

// BenchmarkOpenList50 is the engine's share of make bench's list-50
// workload: a 50-message list, each a 200-byte body, decrypted for a
// reader, with the head judged and the record written.
func BenchmarkOpenList50(b *testing.B) {
	r := newRig(b)
	ctx := context.Background()
	var sb strings.Builder
	sb.WriteString(`{"data":[`)
	for i := range 50 {
		tok, err := r.keys.Encrypt(ctx, "org_a", []byte(`"`+strings.Repeat("m", 198)+`"`))
		if err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"id":"m_` + strconv.Itoa(i) + `","direction":"inbound","body":"` + tok + `","created_at":"2026-11-22T10:00:00Z"}`)
	}
	sb.WriteString(`]}`)
	list := []byte(sb.String())
	b.SetBytes(int64(len(list)))
	b.ReportAllocs()
	for b.Loop() {
		x, err := r.eng.Begin(ctx, request("GET", "/api/v1/conversations/c1/messages", "alice"))
		if err != nil {
			b.Fatal(err)
		}
		h := http.Header{"Content-Type": {"application/json"}}
		if _, _, err := x.OpenResponse(ctx, 200, h, bytes.NewReader(list), int64(len(list))); err != nil {
			b.Fatal(err)
		}
		if err := x.Allow(ctx, 200); err != nil {
			b.Fatal(err)
		}
		x.Close()
		r.aud.list = r.aud.list[:0]
		r.aud.ctxs = r.aud.ctxs[:0]
		r.ver.ctxs = r.ver.ctxs[:0]
		r.keys.ctxs = r.keys.ctxs[:0]
	}
}

// TestBodiesAreNotShared: read buffers are pooled and wiped. What
// SealRequest and OpenResponse return stays intact while other requests go
// through, until the exchange is closed, and is wiped then.
func TestBodiesAreNotShared(t *testing.T) {
	r := newRig(t)
	x, sealed, opened := r.sendMessage(t, canary)
	keepSealed, keepOpened := string(sealed), string(opened)
	if !strings.Contains(keepOpened, canary) || !strings.Contains(keepSealed, "ephi:") {
		t.Fatalf("sealed %s, opened %s", sealed, opened)
	}
	for i := range 20 {
		other, _, _ := r.sendMessage(t, "other value "+strconv.Itoa(i))
		other.Close()
	}
	if string(sealed) != keepSealed || string(opened) != keepOpened {
		t.Errorf("a body changed while its exchange was open: %s / %s", sealed, opened)
	}
	x.Close()
	if bytes.Contains(opened[:cap(opened)], []byte(canary)) {
		t.Error("the opened body still holds plaintext after Close")
	}
	if bytes.Contains(sealed[:cap(sealed)], []byte("ephi:")) {
		t.Error("the sealed body was not given back at Close")
	}
	x.Close() // twice is harmless
}

// TestSealedBodyOutlivesClose: a reader opened on the sealed body keeps it
// whole after the exchange is closed (an HTTP client may still be sending
// it), the body is given back when the last reader closes, and a reader
// opened or read after that fails instead of reading another body.
func TestSealedBodyOutlivesClose(t *testing.T) {
	r := newRig(t)
	x, sealed, _ := r.sendMessage(t, canary)
	want := string(sealed)
	first, retry := x.SealedBody(), x.SealedBody()
	if b, err := io.ReadAll(first); err != nil || string(b) != want {
		t.Fatalf("first reader: %v, %d bytes of %d", err, len(b), len(want))
	}
	first.Close()
	x.Close()
	for i := range 10 { // other requests take buffers from the pool
		other, _, _ := r.sendMessage(t, "other value "+strconv.Itoa(i))
		other.Close()
	}
	if b, err := io.ReadAll(retry); err != nil || string(b) != want {
		t.Fatalf("a reader open across Close read %v, %q", err, b)
	}
	retry.Close()
	retry.Close() // twice is harmless
	if bytes.Contains(sealed[:cap(sealed)], []byte("ephi:")) {
		t.Error("the sealed body was not given back when its last reader closed")
	}
	if _, err := x.SealedBody().Read(make([]byte, 10)); !errors.Is(err, errBodyReleased) {
		t.Errorf("a reader opened after the body was given back: %v", err)
	}
	if _, err := retry.Read(make([]byte, 10)); !errors.Is(err, errBodyReleased) {
		t.Errorf("a closed reader read: %v", err)
	}

	// Before SealRequest, there is nothing to read.
	y, err := r.eng.Begin(context.Background(), request("POST", msgPath, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	if _, err := y.SealedBody().Read(make([]byte, 10)); !errors.Is(err, errBodyReleased) {
		t.Errorf("a reader before SealRequest: %v", err)
	}
}

// TestSealedBodyConcurrentClose: readers read and close on other
// goroutines while the exchange closes (run with -race); each reader sees
// the whole body or an error, never another body's bytes.
func TestSealedBodyConcurrentClose(t *testing.T) {
	r := newRig(t)
	for range 20 {
		x, sealed, _ := r.sendMessage(t, canary)
		want := string(sealed)
		var wg sync.WaitGroup
		for range 4 {
			rd := x.SealedBody()
			wg.Go(func() {
				defer rd.Close()
				var got []byte
				buf := make([]byte, 7)
				for {
					n, err := rd.Read(buf)
					got = append(got, buf[:n]...)
					if err == io.EOF {
						if string(got) != want {
							t.Errorf("read %q, want the sealed body", got)
						}
						return
					}
					if err != nil {
						return
					}
				}
			})
		}
		x.Close()
		wg.Wait()
	}
}

// TestValidJSON: the one-pass check for plain strings agrees with the
// decoder, and everything else is left to the decoder.
func TestValidJSON(t *testing.T) {
	for _, v := range []string{
		`"plain text"`, `""`, `"caf\u00e9"`, `"tab\there"`, `"naïve 日本"`,
		"\"ctl\x01\"", "\"bad \xff utf8\"", `"a","role":"admin"`, `"a"` + "\n", `"unterminated`,
		`"`, `"\"`, `"\q"`, `{"a":1}`, `{"a":1,"a":2}`, `[1,2]`, `12`, `null`, `true`, ``, `"x" "y"`,
	} {
		want := jsontext.Value(v).IsValid()
		if got := validJSON([]byte(v)); got != want {
			t.Errorf("validJSON(%q) = %v, the decoder says %v", v, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`"x"`, `"a\"b"`, "\"\x00\"", `"\u00"`, `{}`, `"é"`, "\"\xc3\"",
		// Long enough for eight-byte words, with a stop byte in several lanes.
		`"0123456789abcdef0123"`, `"0123456789"bcdef0123"`, `"0123456789ab\def0123"`,
		"\"012\x1f456789abcdef0123\"", "\"0123456789abcde\x7f0123\"", "\"01234567\x80\x80abcdef0123\"",
		"\"0123456\x20\x21\x22\x5b\x5c\x5d\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), jsontext.Value(b).IsValid(); got != want {
			t.Errorf("validJSON(%q) = %v, the decoder says %v", b, got, want)
		}
	})
}

// TestOpenedBody: the reader over the opened body reads it whole while the
// exchange is open, and fails once it is closed.
func TestOpenedBody(t *testing.T) {
	r := newRig(t)
	x, _, opened := r.sendMessage(t, canary)
	want := string(opened)
	b, err := io.ReadAll(x.OpenedBody())
	if err != nil || string(b) != want {
		t.Fatalf("read %q, %v; want %q", b, err, want)
	}
	rd := x.OpenedBody()
	x.Close()
	if _, err := rd.Read(make([]byte, 10)); !errors.Is(err, errBodyReleased) {
		t.Errorf("read after Close: %v", err)
	}
}

package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/keys"
)

const msgPath = "/api/v1/conversations/c1/messages"

var message = []byte(`{"to":"+15550001111","body":"` + canary + ` rash is worse","attachments":[{"url":"u1","caption":"photo of ` + canary + `"},{"url":"u2"}],"count":1.50}`)

func TestEncryptForwardDecrypt(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do("POST", msgPath, "alice", "application/json", message)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	stored := h.app.last(t).body
	if bytes.Contains(stored, []byte(canary)) {
		t.Fatalf("the app received plaintext PHI: %s", stored)
	}
	m := decodeJSON(t, stored)
	if !keys.LooksLikeToken(m["body"].(string)) {
		t.Errorf("body not encrypted: %v", m["body"])
	}
	att := m["attachments"].([]any)
	if !keys.LooksLikeToken(att[0].(map[string]any)["caption"].(string)) {
		t.Errorf("caption not encrypted: %v", att[0])
	}
	if !bytes.Contains(stored, []byte(`"to":"+15550001111"`)) || !bytes.Contains(stored, []byte(`"count":1.50}`)) || !bytes.Contains(stored, []byte(`{"url":"u2"}`)) {
		t.Errorf("unselected fields changed: %s", stored)
	}
	// The echoed response is decrypted back: same JSON values, same types.
	if string(body) != string(message) {
		t.Errorf("response\n got %s\nwant %s", body, message)
	}
	rec := h.sink.lastRecord(t)
	if rec.Route != "send-message" || rec.Org != "org_a" || rec.User != "alice" || rec.Role != "agent" ||
		rec.Decision != audit.DecisionAllow || rec.Status != 201 || rec.UpstreamStatus != 201 || rec.Method != "POST" || rec.Path != "/api/v1/conversations/{id}/messages" {
		t.Errorf("audit record %+v", rec)
	}
	if strings.Join(rec.Actions, ",") != "encrypt,decrypt" {
		t.Errorf("actions %v, want encrypt then decrypt", rec.Actions)
	}
	wantFields := map[string]int{"encrypt $.body": 1, "encrypt $.attachments[*].caption": 1, "decrypt $.body": 1, "decrypt $.attachments[*].caption": 1}
	for _, f := range rec.Fields {
		if wantFields[f.Action+" "+f.Path] != f.Count {
			t.Errorf("field %+v unexpected", f)
		}
		delete(wantFields, f.Action+" "+f.Path)
	}
	if len(wantFields) != 0 {
		t.Errorf("audit lacks fields %v", wantFields)
	}
	// The app sees who is calling, from phiguard only.
	if hd := h.app.last(t).header; hd.Get("X-Phiguard-Org") != "org_a" || hd.Get("X-Phiguard-User") != "alice" || hd.Get("X-Phiguard-Request-Id") != rec.RequestID {
		t.Errorf("identity headers to the app: %v", hd)
	}
}

func TestEveryJSONTypeRoundTrips(t *testing.T) {
	h := newHarness(t)
	for _, v := range []string{`"s"`, `12.500`, `-3e-7`, `true`, `false`, `{"a":[1,"x",null],"b":{}}`, `[1,2,3]`, `""`} {
		in := []byte(`{"body":` + v + `}`)
		resp, out := h.do("POST", msgPath, "alice", "application/json", in)
		if resp.StatusCode != 201 || string(out) != string(in) {
			t.Errorf("%s: status %d, got %s", v, resp.StatusCode, out)
		}
		if stored := h.app.last(t).body; !bytes.HasPrefix(stored, []byte(`{"body":"ephi:v1:org_a:`)) {
			t.Errorf("%s stored as %s", v, stored)
		}
	}
}

// storeAs makes the app answer GETs with messages encrypted for org.
func storeAs(t *testing.T, h *harness, org string, bodies ...string) {
	t.Helper()
	var items []string
	for _, b := range bodies {
		tok, err := h.keyring.Encrypt(context.Background(), org, []byte(b))
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, `{"id":"m","body":"`+tok+`"}`)
	}
	list := []byte(`{"data":[` + strings.Join(items, ",") + `]}`)
	h.app.answer = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(list)
	}
}

func TestReadersAndMasks(t *testing.T) {
	h := newHarness(t)
	storeAs(t, h, "org_a", `"`+canary+`"`)
	for _, tc := range []struct {
		user, want, reason string
	}{
		{"alice", canary, ""},
		{"vic", "[protected]", "the caller's role may not read it"},
		{"bob", "[protected]", "token of another organization"},
	} {
		resp, body := h.do("GET", msgPath, tc.user, "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", tc.user, resp.StatusCode, body)
		}
		got := decodeJSON(t, body)["data"].([]any)[0].(map[string]any)["body"]
		if got != tc.want {
			t.Errorf("%s read %q, want %q", tc.user, got, tc.want)
		}
		rec := h.sink.lastRecord(t)
		if tc.reason != "" {
			if len(rec.Fields) != 1 || rec.Fields[0].Action != audit.ActionMask || rec.Fields[0].Reason != tc.reason {
				t.Errorf("%s: audit fields %+v, want a mask because %q", tc.user, rec.Fields, tc.reason)
			}
		}
	}
}

func TestTokenThatDoesNotDecryptIsMasked(t *testing.T) {
	h := newHarness(t)
	tok, _ := h.keyring.Encrypt(context.Background(), "org_a", []byte(`"x"`))
	tampered := tok[:len(tok)-3] + "AAA"
	h.app.answer = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"data":[{"body":"` + tampered + `"},{"body":"plain legacy text"},{"body":null},{"body":"ephi:v9:garbage"}]}`))
	}
	resp, body := h.do("GET", msgPath, "alice", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if want := `{"data":[{"body":"[protected]"},{"body":"[protected]"},{"body":null},{"body":"[protected]"}]}`; string(body) != want {
		t.Errorf("got %s\nwant %s", body, want)
	}
	if strings.Contains(string(body), "ephi:") {
		t.Error("a raw token reached the client")
	}
	reasons := map[string]int{}
	for _, f := range h.sink.lastRecord(t).Fields {
		reasons[f.Reason] += f.Count
	}
	if reasons[engine.MaskUndecodable] != 2 || reasons[engine.MaskNotToken] != 1 {
		t.Errorf("mask reasons %v", reasons)
	}
}

func TestDenyRoute(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do("POST", "/api/v1/tokens", "alice", "application/json", []byte(`{}`))
	h.wantRefused(resp, body, 403, 0)
	if !strings.Contains(string(body), "personal access tokens are disabled") {
		t.Errorf("reason missing: %s", body)
	}
	rec := h.sink.lastRecord(t)
	if rec.Decision != audit.DecisionDeny || rec.Route != "tokens" || rec.Actions[0] != audit.ActionDeny || rec.Reason == "" {
		t.Errorf("audit %+v", rec)
	}
}

func TestDefaultDenyAndOpenRoute(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do("GET", "/admin", "alice", "", nil)
	h.wantRefused(resp, body, 403, 0)
	resp, _ = h.do("GET", "/healthz", "", "", nil)
	if resp.StatusCode != 201 || h.app.hits() != 1 {
		t.Errorf("open route: status %d, hits %d", resp.StatusCode, h.app.hits())
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name string
		opt  reqOpt
	}{
		{"no token", nil},
		{"garbage token", header("Authorization", "Bearer not.a.jwt")},
		{"basic auth", header("Authorization", "Basic YTpi")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []reqOpt
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			resp, body := h.do("POST", msgPath, "", "application/json", message, opts...)
			h.wantRefused(resp, body, 401, 0)
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	resp, body := h.do("POST", msgPath, "zed", "application/json", message)
	h.wantRefused(resp, body, 403, 0)
}

func TestBadBodiesNeverReachTheApp(t *testing.T) {
	h := newHarness(t)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte(`{"body":"`))
	zw.Write(bytes.Repeat([]byte("A"), 1<<20))
	zw.Write([]byte(`"}`))
	zw.Close()
	if bomb.Len() > 4096 {
		t.Fatalf("bomb is %d bytes compressed; it must fit under the limit to test decompression", bomb.Len())
	}
	for _, tc := range []struct {
		name, ct string
		body     []byte
		opts     []reqOpt
		status   int
	}{
		{"malformed JSON", "application/json", []byte(`{"body":"` + canary + `",`), nil, 400},
		{"wrong content type", "text/plain", message, nil, 415},
		{"multipart", "multipart/form-data; boundary=x", []byte("--x\r\n\r\n" + canary + "\r\n--x--"), nil, 415},
		{"no content type", "", message, nil, 415},
		{"latin-1 charset", "application/json; charset=iso-8859-1", message, nil, 415},
		{"form on a JSON route", "application/x-www-form-urlencoded", []byte("body=" + canary), nil, 415},
		{"unknown encoding", "application/json", message, []reqOpt{header("Content-Encoding", "br")}, 415},
		{"double encoding", "application/json", message, []reqOpt{header("Content-Encoding", "gzip"), header("Content-Encoding", "gzip")}, 415},
		{"gzip bomb", "application/json", bomb.Bytes(), []reqOpt{header("Content-Encoding", "gzip")}, 413},
		{"corrupt gzip", "application/json", []byte("\x1f\x8b\x08\x00garbage"), []reqOpt{header("Content-Encoding", "gzip")}, 400},
		{"oversized", "application/json", []byte(`{"body":"` + strings.Repeat("x", 5000) + `"}`), nil, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.do("POST", msgPath, "alice", tc.ct, tc.body, tc.opts...)
			h.wantRefused(resp, body, tc.status, 0)
		})
	}
}

func TestGzipRequestIsDecoded(t *testing.T) {
	h := newHarness(t)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(message)
	zw.Close()
	resp, body := h.do("POST", msgPath, "alice", "application/json; charset=UTF-8", buf.Bytes(), header("Content-Encoding", "gzip"))
	if resp.StatusCode != 201 || string(body) != string(message) {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := h.app.last(t)
	if got.header.Get("Content-Encoding") != "" || bytes.Contains(got.body, []byte(canary)) || !bytes.HasPrefix(got.body, []byte(`{"to":`)) {
		t.Errorf("the app got %q with Content-Encoding %q", got.body, got.header.Get("Content-Encoding"))
	}
}

func TestKeyFailureRefuses(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do("POST", msgPath, "nokey", "application/json", message)
	h.wantRefused(resp, body, 503, 0)
	// A token labelled with the caller's own org, whose keyset is missing.
	tok, _ := h.keyring.Encrypt(context.Background(), "org_a", []byte(`"x"`))
	relabelled := strings.Replace(tok, ":org_a:", ":org_nokeys:", 1)
	h.app.answer = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"data":[{"body":"` + relabelled + `"}]}`))
	}
	resp, body = h.do("GET", msgPath, "nokey", "", nil)
	if resp.StatusCode != 503 || strings.Contains(string(body), "ephi:") {
		t.Errorf("decrypt without keys: status %d, body %s", resp.StatusCode, body)
	}
}

func TestAuditDownRefuses(t *testing.T) {
	h := newHarness(t)
	storeAs(t, h, "org_a", `"`+canary+`"`)
	h.sink.fail = true
	resp, body := h.do("GET", msgPath, "alice", "", nil)
	if resp.StatusCode != 503 || strings.Contains(string(body), canary) {
		t.Errorf("audit down: status %d, body %s", resp.StatusCode, body)
	}
	resp, body = h.do("POST", "/api/v1/tokens", "alice", "", nil)
	if resp.StatusCode != 503 {
		t.Errorf("deny with audit down: status %d, body %s", resp.StatusCode, body)
	}
}

// TestRecordBeforeForward: on a PHI route the intent record (the caller,
// the route, the fields sealed) is written before the app is called; a
// sink that fails or hangs past the bound refuses the request with 503
// and the app never sees it: no PHI write, no PHI read, without a record.
func TestRecordBeforeForward(t *testing.T) {
	h := newHarness(t)
	h.do("POST", msgPath, "alice", "application/json", message)
	var intent, outcome int
	for _, r := range h.sink.all() {
		switch {
		case r.Phase == audit.PhaseIntent && r.Route == "send-message" && r.User == "alice" && len(r.Fields) == 2 && r.Status == 0:
			intent++
		case r.Phase == "" && r.Route == "send-message" && r.Status == 201:
			outcome++
		}
	}
	if intent != 1 || outcome != 1 {
		t.Fatalf("%d intent and %d outcome records, want 1 each: %+v", intent, outcome, h.sink.all())
	}

	for _, c := range []struct {
		name   string
		break_ func()
		fix    func()
	}{
		{"a sink that fails", func() { h.sink.mu.Lock(); h.sink.fail = true; h.sink.mu.Unlock() }, func() { h.sink.mu.Lock(); h.sink.fail = false; h.sink.mu.Unlock() }},
		{"a sink that hangs", func() { h.sink.mu.Lock(); h.sink.hold = make(chan struct{}); h.sink.mu.Unlock() }, func() {
			h.sink.mu.Lock()
			close(h.sink.hold)
			h.sink.hold = nil
			h.sink.mu.Unlock()
		}},
	} {
		hits := h.app.hits()
		c.break_()
		for _, req := range []struct{ method, user string }{{"POST", "alice"}, {"GET", "alice"}} {
			var body []byte
			if req.method == "POST" {
				body = message
			}
			resp, out := h.do(req.method, msgPath, req.user, "application/json", body)
			if resp.StatusCode != 503 || !strings.Contains(string(out), "audit_unavailable") {
				t.Errorf("%s: %s: %d %s, want 503 audit_unavailable", c.name, req.method, resp.StatusCode, out)
			}
		}
		if h.app.hits() != hits {
			t.Errorf("%s: the app was called %d times with no record written", c.name, h.app.hits()-hits)
		}
		c.fix()
	}
}

func TestUpstreamResponses(t *testing.T) {
	h := newHarness(t)
	tok, _ := h.keyring.Encrypt(context.Background(), "org_a", []byte(`"`+canary+`"`))
	list := []byte(`{"data":[{"body":"` + tok + `"}]}`)
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		status int
	}{
		{"gzip is decoded", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write(list)
			zw.Close()
		}, 200},
		{"unknown encoding", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "br")
			w.Write(list)
		}, 502},
		{"not JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<pre>" + tok + "</pre>"))
		}, 502},
		{"broken JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(list[:20])
		}, 502},
		{"too large", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"data":[],"pad":"` + strings.Repeat("x", 4*4096+1) + `"}`))
		}, 502},
		{"empty 204", func(w http.ResponseWriter) { w.WriteHeader(204) }, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.app.answer = func(w http.ResponseWriter, _ *http.Request, _ []byte) { tc.answer(w) }
			resp, body := h.do("GET", msgPath, "alice", "", nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if strings.Contains(string(body), "ephi:") {
				t.Errorf("a raw token reached the client: %s", body)
			}
			if tc.status == 200 && !strings.Contains(string(body), canary) {
				t.Errorf("not decrypted: %s", body)
			}
			if h.app.last(t).header.Get("Accept-Encoding") != "identity" {
				t.Errorf("phiguard did not ask the app for identity encoding")
			}
			if rec := h.sink.lastRecord(t); rec.Status != tc.status {
				t.Errorf("audit status %d, want %d", rec.Status, tc.status)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	h := newHarness(t)
	h.appSrv.Close()
	resp, body := h.do("POST", msgPath, "alice", "application/json", message)
	if resp.StatusCode != 502 || strings.Contains(string(body), canary) {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
	if rec := h.sink.lastRecord(t); rec.Status != 502 || rec.Decision != audit.DecisionError {
		t.Errorf("audit %+v", rec)
	}
}

func TestFormWebhook(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do("POST", "/webhooks/sms/org_b", "", "application/x-www-form-urlencoded", []byte("From=%2B15550001111&Body="+canary+"+hurts"))
	if resp.StatusCode != 201 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := h.app.last(t).body
	if bytes.Contains(got, []byte(canary)) || !bytes.HasPrefix(got, []byte("From=%2B15550001111&Body=ephi%3Av1%3Aorg_b%3A")) {
		t.Errorf("the app got %s", got)
	}
	var stored string
	for _, kv := range strings.Split(string(got), "&") {
		if v, ok := strings.CutPrefix(kv, "Body="); ok {
			stored = strings.ReplaceAll(v, "%3A", ":")
		}
	}
	pt, err := h.keyring.Decrypt(context.Background(), "org_b", []byte(stored))
	if err != nil || string(pt) != `"`+canary+` hurts"` {
		t.Errorf("stored form value decrypts to %s, %v", pt, err)
	}
}

func TestAuditRecordsAreJSONLines(t *testing.T) {
	h := newHarness(t)
	h.do("POST", msgPath, "alice", "application/json", message)
	h.do("POST", "/api/v1/tokens", "alice", "", nil)
	lines := strings.Split(strings.TrimSpace(h.auditAll.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], `"event":"chain_start"`) || !strings.Contains(lines[1], `"phase":"intent"`) {
		t.Fatalf("%d audit lines, want the chain's start, the message's intent and outcome, the refusal:\n%s", len(lines), h.auditAll)
	}
	for _, l := range lines[1:] {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.RequestID == "" || r.Time.IsZero() {
			t.Errorf("bad audit line %s", l)
		}
	}
}

// TestNoCacheKeepsPHI: the app's caching directives, including the
// CDN-specific ones that CDNs obey over Cache-Control, never reach a
// client or cache on a route that decrypts.
func TestNoCacheKeepsPHI(t *testing.T) {
	h := newHarness(t)
	tok, err := h.keyring.Encrypt(context.Background(), "org_a", []byte(`"`+canary+`"`))
	if err != nil {
		t.Fatal(err)
	}
	appHeaders := map[string]string{
		"Cache-Control": "public, max-age=3600", "CDN-Cache-Control": "max-age=86400", "Surrogate-Control": "max-age=86400",
		"Cloudflare-CDN-Cache-Control": "max-age=600", "Vercel-CDN-Cache-Control": "max-age=600", "Edge-Control": "cache-maxage=1h",
		"X-Accel-Expires": "3600", "Expires": "Thu, 01 Dec 2099 16:00:00 GMT", "ETag": `"v1"`, "Last-Modified": "Tue, 01 Dec 2026 06:00:00 GMT",
		"Age": "10", "Surrogate-Key": "conv-c1", "Acme-Cache-Control": "max-age=60",
	}
	h.app.answer = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		for k, v := range appHeaders {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"data":[{"body":"` + tok + `"}]}`))
	}
	for _, user := range []string{"alice", "vic"} { // plaintext, then the mask
		resp, body := h.do("GET", msgPath, user, "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", user, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") || strings.Contains(cc, "public") {
			t.Errorf("%s: Cache-Control %q, want no-store only", user, cc)
		}
		for k := range appHeaders {
			if k == "Cache-Control" || k == "Expires" {
				continue
			}
			if v := resp.Header.Get(k); v != "" {
				t.Errorf("%s: the app's %s: %s reached the client", user, k, v)
			}
		}
		if e := resp.Header.Get("Expires"); e != "0" {
			t.Errorf("%s: Expires %q, want 0", user, e)
		}
	}
}

func TestNoRecordWithoutPHI(t *testing.T) {
	h := newHarness(t)
	resp, _ := h.do("GET", "/healthz", "", "", nil)
	if resp.StatusCode != 201 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := len(h.sink.all()); n != 0 {
		t.Errorf("%d audit records for a request that touched no PHI", n)
	}
}

func TestHygieneOnRoutesWithoutFieldActions(t *testing.T) {
	h := newHarness(t)
	code, body := rawRequest(t, h, "GET", "/x/../HEALTHZ", "", nil, "X-HTTP-Method-Override: DELETE", "X-Phiguard-Org: org_a", "X-Forwarded-For: 10.1.1.1")
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	got := h.app.last(t)
	if got.rawPath != "/HEALTHZ" || got.header.Get("X-Http-Method-Override") != "" || got.header.Get("X-Phiguard-Org") != "" || got.header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("the app got path %q headers %v", got.rawPath, got.header)
	}
	if code, _ := rawRequest(t, h, "GET", "/healthz%2F..%2Fadmin", "", nil); code != 400 {
		t.Errorf("encoded slash on an open route: %d, want 400", code)
	}
}

func TestOrgFromTrustedGatewayHeader(t *testing.T) {
	extra := `  - name: gateway
    match: {methods: [POST], path: /gw/notes}
    org_from: {header: X-Tenant}
    encrypt_request: ["$.note"]
`
	trusted := strings.Replace(testPolicy, "claims: {org: org_id, user: sub, role: role}", "claims: {org: org_id, user: sub, role: role}\n  trusted_gateways: [127.0.0.1/32, \"::1\"]", 1)
	for _, tc := range []struct {
		name, policyPrefix, tenant string
		status                     int
	}{
		{"from a trusted peer", trusted, "org_a", 201},
		{"naming another org than the token's", trusted, "org_b", 403},
		{"without the header", trusted, "", 403},
		{"the header twice, another org last", trusted, "org_a|org_b", 403},
		{"the header twice, the same org", trusted, "org_a|org_a", 403},
		{"from an untrusted peer", strings.Replace(trusted, "127.0.0.1/32", "10.0.0.0/8", 1), "org_a", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessWithPolicy(t, tc.policyPrefix+extra)
			var opts []reqOpt
			if tc.tenant != "" {
				for _, v := range strings.Split(tc.tenant, "|") {
					opts = append(opts, header("X-Tenant", v))
				}
			}
			resp, body := h.do("POST", "/gw/notes", "alice", "application/json", []byte(`{"note":"`+canary+`"}`), opts...)
			if tc.status != 201 {
				h.wantRefused(resp, body, tc.status, 0)
				return
			}
			if resp.StatusCode != 201 || !bytes.Contains(h.app.last(t).body, []byte("ephi:v1:org_a:")) {
				t.Errorf("%d %s; the app got %s", resp.StatusCode, body, h.app.last(t).body)
			}
		})
	}
}

func TestFirstMatchingRouteWins(t *testing.T) {
	// A broad deny listed first takes requests that send-message, listed
	// later, would also take: the first match decides.
	shadow := strings.Replace(testPolicy, "routes:\n", "routes:\n  - name: maintenance\n    match: {path: \"/api/v1/conversations/**\", methods: [POST, DELETE]}\n    deny: maintenance window\n", 1)
	h := newHarnessWithPolicy(t, shadow)
	for _, m := range []string{"POST", "DELETE"} {
		resp, body := h.do(m, msgPath, "alice", "application/json", message)
		h.wantRefused(resp, body, 403, 0)
		if !strings.Contains(string(body), "maintenance window") {
			t.Errorf("%s: the first route did not win: %s", m, body)
		}
	}
	// Requests only a later route takes still reach it.
	if resp, body := h.do("GET", "/healthz", "", "", nil); resp.StatusCode != 201 {
		t.Errorf("health: %d %s", resp.StatusCode, body)
	}
}

func TestContentTypeSpellings(t *testing.T) {
	h := newHarness(t)
	for _, ct := range []string{"application/json", "Application/JSON", "application/json; charset=UTF-8", "application/json;charset=utf-8",
		"application/fhir+json", "application/vnd.api+json; charset=utf-8"} {
		resp, body := h.do("POST", msgPath, "alice", ct, message)
		if resp.StatusCode != 201 || bytes.Contains(h.app.last(t).body, []byte(canary)) {
			t.Errorf("%s: %d %s", ct, resp.StatusCode, body)
		}
	}
}

package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/internal/testca"
)

// egressRoutes are the vendors of the egress tests: a carrier under a
// BAA, a push provider and a partner's webhook without one.
const egressRoutes = `
egress: {ca_file: CAFILE}
egress_routes:
  - name: carrier-send
    host: api.carrier.test
    match: {methods: [POST], path: "/2010-04-01/Accounts/{account}/Messages.json"}
    baa: true
    orgs: [org_a]
    decrypt_request: ["form:Body", "form:MediaUrl*"]
    consent: {to: "form:To"}
  - name: carrier-opted-in
    host: api.carrier.test
    match: {methods: [POST], path: "/2010-04-01/Accounts/{account}/OptedIn.json"}
    baa: true
    orgs: [org_a]
    decrypt_request: ["form:Body"]
    consent: {to: "form:To", require_consent: true}
  - name: carrier-json
    host: api.carrier.test
    match: {methods: [POST], path: "/v2/messages"}
    baa: true
    decrypt_request: ["$.text"]
    encrypt_response: ["$.text", "$.missing"]
  - name: push-send
    host: push.vendor.test
    match: {methods: [POST], path: "/v1/projects/{project}/messages:send"}
    baa: false
    replace_request:
      - {field: "$.message.notification.body", text: "You have a new message"}
    drop_request: ["$.message.data"]
    dlp: {detectors: [ssn, phone, email], fields: ["$.message.notification.title"], action: redact}
  - name: push-strict
    host: push.vendor.test
    match: {methods: [POST], path: "/v1/strict"}
    baa: false
    dlp: {detectors: [ssn, phone], fields: ["$.title"], action: block}
  - name: partner-hook
    host: hooks.partner.test
    baa: false
  - name: untrusted
    host: untrusted.vendor.test
    baa: false
`

// consentWebhook is the carrier's inbound webhook, reading STOP and START.
const consentWebhook = `  - name: sms-inbound
    match: {methods: [POST], path: "/webhooks/inbound/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body"]
    verify_signature: {scheme: twilio, secret_env: CARRIER_TOKEN, public_url: "https://hooks.example.com", resign_secret_env: APP_SECRET}
    consent_keywords: {from: "form:From", text: "form:Body"}
`

// vendor is a fake vendor behind TLS, with a certificate for its name.
type vendor struct {
	upstream
	srv *httptest.Server
}

type egressRig struct {
	*harness
	egress  *httptest.Server
	vendors map[string]*vendor
}

func newEgressRig(t *testing.T) *egressRig {
	t.Helper()
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	other, err := testca.New() // the untrusted vendor's CA: not egress.ca_file
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CARRIER_TOKEN", carrierToken)
	t.Setenv("APP_SECRET", appSecret)
	src := strings.Replace(testPolicy, "  - name: health\n", signedWebhookPolicy+consentWebhook+"  - name: health\n", 1)
	src = strings.Replace(src, "orgs: [", "audit: {hash_key: unused-hash.json}\norgs: [", 1)
	h := newHarnessWithPolicy(t, src+strings.Replace(egressRoutes, "CAFILE", caFile, 1))
	rig := &egressRig{harness: h, vendors: map[string]*vendor{}}
	addrs := map[string]string{}
	for _, name := range []string{"api.carrier.test", "push.vendor.test", "hooks.partner.test", "untrusted.vendor.test"} {
		issuer := ca
		if name == "untrusted.vendor.test" {
			issuer = other
		}
		cert, err := issuer.Issue(name)
		if err != nil {
			t.Fatal(err)
		}
		v := &vendor{}
		v.srv = httptest.NewUnstartedServer(&v.upstream)
		v.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		v.srv.StartTLS()
		t.Cleanup(v.srv.Close)
		rig.vendors[name] = v
		addrs[name+":443"] = v.srv.Listener.Addr().String()
	}
	tr, err := NewEgressTransport(h.p.Engine().Policy())
	if err != nil {
		t.Fatal(err)
	}
	// Vendors' names lead to their loopback servers; their certificates
	// are checked against those names, as a real vendor's would be.
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		a, ok := addrs[addr]
		if !ok {
			t.Errorf("phiguard dialled %s, which is no vendor of the test", addr)
			a = "127.0.0.1:1"
		}
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}
	g, err := NewEgress(EgressOptions{Engine: h.p.Engine, Transport: tr, Log: h.log})
	if err != nil {
		t.Fatal(err)
	}
	rig.egress = httptest.NewServer(g)
	t.Cleanup(rig.egress.Close)
	return rig
}

// call sends an egress call as the app would, through HTTP_PROXY: an
// absolute http:// URL of the vendor.
func (r *egressRig) call(method, rawURL, contentType string, body []byte) (*http.Response, []byte) {
	r.t.Helper()
	proxyURL, _ := url.Parse(r.egress.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Basic dmVuZG9yOmNyZWRlbnRpYWw=") // the vendor's, passed on
	resp, err := client.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

// stored returns the token the app stored for text, sent through ingress as user.
func (r *egressRig) stored(user, text string) string {
	r.t.Helper()
	body, _ := json.Marshal(map[string]string{"body": text})
	resp, out := r.do("POST", "/api/v1/conversations/7/messages", user, "application/json", body)
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("storing a message: %d %s", resp.StatusCode, out)
	}
	var m map[string]string
	if err := json.Unmarshal(r.app.last(r.t).body, &m); err != nil || !strings.HasPrefix(m["body"], "ephi:") {
		r.t.Fatalf("the app did not store a token: %s", r.app.last(r.t).body)
	}
	return m["body"]
}

func (r *egressRig) hits() map[string]int {
	n := map[string]int{}
	for name, v := range r.vendors {
		n[name] = v.hits()
	}
	return n
}

// wantEgressRefused checks a refused egress call: status, code, no vendor
// contacted, and its audit record.
func (r *egressRig) wantEgressRefused(resp *http.Response, body []byte, status int, code string, before map[string]int, destination string) {
	r.t.Helper()
	if resp.StatusCode != status || !strings.Contains(string(body), `"code":"`+code+`"`) {
		r.t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, status, code)
	}
	for name, n := range r.hits() {
		if n != before[name] {
			r.t.Errorf("%s was contacted by a refused call", name)
		}
	}
	rec := r.sink.lastRecord(r.t)
	if rec.Status != status || rec.Destination != destination || rec.Decision != audit.DecisionDeny {
		r.t.Errorf("record %+v, want status %d, destination %q, deny", rec, status, destination)
	}
}

// TestEgress: the carrier (BAA) gets plaintext; the push provider gets
// the generic text, none of the dropped members and redacted titles; a
// vendor without a BAA never gets a token, and is not contacted; an
// unlisted host is refused (403) and recorded; a token of an org the
// route does not serve, or one that does not open, is refused.
func TestEgress(t *testing.T) {
	r := newEgressRig(t)
	text := canary + " your biopsy results are ready"
	tok := r.stored("alice", text)

	t.Run("carrier gets plaintext", func(t *testing.T) {
		form := url.Values{"To": {"+15555550100"}, "Body": {tok}, "MediaUrl0": {r.stored("alice", "https://media.example/"+canary)}}
		resp, out := r.call("POST", "http://api.carrier.test/2010-04-01/Accounts/AC1/Messages.json", "application/x-www-form-urlencoded", []byte(form.Encode()))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("got %d %s", resp.StatusCode, out)
		}
		got := r.vendors["api.carrier.test"].last(t)
		sent, _ := url.ParseQuery(string(got.body))
		if sent.Get("Body") != text || sent.Get("MediaUrl0") != "https://media.example/"+canary || sent.Get("To") != "+15555550100" {
			t.Errorf("the carrier got %q", got.body)
		}
		if got.header.Get("Authorization") != "Basic dmVuZG9yOmNyZWRlbnRpYWw=" {
			t.Errorf("the vendor's credentials did not reach it: %v", got.header)
		}
		if xf := got.header.Get("X-Forwarded-For"); xf != "" {
			t.Errorf("the vendor learned the pod's address: %q", xf)
		}
		rec := r.sink.lastRecord(t)
		if rec.Route != "carrier-send" || rec.Destination != "api.carrier.test" || rec.Org != "org_a" || rec.UpstreamStatus != 201 ||
			rec.Path != "/2010-04-01/Accounts/{account}/Messages.json" || !hasField(rec, audit.ActionDecrypt, "form:Body", 1) || !hasField(rec, audit.ActionDecrypt, "form:MediaUrl*", 1) {
			t.Errorf("record %+v", rec)
		}
	})

	t.Run("Host header form", func(t *testing.T) {
		body, _ := json.Marshal(map[string]string{"text": tok, "to": "+15555550100"})
		req, _ := http.NewRequest("POST", r.egress.URL+"/v2/messages", bytes.NewReader(body))
		req.Host = "API.Carrier.Test:80"
		req.Header.Set("Content-Type", "application/json")
		resp, out := r.send(req)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("got %d %s", resp.StatusCode, out)
		}
		var sent map[string]string
		if err := json.Unmarshal(r.vendors["api.carrier.test"].last(t).body, &sent); err != nil || sent["text"] != text {
			t.Errorf("the carrier got %s", r.vendors["api.carrier.test"].last(t).body)
		}
		// The carrier echoes the message: the app gets it sealed again.
		var echoed map[string]string
		if err := json.Unmarshal(out, &echoed); err != nil || !strings.HasPrefix(echoed["text"], "ephi:v1:org_a:") || strings.Contains(string(out), canary) || echoed["to"] != "+15555550100" {
			t.Errorf("the app got the carrier's answer as %s", out)
		}
		if rec := r.sink.lastRecord(t); !hasField(rec, audit.ActionEncrypt, "$.text", 1) || !hasField(rec, audit.ActionDecrypt, "$.text", 1) {
			t.Errorf("record %+v", rec)
		}
	})

	t.Run("an echo phiguard cannot read", func(t *testing.T) {
		v := r.vendors["api.carrier.test"]
		v.mu.Lock()
		v.answer = func(w http.ResponseWriter, _ *http.Request, body []byte) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		}
		v.mu.Unlock()
		defer func() { v.mu.Lock(); v.answer = nil; v.mu.Unlock() }()
		body, _ := json.Marshal(map[string]string{"text": tok, "to": "+15555550100"})
		resp, out := r.call("POST", "http://api.carrier.test/v2/messages", "application/json", body)
		if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(out), canary) {
			t.Errorf("got %d %s", resp.StatusCode, out)
		}
	})

	t.Run("push gets the generic text", func(t *testing.T) {
		payload := `{"message":{"token":"device-1","notification":{"title":"Dana, call 555-123-4567 re ssn 123-45-6789","body":"` + tok + `"},"data":{"body":"` + tok + `","Extra":"x"}}}`
		resp, out := r.call("POST", "http://push.vendor.test/v1/projects/p1/messages:send", "application/json", []byte(payload))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("got %d %s", resp.StatusCode, out)
		}
		got := r.vendors["push.vendor.test"].last(t).body
		var m struct {
			Message struct {
				Token        string
				Notification struct{ Title, Body string }
				Data         map[string]any `json:"data"`
			}
		}
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("push payload %s: %v", got, err)
		}
		if m.Message.Notification.Body != "You have a new message" || m.Message.Data != nil || m.Message.Token != "device-1" ||
			strings.Contains(string(got), "ephi:") || strings.Contains(string(got), "4567") || strings.Contains(string(got), "6789") ||
			!strings.HasPrefix(m.Message.Notification.Title, "Dana, call ") {
			t.Errorf("the push provider got %s", got)
		}
		rec := r.sink.lastRecord(t)
		if !hasField(rec, audit.ActionReplace, "$.message.notification.body", 1) || !hasField(rec, audit.ActionDrop, "$.message.data", 1) {
			t.Errorf("record %+v", rec)
		}
		if f := findField(rec, audit.ActionDLPRedact); f == nil || f.Reason != "ssn,phone" && f.Reason != "phone,ssn" {
			t.Errorf("record %+v names no redacting detectors", rec)
		}
	})

	for _, c := range []struct {
		name, method, url, ctype, body string
		status                         int
		code, destination              string
	}{
		{"token to a push provider", "POST", "http://push.vendor.test/v1/projects/p1/messages:send", "application/json",
			`{"message":{"notification":{"body":"hi"},"android":{"notification":{"body":"` + tok + `"}}}}`, 403, "phi_blocked", "push.vendor.test"},
		{"token to a partner without a BAA", "POST", "http://hooks.partner.test/events", "application/json",
			`{"event":"message.created","text":"` + tok + `"}`, 403, "phi_blocked", "hooks.partner.test"},
		{"token in a partner form", "POST", "http://hooks.partner.test/events", "application/x-www-form-urlencoded",
			"text=" + url.QueryEscape(tok), 403, "phi_blocked", "hooks.partner.test"},
		{"token in a partner query", "GET", "http://hooks.partner.test/events?q=" + url.QueryEscape(tok), "", "", 400, "bad_request", "hooks.partner.test"},
		{"unlisted host", "POST", "http://exfil.example.net/collect", "application/json", `{"text":"` + canary + `"}`, 403, "destination_not_allowed", "exfil.example.net"},
		{"unlisted path of a listed host", "POST", "http://api.carrier.test/2010-04-01/Accounts/AC1/Calls.json", "application/x-www-form-urlencoded", "Body=" + canary, 403, "destination_not_allowed", "api.carrier.test"},
		{"token of an org the route does not serve", "POST", "http://api.carrier.test/2010-04-01/Accounts/AC1/Messages.json", "application/x-www-form-urlencoded",
			"Body=" + url.QueryEscape(r.stored("bob", canary)), 403, "token_org_not_allowed", "api.carrier.test"},
		{"token that does not open", "POST", "http://api.carrier.test/2010-04-01/Accounts/AC1/Messages.json", "application/x-www-form-urlencoded",
			"Body=" + url.QueryEscape(tok[:len(tok)-4]+"AAAA"), 403, "token_invalid", "api.carrier.test"},
		{"token outside decrypt_request", "POST", "http://api.carrier.test/2010-04-01/Accounts/AC1/Messages.json", "application/x-www-form-urlencoded",
			"Body=hi&StatusCallback=" + url.QueryEscape(tok), 403, "token_not_decrypted", "api.carrier.test"},
		{"DLP block", "POST", "http://push.vendor.test/v1/strict", "application/json", `{"title":"SSN 123-45-6789 ` + canary + `"}`, 403, "phi_blocked", "push.vendor.test"},
		{"a body egress cannot read", "POST", "http://hooks.partner.test/events", "text/plain", canary, 415, "unsupported_media_type", "hooks.partner.test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.hits()
			resp, out := r.call(c.method, c.url, c.ctype, []byte(c.body))
			r.wantEgressRefused(resp, out, c.status, c.code, before, c.destination)
			if strings.Contains(string(out), "ephi:") || strings.Contains(string(out), canary) {
				t.Errorf("the refusal quotes the body: %s", out)
			}
		})
	}

	t.Run("audit trail down", func(t *testing.T) {
		r.sink.mu.Lock()
		r.sink.fail = true
		r.sink.mu.Unlock()
		defer func() {
			r.sink.mu.Lock()
			r.sink.fail = false
			r.sink.mu.Unlock()
		}()
		before := r.hits()
		form := url.Values{"To": {"+15555550100"}, "Body": {tok}}
		resp, out := r.call("POST", "http://api.carrier.test/2010-04-01/Accounts/AC1/Messages.json", "application/x-www-form-urlencoded", []byte(form.Encode()))
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(out), "audit_unavailable") || r.hits()["api.carrier.test"] != before["api.carrier.test"] {
			t.Errorf("got %d %s; the carrier was contacted: %v", resp.StatusCode, out, r.hits()["api.carrier.test"] != before["api.carrier.test"])
		}
	})

	t.Run("a tunnel", func(t *testing.T) {
		before := r.hits()
		proxyURL, _ := url.Parse(r.egress.URL)
		client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
		_, err := client.Get("https://api.carrier.test/2010-04-01/Accounts/AC1/Messages.json")
		if err == nil || r.hits()["api.carrier.test"] != before["api.carrier.test"] {
			t.Errorf("an https:// URL through the egress listener: %v", err)
		}
		if rec := r.sink.lastRecord(t); rec.Status != http.StatusMethodNotAllowed || rec.Destination != "api.carrier.test:443" {
			t.Errorf("record %+v", rec)
		}
	})

	t.Run("vendor with an untrusted certificate", func(t *testing.T) {
		resp, out := r.call("POST", "http://untrusted.vendor.test/x", "application/json", []byte(`{"a":1}`))
		if resp.StatusCode != http.StatusBadGateway || r.vendors["untrusted.vendor.test"].hits() != 0 {
			t.Errorf("got %d %s; the vendor saw %d requests", resp.StatusCode, out, r.vendors["untrusted.vendor.test"].hits())
		}
	})
}

func findField(rec audit.Record, action string) *audit.Field {
	for i := range rec.Fields {
		if rec.Fields[i].Action == action {
			return &rec.Fields[i]
		}
	}
	return nil
}

func hasField(rec audit.Record, action, path string, count int) bool {
	for _, f := range rec.Fields {
		if f.Action == action && f.Path == path && f.Count == count {
			return true
		}
	}
	return false
}

// inbound posts a patient's SMS as the carrier does, signed unless forged.
func (r *egressRig) inbound(from, text string, forged bool) (int, string) {
	r.t.Helper()
	const path = "/webhooks/inbound/org_a"
	form := url.Values{"From": {from}, "Body": {text}, "To": {"+15555550000"}}
	key := carrierToken
	if forged {
		key = "another-token-0123456789abcdefgh"
	}
	sig := twilioSign(key, "https://hooks.example.com"+path, form)
	resp, out := r.do("POST", path, "", "application/x-www-form-urlencoded", []byte(form.Encode()), header("X-Twilio-Signature", sig))
	return resp.StatusCode, string(out)
}

// sms sends an SMS through the carrier route at path (Messages or OptedIn).
func (r *egressRig) sms(path, to, body string) (*http.Response, []byte) {
	r.t.Helper()
	form := url.Values{"To": {to}, "Body": {body}}
	return r.call("POST", "http://api.carrier.test/2010-04-01/Accounts/AC1/"+path, "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// TestConsent: a patient's STOP, received on the carrier's signed
// webhook, blocks the next SMS to that number (403 no_consent, the
// carrier never contacted) while the app still gets the message; START
// lifts it. A route with require_consent refuses a number that never
// opted in. A forged STOP changes nothing. Records name the number only
// by its keyed hash.
func TestConsent(t *testing.T) {
	r := newEgressRig(t)
	tok := r.stored("alice", canary+" see you tomorrow")
	const number = "+15555550100"
	ref := r.hasher.Hash(number)

	if resp, out := r.sms("Messages.json", number, tok); resp.StatusCode != http.StatusCreated {
		t.Fatalf("before any keyword: %d %s", resp.StatusCode, out)
	}
	if status, out := r.inbound("+1 (555) 555-0100", "Stop.", true); status != 401 {
		t.Fatalf("a forged STOP: %d %s", status, out)
	}
	if resp, out := r.sms("Messages.json", number, tok); resp.StatusCode != http.StatusCreated {
		t.Fatalf("after a forged STOP: %d %s", resp.StatusCode, out)
	}

	appHits := r.app.hits()
	if status, out := r.inbound("+1 (555) 555-0100", "Stop.", false); status != http.StatusCreated || r.app.hits() != appHits+1 {
		t.Fatalf("STOP: %d %s (the app must still get it)", status, out)
	}
	rec := r.sink.lastRecord(t)
	if !hasField(rec, audit.ActionOptOut, "form:From", 1) || !hasRecorded(rec, "consent_ref", ref) || rec.Org != "org_a" {
		t.Errorf("STOP record %+v", rec)
	}
	before := r.hits()
	resp, out := r.sms("Messages.json", "(555) 555-0100", tok)
	r.wantEgressRefused(resp, out, 403, "no_consent", before, "api.carrier.test")
	if rec := r.sink.lastRecord(t); !hasField(rec, audit.ActionConsent, "form:To", 1) || findField(rec, audit.ActionConsent).Reason != "revoked" || !hasRecorded(rec, "consent_ref", ref) {
		t.Errorf("refusal record %+v", rec)
	}
	// Another number, and another org's registry, are not touched.
	if resp, out := r.sms("Messages.json", "+15555550101", tok); resp.StatusCode != http.StatusCreated {
		t.Errorf("another number: %d %s", resp.StatusCode, out)
	}

	if status, out := r.inbound(number, "start", false); status != http.StatusCreated {
		t.Fatalf("START: %d %s", status, out)
	}
	if resp, out := r.sms("Messages.json", number, tok); resp.StatusCode != http.StatusCreated {
		t.Errorf("after START: %d %s", resp.StatusCode, out)
	}
	// A message that only contains the word is not a keyword.
	if status, _ := r.inbound(number, "please stop calling me at work", false); status != http.StatusCreated {
		t.Fatal("a message")
	}
	if resp, out := r.sms("Messages.json", number, tok); resp.StatusCode != http.StatusCreated {
		t.Errorf("after a message with the word stop in it: %d %s", resp.StatusCode, out)
	}

	const fresh = "+15555550199"
	before = r.hits()
	resp, out = r.sms("OptedIn.json", fresh, tok)
	r.wantEgressRefused(resp, out, 403, "no_consent", before, "api.carrier.test")
	if status, out := r.inbound(fresh, "YES", false); status != http.StatusCreated {
		t.Fatalf("YES: %d %s", status, out)
	}
	if resp, out := r.sms("OptedIn.json", fresh, tok); resp.StatusCode != http.StatusCreated {
		t.Errorf("after opting in: %d %s", resp.StatusCode, out)
	}
	for _, c := range []struct{ name, to string }{{"a short code", "55555"}, {"no number", ""}} {
		before = r.hits()
		resp, out = r.sms("Messages.json", c.to, tok)
		if resp.StatusCode != 403 && resp.StatusCode != 400 || r.hits()["api.carrier.test"] != before["api.carrier.test"] {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, out)
		}
	}
	if strings.Contains(r.auditAll.String(), "555-0100") || strings.Contains(r.auditAll.String(), "5555550100") {
		t.Error("the audit trail holds a patient's number")
	}
}

func hasRecorded(rec audit.Record, name, value string) bool {
	for _, v := range rec.Recorded {
		if v.Name == name && v.Value == value {
			return true
		}
	}
	return false
}

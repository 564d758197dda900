package proxy

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	carrierToken = "carrier-auth-token-0123456789abcdef"
	appSecret    = "shared-with-the-app-0123456789abcd"
)

// twilioSign signs as Twilio does (and as its SDKs check): base64
// HMAC-SHA1 of the URL and each parameter's name and sorted values, names
// sorted.
func twilioSign(token, u string, form url.Values) string {
	data := u
	names := make([]string, 0, len(form))
	for k := range form {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range slices.Compact(slices.Sorted(slices.Values(form[k]))) {
			data += k + v
		}
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// appVerifies checks X-Phiguard-Signature as the app would.
func appVerifies(t *testing.T, header, method, target string, body []byte) bool {
	t.Helper()
	ts, sig, ok := strings.Cut(header, ",v1=")
	ts, ok2 := strings.CutPrefix(ts, "t=")
	if !ok || !ok2 {
		return false
	}
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write([]byte(ts + "." + method + " " + target + "."))
	m.Write(body)
	got, err := hex.DecodeString(sig)
	return err == nil && hmac.Equal(got, m.Sum(nil))
}

const signedWebhookPolicy = `
  - name: signed-webhook
    match: {methods: [POST], path: "/webhooks/signed/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body", "form:MediaUrl*"]
    verify_signature: {scheme: twilio, secret_env: CARRIER_TOKEN, public_url: "https://hooks.example.com", resign_secret_env: APP_SECRET}
  - name: twilio-json-webhook
    match: {methods: [POST], path: "/webhooks/twilio-json/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["$.message.body"]
    verify_signature: {scheme: twilio, secret_env: CARRIER_TOKEN, public_url: "https://hooks.example.com", resign_secret_env: APP_SECRET}
  - name: prefixed-webhook
    match: {methods: [POST], path: "/webhooks/prefixed/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body"]
    verify_signature: {scheme: twilio, secret_env: CARRIER_TOKEN, public_url: "https://hooks.example.com/gateway/", resign_secret_env: APP_SECRET}
  - name: lab-webhook
    match: {methods: [POST], path: "/webhooks/labs/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["$.text"]
    verify_signature: {scheme: hmac-sha256, secret_env: CARRIER_TOKEN, header: X-Lab-Signature, encoding: base64, timestamp_header: X-Lab-Timestamp, max_age: 5m, resign_secret_env: APP_SECRET}
`

// TestSignedWebhook: a carrier webhook is checked against the carrier's
// signature before anything is rewritten; forged, unsigned, altered or
// stale ones are refused (401) and the app never called; a good one
// reaches the app encrypted, with phiguard's signature of what it
// forwards, which the app can check, and without the carrier's.
func TestSignedWebhook(t *testing.T) {
	t.Setenv("CARRIER_TOKEN", carrierToken)
	t.Setenv("APP_SECRET", appSecret)
	h := newHarnessWithPolicy(t, strings.Replace(testPolicy, "  - name: health\n", signedWebhookPolicy+"  - name: health\n", 1))
	const path = "/webhooks/signed/org_a"
	form := url.Values{"From": {"+15555550100"}, "Body": {canary + " chest pain"}, "MediaUrl0": {"https://media.example/" + canary}, "NumMedia": {"1"}}
	good := twilioSign(carrierToken, "https://hooks.example.com"+path+"?src=sms", form)
	send := func(path, sig string, body string) (int, string) {
		t.Helper()
		var opts []reqOpt
		if sig != "" {
			opts = append(opts, header("X-Twilio-Signature", sig))
		}
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		resp, out := h.do("POST", path, "", "application/x-www-form-urlencoded", b, opts...)
		return resp.StatusCode, string(out)
	}
	for _, c := range []struct {
		name, path, sig, body, code string
	}{
		{"unsigned", path + "?src=sms", "", form.Encode(), "signature_invalid"},
		{"forged with another key", path + "?src=sms", twilioSign("another-token-0123456789abcdefgh", "https://hooks.example.com"+path+"?src=sms", form), form.Encode(), "signature_invalid"},
		{"body altered after signing", path + "?src=sms", good, strings.Replace(form.Encode(), "chest", "chess", 1), "signature_invalid"},
		{"another URL", path + "?src=sms&x=1", good, form.Encode(), "signature_invalid"},
		{"no body", path + "?src=sms", good, "", "signature_invalid"},
		{"not base64", path + "?src=sms", "%%%", form.Encode(), "signature_invalid"},
	} {
		hits := h.app.hits()
		status, out := send(c.path, c.sig, c.body)
		if status != 401 || !strings.Contains(out, c.code) || h.app.hits() != hits || strings.Contains(out, canary) {
			t.Errorf("%s: %d %s (app called %v)", c.name, status, out, h.app.hits() != hits)
		}
	}
	rec := h.sink.lastRecord(t)
	if rec.Decision != "deny" || rec.Route != "signed-webhook" || rec.Status != 401 {
		t.Errorf("refusal record %+v", rec)
	}

	status, out := send(path+"?src=sms", good, form.Encode())
	if status/100 != 2 {
		t.Fatalf("a signed webhook: %d %s", status, out)
	}
	got := h.app.last(t)
	if strings.Contains(string(got.body), canary) || got.header.Get("X-Twilio-Signature") != "" {
		t.Errorf("the app got %s with %v", got.body, got.header)
	}
	if !appVerifies(t, got.header.Get("X-Phiguard-Signature"), "POST", path+"?src=sms", got.body) {
		t.Errorf("the app cannot check X-Phiguard-Signature %q over %s", got.header.Get("X-Phiguard-Signature"), got.body)
	}

	// hmac-sha256 with a signed timestamp.
	lab := `{"text":"` + canary + ` positive"}`
	labSign := func(ts int64, body string) string {
		m := hmac.New(sha256.New, []byte(carrierToken))
		m.Write([]byte(strconv.FormatInt(ts, 10) + "." + body))
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	now := time.Now().Unix()
	for _, c := range []struct {
		name   string
		ts     int64
		sig    string
		status int
		code   string
	}{
		{"fresh", now, labSign(now, lab), 200, ""},
		{"stale", now - 600, labSign(now-600, lab), 401, "signature_stale"},
		{"timestamp changed", now, labSign(now-1, lab), 401, "signature_invalid"},
		{"hex where base64 is due", now, hex.EncodeToString([]byte(labSign(now, lab))), 401, "signature_invalid"},
	} {
		hits := h.app.hits()
		resp, out := h.do("POST", "/webhooks/labs/org_a", "", "application/json", []byte(lab),
			header("X-Lab-Timestamp", strconv.FormatInt(c.ts, 10)), header("X-Lab-Signature", c.sig))
		if resp.StatusCode/100 != c.status/100 || !strings.Contains(string(out), c.code) || (c.status != 200) != (h.app.hits() == hits) {
			t.Errorf("lab %s: %d %s", c.name, resp.StatusCode, out)
		}
	}
	if got := h.app.last(t); got.header.Get("X-Lab-Signature") != "" || !appVerifies(t, got.header.Get("X-Phiguard-Signature"), "POST", "/webhooks/labs/org_a", got.body) {
		t.Errorf("the app got %v", got.header)
	}
}

// TestSignedTwilioJSONWebhook: a Twilio webhook with a JSON body is signed
// over the URL alone, its query carrying the body's SHA-256
// (bodySHA256): phiguard checks both before sealing, and refuses a body
// that is not the one hashed, a missing or second bodySHA256, or a URL
// signed with another key.
func TestSignedTwilioJSONWebhook(t *testing.T) {
	t.Setenv("CARRIER_TOKEN", carrierToken)
	t.Setenv("APP_SECRET", appSecret)
	h := newHarnessWithPolicy(t, strings.Replace(testPolicy, "  - name: health\n", signedWebhookPolicy+"  - name: health\n", 1))
	const path = "/webhooks/twilio-json/org_a"
	body := `{"message":{"body":"` + canary + ` fever since Monday","from":"+15555550100"}}`
	sum := sha256.Sum256([]byte(body))
	query := "bodySHA256=" + hex.EncodeToString(sum[:])
	sign := func(key, q string) string {
		m := hmac.New(sha1.New, []byte(key))
		m.Write([]byte("https://hooks.example.com" + path + "?" + q))
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	for _, c := range []struct {
		name, query, sig, body string
		status                 int
	}{
		{"signed", query, sign(carrierToken, query), body, 201},
		{"another key", query, sign("another-token-0123456789abcdefgh", query), body, 401},
		{"body altered after hashing", query, sign(carrierToken, query), strings.Replace(body, "fever", "fewer", 1), 401},
		{"no bodySHA256", "", sign(carrierToken, ""), body, 401},
		{"two bodySHA256", query + "&" + query, sign(carrierToken, query+"&"+query), body, 401},
		{"unsigned", query, "", body, 401},
	} {
		hits := h.app.hits()
		var opts []reqOpt
		if c.sig != "" {
			opts = append(opts, header("X-Twilio-Signature", c.sig))
		}
		target := path
		if c.query != "" {
			target += "?" + c.query
		}
		resp, out := h.do("POST", target, "", "application/json", []byte(c.body), opts...)
		if resp.StatusCode != c.status || (c.status == 201) != (h.app.hits() == hits+1) || strings.Contains(string(out), canary) {
			t.Errorf("%s: %d %s (app called: %v)", c.name, resp.StatusCode, out, h.app.hits() != hits)
		}
	}
	got := h.app.last(t)
	if strings.Contains(string(got.body), canary) || !strings.Contains(string(got.body), "ephi:v1:org_a:") || got.header.Get("X-Twilio-Signature") != "" {
		t.Errorf("the app got %s with %v", got.body, got.header)
	}
	if !appVerifies(t, got.header.Get("X-Phiguard-Signature"), "POST", path+"?"+query, got.body) {
		t.Errorf("the app cannot check X-Phiguard-Signature over %s", got.body)
	}
}

// TestSignedWebhookBehindPrefix: behind an ingress that strips a path
// prefix, the carrier signed the URL with the prefix: public_url names it,
// and a signature of the URL without it is refused.
func TestSignedWebhookBehindPrefix(t *testing.T) {
	t.Setenv("CARRIER_TOKEN", carrierToken)
	t.Setenv("APP_SECRET", appSecret)
	h := newHarnessWithPolicy(t, strings.Replace(testPolicy, "  - name: health\n", signedWebhookPolicy+"  - name: health\n", 1))
	const path = "/webhooks/prefixed/org_a"
	form := url.Values{"From": {"+15555550100"}, "Body": {canary}}
	for _, c := range []struct {
		name, signed string
		status       int
	}{
		{"the URL the carrier called", "https://hooks.example.com/gateway" + path, 201},
		{"the URL without the prefix", "https://hooks.example.com" + path, 401},
	} {
		resp, out := h.do("POST", path, "", "application/x-www-form-urlencoded", []byte(form.Encode()), header("X-Twilio-Signature", twilioSign(carrierToken, c.signed, form)))
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, out)
		}
	}
}

package proxy

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
)

// Each test here covers one class of request that a reviewer found could
// make phiguard's judgement and the app's action differ. Every variant
// proves that the app never receives plaintext, that a refused request
// never reaches it, and that the audit record says why.

const attackRoutes = `  - name: org-notes
    match: {methods: [POST], path: "/orgs/{org}/notes"}
    org_from: {path_param: org}
    encrypt_request: ["$.note"]
  - name: org-messages
    match: {methods: [GET], path: "/orgs/{org}/messages"}
    org_from: {path_param: org}
    decrypt_response: ["$.data[*].body"]
  - name: search
    match: {methods: [POST], path: "/api/v1/search"}
    decrypt_response: ["$.data[*].body"]
`

func newAttackHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWithPolicy(t, testPolicy+attackRoutes)
}

// tokenWith signs a token with exactly the claims given; sub may be nil.
func (h *harness) tokenWith(sub *string, claims map[string]any) string {
	h.t.Helper()
	exp := time.Now().Add(time.Hour)
	raw, err := jwt.NewRawJWT(&jwt.RawJWTOptions{Subject: sub, ExpiresAt: &exp, CustomClaims: claims})
	if err != nil {
		h.t.Fatal(err)
	}
	tok, err := h.signer.SignAndEncode(raw)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func strp(s string) *string { return &s }

// wantAudited checks that the last audit record refused the request with a
// reason containing want.
func (h *harness) wantAudited(status int, want string) {
	h.t.Helper()
	rec := h.sink.lastRecord(h.t)
	if rec.Status != status || rec.Decision != "deny" || !strings.Contains(rec.Reason, want) {
		h.t.Errorf("audit record status=%d decision=%s reason=%q, want %d deny %q", rec.Status, rec.Decision, rec.Reason, status, want)
	}
}

func TestTenancyIsNeverDefaulted(t *testing.T) {
	h := newAttackHarness(t)
	storeAs(t, h, "org_a", `"`+canary+`"`)
	for _, tc := range []struct {
		name   string
		claims map[string]any
		reason string
	}{
		{"org claim missing", map[string]any{"role": "agent"}, "org_id claim is missing"},
		{"org claim empty", map[string]any{"org_id": "", "role": "agent"}, "org_id claim is empty"},
		{"org claim a number", map[string]any{"org_id": 7, "role": "agent"}, "org_id claim is not a string"},
		{"org claim a bool", map[string]any{"org_id": true, "role": "agent"}, "org_id claim is not a string"},
		{"org claim a list of one", map[string]any{"org_id": []any{"org_a"}, "role": "agent"}, "org_id claim is a list"},
		{"org claim a list of two", map[string]any{"org_id": []any{"org_a", "org_b"}, "role": "agent"}, "org_id claim is a list"},
		{"org claim an object", map[string]any{"org_id": map[string]any{"id": "org_a"}, "role": "agent"}, "org_id claim is not a string"},
		{"org claim malformed", map[string]any{"org_id": "org_a/../org_b", "role": "agent"}, "org_id claim is not a valid organization id"},
		{"org claim null", map[string]any{"org_id": nil, "role": "agent"}, "org_id claim is not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bearer := "Bearer " + h.tokenWith(strp("mallory"), tc.claims)
			for _, req := range []struct {
				method, path string
				body         []byte
			}{
				{"GET", "/orgs/org_a/messages", nil},                               // org from the path
				{"POST", "/orgs/org_a/notes", []byte(`{"note":"` + canary + `"}`)}, // org from the path
				{"GET", msgPath, nil},                                              // org from the claim
				{"POST", msgPath, []byte(`{"body":"` + canary + `"}`)},             // org from the claim
				{"GET", "/healthz/../api/v1/conversations/c1/messages", nil},       // canonicalized first
			} {
				hits := h.app.hits()
				resp, body := h.do(req.method, req.path, "", "application/json", req.body, header("Authorization", bearer))
				h.wantRefused(resp, body, http.StatusForbidden, hits)
				h.wantAudited(http.StatusForbidden, tc.reason)
				if strings.Contains(string(body), canary) {
					t.Errorf("%s %s: plaintext in the answer: %s", req.method, req.path, body)
				}
			}
		})
	}
	// The same caller with a proper claim reads only its own organization.
	resp, body := h.do("GET", "/orgs/org_a/messages", "bob", "", nil)
	h.wantRefused(resp, body, http.StatusForbidden, h.app.hits())
	h.wantAudited(http.StatusForbidden, "organization other than the caller's")
	resp, body = h.do("GET", "/orgs/org_a/messages", "alice", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), canary) {
		t.Errorf("the org's own reader: %d %s", resp.StatusCode, body)
	}
}

func TestNoUserNoPHI(t *testing.T) {
	h := newAttackHarness(t)
	storeAs(t, h, "org_a", `"`+canary+`"`)
	for _, tc := range []struct {
		name   string
		sub    *string
		reason string
	}{
		{"user claim missing", nil, "sub claim is missing"},
		{"user claim empty", strp(""), "sub claim is empty"},
		{"user claim with a control character", strp("ali\nce"), "sub claim holds control characters"},
		{"user claim too long", strp(strings.Repeat("u", 300)), "sub claim is too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bearer := "Bearer " + h.tokenWith(tc.sub, map[string]any{"org_id": "org_a", "role": "agent"})
			for _, req := range []struct {
				method, path string
				body         []byte
			}{
				{"GET", msgPath, nil},
				{"POST", msgPath, []byte(`{"body":"` + canary + `"}`)},
				{"GET", "/orgs/org_a/messages", nil},
			} {
				hits := h.app.hits()
				resp, body := h.do(req.method, req.path, "", "application/json", req.body, header("Authorization", bearer))
				h.wantRefused(resp, body, http.StatusForbidden, hits)
				h.wantAudited(http.StatusForbidden, tc.reason)
				if rec := h.sink.lastRecord(t); rec.User != "" {
					t.Errorf("audit user %q for a token without a usable user", rec.User)
				}
			}
		})
	}
}

func TestMethodLetterCase(t *testing.T) {
	h := newAttackHarness(t)
	// Any spelling of a write method is judged as that method: encrypted.
	for _, m := range []string{"post", "Post", "pOST"} {
		code, body := rawRequest(t, h, m, msgPath, "alice", message)
		if code != 201 {
			t.Fatalf("%s: %d %s", m, code, body)
		}
		got := h.app.last(t)
		if got.method != "POST" || bytes.Contains(got.body, []byte(canary)) {
			t.Errorf("%s: the app saw method %q body %s", m, got.method, got.body)
		}
		if rec := h.sink.lastRecord(t); rec.Method != "POST" || rec.Route != "send-message" {
			t.Errorf("%s: audit method %q route %q", m, rec.Method, rec.Route)
		}
	}
	// Any spelling of a read method reaches the deny route, never the app.
	hits := h.app.hits()
	for _, m := range []string{"get", "Get", "gET", "head", "delete", "put"} {
		code, body := rawRequest(t, h, m, "/api/v1/tokens", "alice", nil)
		if code != 403 || m != "head" && !strings.Contains(body, "personal access tokens") {
			t.Errorf("%s /api/v1/tokens: %d %s, want the deny route's 403", m, code, body)
		}
	}
	// A method outside the known set is refused on every route, open ones too.
	for _, m := range []string{"PROPFIND", "TRACE", "trace", "CONNECT", "FOO", "GETX", "M-SEARCH"} {
		for _, path := range []string{msgPath, "/healthz", "/api/v1/tokens"} {
			code, body := rawRequest(t, h, m, path, "alice", nil)
			if code != http.StatusMethodNotAllowed || !strings.Contains(body, "method_not_allowed") {
				t.Errorf("%s %s: %d %s, want 405", m, path, code, body)
			}
		}
		h.wantAudited(http.StatusMethodNotAllowed, "method is not one of")
	}
	if h.app.hits() != hits {
		t.Errorf("the app saw %d refused requests", h.app.hits()-hits)
	}
}

func TestPatchDocuments(t *testing.T) {
	h := newAttackHarness(t)
	patch := []byte(`[{"op":"replace","path":"/body","value":"` + canary + `"}]`)
	for _, tc := range []struct {
		name, ct string
		body     []byte
		status   int
		reason   string
	}{
		{"JSON Patch media type", "application/json-patch+json", patch, 415, "JSON Patch"},
		{"JSON Patch with parameters", "application/json-patch+json; charset=utf-8", patch, 415, "JSON Patch"},
		{"JSON-LD renames keys", "application/ld+json", message, 415, "grammar of its own"},
		{"other +json grammar", "application/activity+json", message, 415, "grammar of its own"},
		{"JSON Patch as application/json", "application/json", patch, 400, "JSON Patch document"},
		{"JSON Patch as a vendor type", "application/vnd.acme+json", patch, 400, "JSON Patch document"},
		{"JSON Patch, keys in capitals", "application/json", []byte(`[{"OP":"add","PATH":"/body","value":"` + canary + `"}]`), 400, "JSON Patch document"},
		{"JSON Patch on a decrypt-only route", "application/json", patch, 400, "JSON Patch document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := msgPath
			if strings.Contains(tc.name, "decrypt-only") {
				path = "/api/v1/search"
			}
			hits := h.app.hits()
			resp, body := h.do("POST", path, "alice", tc.ct, tc.body)
			h.wantRefused(resp, body, tc.status, hits)
			h.wantAudited(tc.status, tc.reason)
		})
	}
	// JSON Merge Patch is the document itself: its fields are encrypted.
	for _, ct := range []string{"application/merge-patch+json", "application/fhir+json", "application/vnd.api+json"} {
		resp, body := h.do("POST", msgPath, "alice", ct, message)
		if resp.StatusCode != 201 || bytes.Contains(h.app.last(t).body, []byte(canary)) {
			t.Errorf("%s: %d %s; the app got %s", ct, resp.StatusCode, body, h.app.last(t).body)
		}
	}
}

func TestFormNamesFrameworksRead(t *testing.T) {
	h := newAttackHarness(t)
	for _, name := range []string{
		"Body[]", "Body[0]", "Body[x][y]", "Body%5B%5D", "+Body", "%20Body", "Body%20", "%09Body", "Body%00junk", "Body.x",
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := h.do("POST", "/webhooks/sms/org_a", "", "application/x-www-form-urlencoded", []byte("From=%2B1555&"+name+"="+canary))
			if resp.StatusCode != 201 {
				t.Fatalf("%d %s, want the field encrypted and forwarded", resp.StatusCode, body)
			}
			if got := h.app.last(t).body; bytes.Contains(got, []byte(canary)) {
				t.Errorf("the app got plaintext: %s", got)
			}
			rec := h.sink.lastRecord(t)
			if len(rec.Fields) != 1 || rec.Fields[0].Action != "encrypt" || rec.Fields[0].Path != "form:Body" || rec.Fields[0].Count != 1 {
				t.Errorf("audit fields %+v, want one encrypt of form:Body", rec.Fields)
			}
		})
	}
	// Names a framework reads as the method override are refused, however spelled.
	for _, name := range []string{"_method[]", "+_method", "_METHOD%00x", "_method.x"} {
		hits := h.app.hits()
		resp, body := h.do("POST", "/webhooks/sms/org_a", "", "application/x-www-form-urlencoded", []byte("Body=hi&"+name+"=DELETE"))
		h.wantRefused(resp, body, 400, hits)
		h.wantAudited(400, "_method")
	}
}

func TestPlantedTokensAreRefused(t *testing.T) {
	h := newAttackHarness(t)
	stolen, err := h.keyring.Encrypt(context.Background(), "org_a", []byte(`"`+canary+`"`))
	if err != nil {
		t.Fatal(err)
	}
	escaped := `\u0065` + strings.TrimPrefix(stolen, "e")
	for _, tc := range []struct {
		name, method, path, ct, body string
	}{
		{"unselected JSON field", "POST", msgPath, "application/json", `{"body":"hi","preview":"` + stolen + `"}`},
		{"nested unselected field", "POST", msgPath, "application/json", `{"body":"hi","meta":{"drafts":["` + stolen + `"]}}`},
		{"escaped", "POST", msgPath, "application/json", `{"body":"hi","preview":"` + escaped + `"}`},
		{"with padding an app would trim", "POST", msgPath, "application/json", `{"body":"hi","preview":"  ` + stolen + `  "}`},
		{"as a key", "POST", msgPath, "application/json", `{"body":"hi","meta":{"` + stolen + `":1}}`},
		{"selected path's sibling in an array", "POST", msgPath, "application/json", `{"attachments":[{"caption":"c","url":"` + stolen + `"}]}`},
		{"decrypt-only route body", "POST", "/api/v1/search", "application/json", `{"q":"` + stolen + `"}`},
		{"form field", "POST", "/webhooks/sms/org_a", "application/x-www-form-urlencoded", "Body=hi&MediaUrl0=" + stolen},
		{"query string", "POST", msgPath + "?draft=" + stolen, "application/json", `{"body":"hi"}`},
		{"query string, percent-encoded", "POST", msgPath + "?draft=ephi%3Av1%3Aorg_a", "application/json", `{"body":"hi"}`},
		{"query string on an open route", "GET", "/healthz?x=" + stolen, "", ""},
		{"path segment", "GET", "/api/v1/conversations/" + stolen + "/messages", "", ""},
		{"path segment, percent-encoded", "GET", "/api/v1/conversations/ephi%3Av1%3Aorg_a/messages", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := h.app.hits()
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			resp, out := h.do(tc.method, tc.path, "alice", tc.ct, body)
			h.wantRefused(resp, out, 400, hits)
			h.wantAudited(400, "only phiguard writes tokens")
			if strings.Contains(string(out), stolen) {
				t.Errorf("the refusal echoes the token: %s", out)
			}
		})
	}
	// In a selected field the token is sealed again: reading it back
	// returns the string that was sent, never the plaintext inside.
	resp, out := h.do("POST", msgPath, "alice", "application/json", []byte(`{"body":"`+stolen+`"}`))
	if resp.StatusCode != 201 || strings.Contains(string(out), canary) || bytes.Contains(h.app.last(t).body, []byte(stolen)) {
		t.Errorf("selected token: %d %s; the app got %s", resp.StatusCode, out, h.app.last(t).body)
	}
}

// TestSelectedNamesInTheQuery: frameworks that merge the query into the
// body's parameters would store "?body=…" as the field the route encrypts.
func TestSelectedNamesInTheQuery(t *testing.T) {
	h := newAttackHarness(t)
	for _, tc := range []struct{ path, ct, body string }{
		{msgPath + "?body=" + canary, "application/json", `{"attachments":[]}`},
		{msgPath + "?BODY=" + canary, "application/json", `{"attachments":[]}`},
		{msgPath + "?body%5B%5D=" + canary, "application/json", `{"attachments":[]}`},
		{msgPath + "?attachments[0][caption]=" + canary, "application/json", `{"body":"x"}`},
		{"/webhooks/sms/org_a?Body=" + canary, "application/x-www-form-urlencoded", "From=x"},
		{"/webhooks/sms/org_a?+Body=" + canary, "application/x-www-form-urlencoded", "From=x"},
		{"/orgs/org_a/notes?note=" + canary, "application/json", `{}`},
	} {
		hits := h.app.hits()
		resp, body := h.do("POST", tc.path, "alice", tc.ct, []byte(tc.body))
		h.wantRefused(resp, body, 400, hits)
		h.wantAudited(400, "query parameter names a field")
	}
	// A name nesting past what any parser reads is refused, not read.
	hits := h.app.hits()
	resp, body := h.do("POST", msgPath+"?a"+strings.Repeat(".a", 65)+"=1", "alice", "application/json", message)
	h.wantRefused(resp, body, 400, hits)
	h.wantAudited(400, "nests deeper")
	// Other parameters pass.
	if resp, body := h.do("POST", msgPath+"?draft=1&page=2", "alice", "application/json", message); resp.StatusCode != 201 {
		t.Errorf("unrelated query: %d %s", resp.StatusCode, body)
	}
}

// TestUnderscoreSpellingsOfGuardedHeaders: CGI-style servers read
// X_Tenant as X-Tenant; an underscore spelling of a header phiguard judges
// or sets never reaches the app.
func TestUnderscoreSpellingsOfGuardedHeaders(t *testing.T) {
	gw := strings.Replace(testPolicy, "claims: {org: org_id, user: sub, role: role}", "claims: {org: org_id, user: sub, role: role}\n  trusted_gateways: [127.0.0.1/32]", 1) +
		"  - name: gateway\n    match: {methods: [POST], path: /gw/notes}\n    org_from: {header: X-Tenant}\n    encrypt_request: [\"$.note\"]\n"
	h := newHarnessWithPolicy(t, gw)
	sneaky := []string{"X_Tenant: org_b", "x_tenant: org_b", "X_Phiguard_Org: org_b", "X_PHIGUARD_ROLE: admin", "X_Forwarded_For: 10.9.9.9",
		"X_HTTP_Method_Override: DELETE", "X_Original_URL: /api/v1/tokens", "X_Real_IP: 10.9.9.9"}
	code, body := rawRequest(t, h, "POST", "/gw/notes", "alice", []byte(`{"note":"`+canary+`"}`), append(sneaky, "X-Tenant: org_a", "X_Custom_Trace: kept")...)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	got := h.app.last(t).header
	for k := range got {
		if strings.Contains(k, "_") && k != "X_custom_trace" {
			t.Errorf("the app received %s: %v", k, got[k])
		}
	}
	if got.Get("X_custom_trace") != "kept" {
		t.Errorf("an unrelated underscore header was dropped: %v", got)
	}
	if got.Get("X-Phiguard-Org") != "org_a" || got.Get("X-Tenant") != "org_a" {
		t.Errorf("org headers %v", got)
	}
}

// TestFormPrefixSelector: with form:MediaUrl*, every MediaUrlN of a
// carrier webhook reaches the app as a token and the rest as sent; a
// MediaUrl spelled in another letter case is refused, never forwarded in
// plaintext.
func TestFormPrefixSelector(t *testing.T) {
	h := newHarnessWithPolicy(t, strings.Replace(testPolicy, `encrypt_request: ["form:Body"]`, `encrypt_request: ["form:Body", "form:MediaUrl*"]`, 1))
	form := "NumMedia=2&Body=hi&MediaUrl0=" + canary + "0&MediaUrl1=" + canary + "1&MediaContentType0=image%2Fpng"
	resp, body := h.do("POST", "/webhooks/sms/org_a", "", "application/x-www-form-urlencoded", []byte(form))
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := string(h.app.last(t).body)
	if strings.Contains(got, canary) || strings.Count(got, "ephi%3Av1%3Aorg_a") != 3 || !strings.Contains(got, "MediaContentType0=image%2Fpng") || !strings.Contains(got, "NumMedia=2") {
		t.Errorf("the app got %s", got)
	}
	rec := h.sink.lastRecord(t)
	if f := rec.Fields; len(f) != 2 || f[1].Path != "form:MediaUrl*" || f[1].Count != 2 {
		t.Errorf("record fields %+v", f)
	}
	hits := h.app.hits()
	resp, body = h.do("POST", "/webhooks/sms/org_a", "", "application/x-www-form-urlencoded", []byte("Body=hi&mediaurl0="+canary))
	if resp.StatusCode != 400 || h.app.hits() != hits {
		t.Errorf("a case variant of the prefix: %d %s, app called %v", resp.StatusCode, body, h.app.hits() != hits)
	}
}

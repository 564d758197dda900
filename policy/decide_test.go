package policy

import (
	"errors"
	"testing"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/refusal"
)

const decidePolicy = `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity:
  jwt: {jwks: j.json}
  trusted_gateways: [127.0.0.1]
keys: {keyring: k}
orgs: [{id: org_a}, {id: org_b}]
routes:
  - name: tokens
    match: {path: "/api/v1/tokens/**"}
    deny: personal access tokens are disabled
  - name: send
    match: {methods: [POST], path: "/api/v1/conversations/{id}/messages"}
    encrypt_request: ["$.body"]
    decrypt_response: ["$.body"]
  - name: list
    match: {methods: [GET], path: "/api/v1/conversations/{id}/messages"}
    decrypt_response: ["$.data[*].body"]
    readers: [agent]
  - name: webhook
    match: {methods: [POST], path: "/webhooks/sms/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body"]
  - name: org-in-path
    match: {path: "/orgs/{org}/notes"}
    org_from: {path_param: org}
    encrypt_request: ["$.note"]
  - name: gateway
    match: {path: "/gw"}
    org_from: {header: X-Tenant}
    encrypt_request: ["$.note"]
  - name: health
    match: {path: "/healthz"}
    auth: none
  - name: profile
    match: {methods: [GET], path: "/api/v1/profile"}
`

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMatch(t *testing.T) {
	p := mustParse(t, decidePolicy)
	for _, tc := range []struct {
		method, path, route string
		params              map[string]string
	}{
		{"POST", "/api/v1/conversations/42/messages", "send", map[string]string{"id": "42"}},
		{"GET", "/api/v1/conversations/42/messages", "list", map[string]string{"id": "42"}},
		{"HEAD", "/api/v1/conversations/42/messages", "list", map[string]string{"id": "42"}},
		{"GET", "/API/V1/Conversations/42/Messages", "list", map[string]string{"id": "42"}},
		{"GET", "/api/v1/conversations/42/messages/", "list", map[string]string{"id": "42"}},
		{"DELETE", "/api/v1/conversations/42/messages", "", nil},
		{"GET", "/api/v1/conversations//messages", "", nil},
		{"GET", "/api/v1/conversations/42/messages/7", "", nil},
		{"GET", "/api/v1/tokens", "tokens", nil},
		{"DELETE", "/api/v1/tokens/abc/def", "tokens", nil},
		{"POST", "/webhooks/sms/org_a", "webhook", map[string]string{"org": "org_a"}},
		{"GET", "/", "", nil},
	} {
		r, params := p.Match(tc.method, tc.path)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tc.route {
			t.Errorf("Match(%s %s) = route %q, want %q", tc.method, tc.path, got, tc.route)
			continue
		}
		if len(params) != len(tc.params) {
			t.Errorf("Match(%s %s) params = %v, want %v", tc.method, tc.path, params, tc.params)
		}
		for k, v := range tc.params {
			if got, ok := params.Get(k); !ok || got != v {
				t.Errorf("Match(%s %s) params[%s] = %q, want %q", tc.method, tc.path, k, got, v)
			}
		}
	}
}

func TestMatchCaseSensitive(t *testing.T) {
	p := mustParse(t, decidePolicy+"case_sensitive_paths: true\n")
	if r, _ := p.Match("GET", "/API/v1/tokens/x"); r != nil {
		t.Errorf("case-sensitive policy matched /API/v1/tokens/x to %s", r.Name)
	}
	if r, _ := p.Match("GET", "/api/v1/tokens/x"); r == nil || r.Name != "tokens" {
		t.Errorf("case-sensitive policy did not match /api/v1/tokens/x")
	}
}

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	agentA := &identity.Caller{Org: "org_a", User: "u1", Role: "agent"}
	viewerA := &identity.Caller{Org: "org_a", User: "u2", Role: "viewer"}
	callerZ := &identity.Caller{Org: "org_z", User: "u3", Role: "agent"}
	noOrg := &identity.Caller{User: "u4"}
	noUser := &identity.Caller{Org: "org_a", Role: "agent"}
	badOrg := &identity.Caller{Org: "org a", User: "u5", Role: "agent"}
	claimErr := &refusal.Error{Kind: ErrForbidden, Reason: "the token's org_id claim is a list"}
	hdr := func(v ...string) func(string) []string {
		return func(name string) []string {
			if name == "X-Tenant" {
				return v
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name    string
		method  string
		path    string
		req     Request
		wantErr error
		org     string
		reader  bool
	}{
		{"deny route", "GET", "/api/v1/tokens/x", Request{Caller: agentA}, ErrDenied, "", false},
		{"default deny", "GET", "/nowhere", Request{Caller: agentA}, ErrDenied, "", false},
		{"no token", "POST", "/api/v1/conversations/1/messages", Request{}, ErrUnauthenticated, "", false},
		{"bad token", "POST", "/api/v1/conversations/1/messages", Request{CallerErr: errors.New("token expired")}, ErrUnauthenticated, "", false},
		{"claim org", "POST", "/api/v1/conversations/1/messages", Request{Caller: viewerA}, nil, "org_a", true},
		{"reader role", "GET", "/api/v1/conversations/1/messages", Request{Caller: agentA}, nil, "org_a", true},
		{"non-reader role", "GET", "/api/v1/conversations/1/messages", Request{Caller: viewerA}, nil, "org_a", false},
		{"org not enrolled", "POST", "/api/v1/conversations/1/messages", Request{Caller: callerZ}, ErrForbidden, "", false},
		{"no org claim", "POST", "/api/v1/conversations/1/messages", Request{Caller: noOrg}, ErrForbidden, "", false},
		// Tenancy and identity are never defaulted, whatever the org source.
		{"no org claim, path org", "PUT", "/orgs/org_b/notes", Request{Caller: noOrg}, ErrForbidden, "", false},
		{"no org claim, header org", "POST", "/gw", Request{Caller: noOrg, Header: hdr("org_b"), FromTrustedGateway: true}, ErrForbidden, "", false},
		{"no org claim, route without field actions", "GET", "/api/v1/profile", Request{Caller: noOrg}, ErrForbidden, "", false},
		{"malformed org claim, path org", "PUT", "/orgs/org_a/notes", Request{Caller: badOrg}, ErrForbidden, "", false},
		{"no user claim", "POST", "/api/v1/conversations/1/messages", Request{Caller: noUser}, ErrForbidden, "", false},
		{"no user claim, path org", "PUT", "/orgs/org_a/notes", Request{Caller: noUser}, ErrForbidden, "", false},
		{"no user claim, route without field actions", "GET", "/api/v1/profile", Request{Caller: noUser}, ErrForbidden, "", false},
		{"unusable claims from the verifier", "PUT", "/orgs/org_a/notes", Request{CallerErr: claimErr}, ErrForbidden, "", false},
		{"plain route, any enrolled-or-not org", "GET", "/api/v1/profile", Request{Caller: callerZ}, nil, "org_z", true},
		{"webhook without auth", "POST", "/webhooks/sms/org_b", Request{}, nil, "org_b", true},
		{"webhook bad org id", "POST", "/webhooks/sms/org%2Fx", Request{}, ErrForbidden, "", false},
		{"webhook unenrolled org", "POST", "/webhooks/sms/org_z", Request{}, ErrForbidden, "", false},
		{"path org equals caller", "PUT", "/orgs/org_a/notes", Request{Caller: agentA}, nil, "org_a", true},
		{"path org is not caller's", "PUT", "/orgs/org_b/notes", Request{Caller: agentA}, ErrForbidden, "", false},
		{"header from untrusted peer", "POST", "/gw", Request{Caller: agentA, Header: hdr("org_a")}, ErrForbidden, "", false},
		{"header from gateway", "POST", "/gw", Request{Caller: agentA, Header: hdr("org_a"), FromTrustedGateway: true}, nil, "org_a", true},
		{"header names another org", "POST", "/gw", Request{Caller: agentA, Header: hdr("org_b"), FromTrustedGateway: true}, ErrForbidden, "", false},
		{"header empty", "POST", "/gw", Request{Caller: agentA, Header: hdr(""), FromTrustedGateway: true}, ErrForbidden, "", false},
		{"header missing", "POST", "/gw", Request{Caller: agentA, Header: hdr(), FromTrustedGateway: true}, ErrForbidden, "", false},
		{"header twice, same org", "POST", "/gw", Request{Caller: agentA, Header: hdr("org_a", "org_a"), FromTrustedGateway: true}, ErrForbidden, "", false},
		{"header twice, another org last", "POST", "/gw", Request{Caller: agentA, Header: hdr("org_a", "org_b"), FromTrustedGateway: true}, ErrForbidden, "", false},
		{"header listing two orgs", "POST", "/gw", Request{Caller: agentA, Header: hdr("org_a, org_b"), FromTrustedGateway: true}, ErrForbidden, "", false},
		{"open route", "GET", "/healthz", Request{}, nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, params := p.Match(tc.method, tc.path)
			d, err := p.Decide(r, params, tc.req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Decide error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				var ref *refusal.Error
				if !errors.As(err, &ref) || ref.Reason == "" {
					t.Errorf("refusal %v carries no reason", err)
				}
				return
			}
			if d.Org != tc.org || d.Reader != tc.reader {
				t.Errorf("Decision org=%q reader=%v, want org=%q reader=%v", d.Org, d.Reader, tc.org, tc.reader)
			}
		})
	}
}

func TestCanonicalMethod(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"GET", "GET", true}, {"get", "GET", true}, {"pOsT", "POST", true}, {"patch", "PATCH", true},
		{"Head", "HEAD", true}, {"options", "OPTIONS", true}, {"delete", "DELETE", true}, {"put", "PUT", true},
		{"TRACE", "TRACE", false}, {"connect", "CONNECT", false}, {"PROPFIND", "PROPFIND", false}, {"", "", false},
	} {
		got, ok := CanonicalMethod(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("CanonicalMethod(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestFirstMatchWins: several routes take the same request; the earliest in
// file order decides, whatever their kind.
func TestFirstMatchWins(t *testing.T) {
	p := mustParse(t, `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: j.json}}
keys: {keyring: k}
orgs: [{id: org_a}]
routes:
  - name: one-message
    match: {methods: [GET], path: "/api/v1/messages/{id}"}
    decrypt_response: ["$.body"]
  - name: any-message-method
    match: {path: "/api/v1/messages/{id}"}
    deny: writes are closed
  - name: messages-tree
    match: {path: "/api/v1/messages/**"}
    encrypt_request: ["$.note"]
  - name: everything
    match: {path: "/**"}
    auth: none
`)
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/api/v1/messages/7", "one-message"},
		{"HEAD", "/api/v1/messages/7", "one-message"},
		{"PUT", "/api/v1/messages/7", "any-message-method"},
		{"POST", "/api/v1/messages/7/notes", "messages-tree"},
		{"GET", "/api/v1/other", "everything"},
	} {
		r, _ := p.Match(tc.method, tc.path)
		if r == nil || r.Name != tc.want {
			t.Errorf("Match(%s %s) = %v, want route %s", tc.method, tc.path, r, tc.want)
		}
	}
}

func TestDenyReasonIsThePolicyText(t *testing.T) {
	p := mustParse(t, decidePolicy)
	r, params := p.Match("POST", "/api/v1/tokens")
	_, err := p.Decide(r, params, Request{})
	var ref *refusal.Error
	if !errors.As(err, &ref) || ref.Reason != "personal access tokens are disabled" {
		t.Errorf("got %v, want the route's deny text", err)
	}
}

func TestDefaultAllow(t *testing.T) {
	p := mustParse(t, decidePolicy+"default: allow\n")
	r, params := p.Match("GET", "/nowhere")
	if _, err := p.Decide(r, params, Request{}); err != nil {
		t.Errorf("default allow refused: %v", err)
	}
}

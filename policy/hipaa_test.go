package policy

import (
	"testing"
	"time"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/refusal"
)

const hipaaPolicy = `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: j.json}}
keys: {keyring: k}
hipaa: {mfa_methods: [otp, hwk]}
orgs:
  - {id: org_h, hipaa: true, enabled_at: 2026-11-01T00:00:00Z}
  - {id: org_m, hipaa: true}
  - {id: org_p}
routes:
  - name: admin
    match: {path: /admin/**}
    allow_roles: [admin]
  - name: messages
    match: {path: /m}
    encrypt_request: ["$.body"]
    decrypt_response: ["$.body"]
    readers: [agent, admin]
    allow_roles: [agent, admin, viewer]
  - name: health
    match: {path: /healthz}
    auth: none
`

// TestHIPAAMode: a HIPAA org's caller needs a login after enabled_at and
// with a second factor; another org's does not; allow_roles takes only
// its roles. Each refusal has its status kind and client code.
func TestHIPAAMode(t *testing.T) {
	p := mustParse(t, hipaaPolicy)
	before, after := time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	otp := []string{"pwd", "otp"}
	for _, c := range []struct {
		name, path string
		caller     identity.Caller
		kind       refusal.Kind
		code       string
	}{
		{"second factor, after enablement", "/m", identity.Caller{Org: "org_h", User: "u", Role: "agent", AMR: otp, IssuedAt: after}, 0, ""},
		{"password only", "/m", identity.Caller{Org: "org_h", User: "u", Role: "agent", AMR: []string{"pwd"}, IssuedAt: after}, refusal.Forbidden, CodeMFARequired},
		{"amr not in mfa_methods", "/m", identity.Caller{Org: "org_h", User: "u", Role: "agent", AMR: []string{"pwd", "sms"}, IssuedAt: after}, refusal.Forbidden, CodeMFARequired},
		{"mfa claim", "/m", identity.Caller{Org: "org_h", User: "u", Role: "agent", MFA: true, IssuedAt: after}, 0, ""},
		{"issued before enablement", "/m", identity.Caller{Org: "org_h", User: "u", Role: "agent", AMR: otp, IssuedAt: before}, refusal.Unauthenticated, CodeSessionTerminated},
		{"no iat", "/m", identity.Caller{Org: "org_h", User: "u", Role: "agent", AMR: otp}, refusal.Unauthenticated, CodeSessionTerminated},
		{"before enablement and no factor: sign in again first", "/m", identity.Caller{Org: "org_h", User: "u", Role: "agent", IssuedAt: before}, refusal.Unauthenticated, CodeSessionTerminated},
		{"HIPAA without enabled_at: no iat is fine", "/m", identity.Caller{Org: "org_m", User: "u", Role: "agent", AMR: otp}, 0, ""},
		{"HIPAA without enabled_at, no factor", "/m", identity.Caller{Org: "org_m", User: "u", Role: "agent"}, refusal.Forbidden, CodeMFARequired},
		{"not a HIPAA org", "/m", identity.Caller{Org: "org_p", User: "u", Role: "agent"}, 0, ""},
		{"MFA on a route without field actions too", "/admin/x", identity.Caller{Org: "org_m", User: "u", Role: "admin"}, refusal.Forbidden, CodeMFARequired},
		{"allowed role", "/admin/x", identity.Caller{Org: "org_p", User: "u", Role: "admin"}, 0, ""},
		{"role not allowed", "/admin/x", identity.Caller{Org: "org_p", User: "u", Role: "agent"}, refusal.Forbidden, CodeRoleNotAllowed},
		{"no role", "/admin/x", identity.Caller{Org: "org_p", User: "u"}, refusal.Forbidden, CodeRoleNotAllowed},
		{"viewer may use the route, not read", "/m", identity.Caller{Org: "org_p", User: "u", Role: "viewer"}, 0, ""},
		{"a role outside allow_roles", "/m", identity.Caller{Org: "org_p", User: "u", Role: "billing"}, refusal.Forbidden, CodeRoleNotAllowed},
	} {
		r, params := p.Match("GET", c.path)
		caller := c.caller
		_, err := p.Decide(r, params, Request{Method: "GET", Path: c.path, Caller: &caller})
		if c.kind == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		ref, ok := refusal.As(err)
		if !ok || ref.Kind != c.kind || ref.ClientCode() != c.code {
			t.Errorf("%s: %v, want %s %s", c.name, err, c.kind.Code(), c.code)
		}
	}
	if at, ok := p.HIPAAMode("org_h"); !ok || !at.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("HIPAAMode(org_h) = %v, %v", at, ok)
	}
	if _, ok := p.HIPAAMode("org_p"); ok {
		t.Error("org_p is not in HIPAA mode")
	}
}

// TestHIPAADefault: hipaa.default puts every org that says nothing in
// HIPAA mode, and an org may opt out; the default MFA methods apply.
func TestHIPAADefault(t *testing.T) {
	p := mustParse(t, `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: j.json}}
hipaa: {default: true}
orgs: [{id: org_a}, {id: org_b, hipaa: false}]
routes: [{name: r, match: {path: /r}}]
`)
	r, params := p.Match("GET", "/r")
	for _, c := range []struct {
		caller identity.Caller
		ok     bool
	}{
		{identity.Caller{Org: "org_a", User: "u"}, false},
		{identity.Caller{Org: "org_a", User: "u", AMR: []string{"pwd", "hwk"}}, true},
		{identity.Caller{Org: "org_a", User: "u", AMR: []string{"mfa"}}, true},
		{identity.Caller{Org: "org_b", User: "u"}, true},
	} {
		caller := c.caller
		if _, err := p.Decide(r, params, Request{Method: "GET", Path: "/r", Caller: &caller}); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.caller, err)
		}
	}
}

package policy

import (
	"testing"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/refusal"
)

const integrationsPolicy = `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: j.json}, claims: {client: azp}}
integrations:
  - {id: ehr, baa: true, scopes: [messages.read, contacts.read, billing.export], approved_by: admin@clinic, approved_at: 2026-11-01T00:00:00Z}
  - {id: new-ehr, baa: true, scopes: [messages.read, contacts.read]}
  - {id: marketing, baa: false, scopes: [contacts.read]}
orgs: [{id: org_h, hipaa: true}, {id: org_p}]
routes:
  - {name: messages, match: {path: /messages}, scope: messages.read}
  - {name: contacts, match: {path: /contacts}, scope: contacts.read}
  - {name: export, match: {path: /export}, scope: billing.export}
  - {name: unscoped, match: {path: /profile}}
`

// TestIntegrations: into a HIPAA org, an integration needs a BAA, the
// route's scope, and for a high-risk scope an approval; a person's login,
// and any integration into another org, are not judged so.
func TestIntegrations(t *testing.T) {
	p := mustParse(t, integrationsPolicy)
	for _, c := range []struct {
		name, path, client, org string
		code                    string
		risk                    string
	}{
		{"approved, high risk", "/messages", "ehr", "org_h", "", RiskHigh},
		{"medium risk needs no approval", "/contacts", "new-ehr", "org_h", "", RiskMedium},
		{"high risk without approval", "/messages", "new-ehr", "org_h", CodeScopeNotApproved, ""},
		{"a scope in no list is high risk", "/export", "ehr", "org_h", "", RiskHigh},
		{"no BAA", "/contacts", "marketing", "org_h", CodeIntegrationNotCovered, ""},
		{"not listed", "/contacts", "stranger", "org_h", CodeIntegrationNotCovered, ""},
		{"scope not granted", "/export", "new-ehr", "org_h", CodeScopeNotGranted, ""},
		{"route without a scope", "/profile", "ehr", "org_h", CodeScopeNotGranted, ""},
		{"a person", "/messages", "", "org_h", "", ""},
		{"into an org not in HIPAA mode", "/messages", "marketing", "org_p", "", ""},
	} {
		r, params := p.Match("GET", c.path)
		caller := identity.Caller{Org: c.org, User: "u", Client: c.client, AMR: []string{"otp"}}
		d, err := p.Decide(r, params, Request{Method: "GET", Path: c.path, Caller: &caller})
		if c.code != "" {
			if ref, ok := refusal.As(err); !ok || ref.ClientCode() != c.code || ref.Kind != refusal.Forbidden {
				t.Errorf("%s: %v, want 403 %s", c.name, err, c.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		switch {
		case c.risk == "" && d.Integration != nil:
			t.Errorf("%s: judged as an integration: %+v", c.name, d.Integration)
		case c.risk != "" && (d.Integration == nil || d.Integration.Risk != c.risk || d.Integration.ID != c.client || d.Integration.Scope != r.Scope):
			t.Errorf("%s: %+v, want risk %s", c.name, d.Integration, c.risk)
		}
	}
}

package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
)

// integrationCaller verifies "Bearer CLIENT" as that integration, acting
// for org_a with a second factor.
type integrationCaller struct{}

func (integrationCaller) Verify(_ context.Context, auth []string) (*identity.Caller, error) {
	if len(auth) != 1 {
		return nil, identity.ErrNoToken
	}
	client := strings.TrimPrefix(auth[0], "Bearer ")
	return &identity.Caller{Org: "org_a", User: "svc-" + client, Client: client, AMR: []string{"hwk"}}, nil
}

// TestHighRiskIntegrationAudited: an integration's allowed high-risk
// access is audited with the integration, scope and route even on a route
// that touches no PHI, and refused when the record cannot be written; a
// medium-risk one on such a route is not audited.
func TestHighRiskIntegrationAudited(t *testing.T) {
	r := newRigWith(t, `version: 1
ingress: {upstream: "http://app.invalid"}
identity: {jwt: {jwks: unused.json}, claims: {client: azp}}
keys: {keyring: unused}
integrations: [{id: ehr, baa: true, scopes: [calls.list, contacts.read], approved_by: a@clinic, approved_at: 2026-11-01T00:00:00Z}]
orgs: [{id: org_a, hipaa: true}]
routes:
  - {name: calls, match: {path: /calls}, scope: calls.list}
  - {name: contacts, match: {path: /contacts}, scope: contacts.read}
`, "org_a")
	eng, err := New(Options{Policy: r.eng.pol, Keys: r.keys, Verifier: integrationCaller{}, Auditor: r.aud})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func(path string) error {
		req := request("GET", path, "")
		req.Header.Set("Authorization", "Bearer ehr")
		x, err := eng.Begin(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		return x.Allow(ctx, 200)
	}
	if err := get("/calls"); err != nil {
		t.Fatal(err)
	}
	rec := r.aud.last(t)
	if rec.Integration != "ehr" || rec.Scope != "calls.list" || rec.Route != "calls" || !slices.Contains(rec.Actions, audit.ActionHighRisk) || rec.Time.IsZero() {
		t.Errorf("record %+v", rec)
	}
	n := len(r.aud.list)
	if err := get("/contacts"); err != nil || len(r.aud.list) != n {
		t.Errorf("a medium-risk access on a route without PHI: %v, %d records written", err, len(r.aud.list)-n)
	}
	r.aud.fail = true
	if err := get("/calls"); err == nil {
		t.Error("a high-risk access whose record failed was allowed")
	}
}

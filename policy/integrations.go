package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/refusal"
)

// Scope risk levels.
const (
	RiskHigh   = "high"
	RiskMedium = "medium"
	RiskLow    = "low"
)

// Client codes of integration refusals.
const (
	CodeIntegrationNotCovered = "integration_not_covered"
	CodeScopeNotGranted       = "scope_not_granted"
	CodeScopeNotApproved      = "scope_not_approved"
)

// Default scope risk levels, by the part of a scope before its first '.'.
var (
	DefaultHighScopes   = []string{"conversations", "messages", "calls", "recordings", "contact_notes"}
	DefaultMediumScopes = []string{"contacts", "users", "teams", "templates"}
	DefaultLowScopes    = []string{"profile", "settings"}
)

// compiledIntegration is an integration as requests are judged by it.
type compiledIntegration struct {
	Integration
	scopes   map[string]bool
	approved bool
}

func (p *Policy) compileIntegrations(ps *problems) {
	f := &p.File
	r := &f.ScopeRisk
	if r.High == nil && r.Medium == nil && r.Low == nil {
		r.High, r.Medium, r.Low = slices.Clone(DefaultHighScopes), slices.Clone(DefaultMediumScopes), slices.Clone(DefaultLowScopes)
	}
	p.risk = map[string]string{}
	for _, l := range []struct {
		level string
		list  []string
	}{{RiskHigh, r.High}, {RiskMedium, r.Medium}, {RiskLow, r.Low}} {
		for i, sc := range l.list {
			path := fmt.Sprintf("scope_risk.%s[%d]", l.level, i)
			switch {
			case sc == "" || strings.Contains(sc, "."):
				ps.add(path, "want a scope's first part (messages, not messages.read), got %q", sc)
			case p.risk[sc] != "":
				ps.add(path, "%q is already %s", sc, p.risk[sc])
			default:
				p.risk[sc] = l.level
			}
		}
	}
	p.integrations = map[string]*compiledIntegration{}
	for i, in := range f.Integrations {
		path := fmt.Sprintf("integrations[%d]", i)
		if in.ID == "" {
			ps.add(path+".id", "id is required: the integration's OAuth client id")
			continue
		}
		if p.integrations[in.ID] != nil {
			ps.add(path+".id", "integration %q is listed twice", in.ID)
			continue
		}
		if (in.ApprovedBy == "") != in.ApprovedAt.IsZero() {
			ps.add(path, "an approval needs both approved_by and approved_at")
		}
		ci := &compiledIntegration{Integration: in, scopes: map[string]bool{}, approved: in.ApprovedBy != "" && !in.ApprovedAt.IsZero()}
		for _, sc := range in.Scopes {
			ci.scopes[sc] = true
		}
		p.integrations[in.ID] = ci
	}
	if len(f.Integrations) > 0 && (f.Identity == nil || f.Identity.Claims.Client == "") {
		ps.add("integrations", "integrations need identity.claims.client: the claim that names a token's integration")
	}
}

// ScopeRisk is the risk level of scope: by its part before the first
// '.', high when no list names it.
func (p *Policy) ScopeRisk(scope string) string {
	head, _, _ := strings.Cut(scope, ".")
	if level := p.risk[head]; level != "" {
		return level
	}
	return RiskHigh
}

// IntegrationAccess is what Decide allowed an integration to do.
type IntegrationAccess struct {
	ID, Scope, Risk string
}

// checkIntegration judges a caller acting for an integration into an org
// in HIPAA mode: listed, under a BAA, the route's scope granted, and a
// high-risk scope approved. It returns what to record of an allowed one.
func (p *Policy) checkIntegration(r *Route, c *identity.Caller) (*IntegrationAccess, error) {
	if c == nil || c.Client == "" {
		return nil, nil
	}
	if _, hipaa := p.hipaa[c.Org]; !hipaa {
		return nil, nil
	}
	in := p.integrations[c.Client]
	if in == nil || !in.BAA {
		return nil, &refusal.Error{Kind: refusal.Forbidden, Code: CodeIntegrationNotCovered,
			Reason: "this integration is not covered by a Business Associate Agreement for HIPAA organizations"}
	}
	if r.Scope == "" || !in.scopes[r.Scope] {
		return nil, &refusal.Error{Kind: refusal.Forbidden, Code: CodeScopeNotGranted,
			Reason: fmt.Sprintf("the integration was not granted this route's scope %q", r.Scope)}
	}
	risk := p.ScopeRisk(r.Scope)
	if risk == RiskHigh && !in.approved {
		return nil, &refusal.Error{Kind: refusal.Forbidden, Code: CodeScopeNotApproved,
			Reason: fmt.Sprintf("the high-risk scope %q needs an admin's approval of the integration", r.Scope)}
	}
	return &IntegrationAccess{ID: in.ID, Scope: r.Scope, Risk: risk}, nil
}

package policy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/refusal"
)

// DefaultMFAMethods are the amr values (RFC 8176) that count as a second
// factor unless hipaa.mfa_methods says otherwise: "mfa" itself, and the
// possession and inherence methods.
var DefaultMFAMethods = []string{"mfa", "otp", "hwk", "swk", "sc", "sms", "tel", "fpt", "face", "iris", "retina", "vbm"}

// Refusal codes of HIPAA mode and route roles, as clients see them.
const (
	CodeMFARequired       = "mfa_required"
	CodeSessionTerminated = "session_terminated"
	CodeRoleNotAllowed    = "role_not_allowed"
)

func (p *Policy) compileHIPAA(ps *problems) {
	h := &p.File.HIPAA
	if h.BreakGlassHeader == "" {
		h.BreakGlassHeader = "X-Break-Glass-Reason"
	}
	h.BreakGlassHeader = http.CanonicalHeaderKey(h.BreakGlassHeader)
	if h.MFAMethods == nil {
		h.MFAMethods = slices.Clone(DefaultMFAMethods)
	}
	if len(h.MFAMethods) == 0 {
		ps.add("hipaa.mfa_methods", "an empty list would let no login count as having a second factor")
	}
	p.mfaMethods = map[string]bool{}
	for i, m := range h.MFAMethods {
		if m == "" {
			ps.add(fmt.Sprintf("hipaa.mfa_methods[%d]", i), "empty method")
		}
		p.mfaMethods[m] = true
	}
}

// HIPAAMode reports whether org is in HIPAA mode, and since when (zero
// when enabled_at is not set).
func (p *Policy) HIPAAMode(org string) (enabledAt time.Time, ok bool) {
	enabledAt, ok = p.hipaa[org]
	return enabledAt, ok
}

// checkHIPAA refuses a caller of an org in HIPAA mode whose login does
// not meet it: issued before the org's enabled_at (or with no iat to
// tell), or without a second factor.
func (p *Policy) checkHIPAA(c *identity.Caller) error {
	enabledAt, ok := p.hipaa[c.Org]
	if !ok {
		return nil
	}
	if !enabledAt.IsZero() && (c.IssuedAt.IsZero() || c.IssuedAt.Before(enabledAt)) {
		return &refusal.Error{Kind: refusal.Unauthenticated, Code: CodeSessionTerminated,
			Reason: "HIPAA mode ended every session that began before it was switched on; sign in again"}
	}
	if !c.MFA && !slices.ContainsFunc(c.AMR, func(m string) bool { return p.mfaMethods[m] }) {
		return &refusal.Error{Kind: refusal.Forbidden, Code: CodeMFARequired,
			Reason: "this organization requires a login with a second factor (MFA)"}
	}
	return nil
}

// checkRole refuses a caller whose role the route does not take.
func checkRole(r *Route, c *identity.Caller) error {
	if r.AllowRoles == nil || c != nil && r.AllowRoles[c.Role] {
		return nil
	}
	return &refusal.Error{Kind: refusal.Forbidden, Code: CodeRoleNotAllowed, Reason: "the caller's role may not use this route"}
}

// CodePATDisabled is the client code of a refused personal access token.
const CodePATDisabled = "pat_disabled"

// Defaults of identity.pats.
var (
	DefaultPATHeaders     = []string{"X-Api-Key", "Api-Key", "Private-Token", "X-Access-Token", "X-Auth-Token"}
	DefaultPATQueryParams = []string{"access_token", "api_key", "apikey", "private_token", "token"}
	DefaultPATValues      = []string{"pat", "personal_access_token"}
)

func (p *Policy) compilePATs(ps *problems, pats *PATs) {
	if pats.Headers == nil {
		pats.Headers = slices.Clone(DefaultPATHeaders)
	}
	if pats.QueryParams == nil {
		pats.QueryParams = slices.Clone(DefaultPATQueryParams)
	}
	if pats.Claim == "" {
		pats.Claim = "token_type"
	}
	if pats.Values == nil {
		pats.Values = slices.Clone(DefaultPATValues)
	}
	for _, l := range []struct {
		path string
		list []string
	}{{"identity.pats.prefixes", pats.Prefixes}, {"identity.pats.headers", pats.Headers}, {"identity.pats.query_params", pats.QueryParams}, {"identity.pats.values", pats.Values}} {
		for i, v := range l.list {
			if strings.TrimSpace(v) == "" || strings.ContainsFunc(v, unicode.IsSpace) {
				ps.add(fmt.Sprintf("%s[%d]", l.path, i), "want a word without spaces, got %q", v)
			}
		}
	}
}

// HasHIPAA reports whether any org is in HIPAA mode.
func (p *Policy) HasHIPAA() bool { return len(p.hipaa) > 0 }

// KnownOrg is the org a request acts for as far as it can be told before
// it is decided: the route's path parameter, else the caller's claim;
// "" when neither says.
func (p *Policy) KnownOrg(r *Route, params Params, c *identity.Caller) string {
	if r != nil && r.OrgFrom.Kind == OrgFromPathParam {
		org, _ := params.Get(r.OrgFrom.Name)
		return org
	}
	if c != nil {
		return c.Org
	}
	return ""
}

// maxBreakGlassReason bounds a break-glass reason, in runes.
const maxBreakGlassReason = 200

// breakGlassReason returns the reason a request gives for a break-glass
// read: the header's first value, control characters dropped, white space
// trimmed, at most maxBreakGlassReason runes; "" for none.
func breakGlassReason(values []string) string {
	if len(values) == 0 {
		return ""
	}
	r := strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(values[0], ""))
	return audit.Text(strings.Join(strings.Fields(r), " "), maxBreakGlassReason)
}

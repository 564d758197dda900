package policy

import (
	"fmt"
	"slices"
	"time"

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

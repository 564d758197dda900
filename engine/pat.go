package engine

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

// patIn says where the request carries a personal access token or API
// key (identity.pats), never what it is: a verified token that says it is
// one, a PAT header, a PAT query parameter, or a PAT prefix in the
// Authorization header. Names and prefixes match in any letter case, and
// white space around them is ignored.
func (e *Engine) patIn(h http.Header, query url.Values, caller *identity.Caller) string {
	id := e.pol.File.Identity
	if id == nil {
		return ""
	}
	pats := &id.PATs
	if caller != nil && caller.PAT {
		return "the bearer token (its " + pats.Claim + " claim)"
	}
	for name, values := range h {
		canon := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(strings.ReplaceAll(name, "_", "-")))
		for _, ph := range pats.Headers {
			if strings.EqualFold(canon, ph) && hasValue(values) {
				return "the " + ph + " header"
			}
		}
		if canon == "Authorization" || canon == "Proxy-Authorization" {
			for _, v := range values {
				for _, word := range strings.Fields(v) {
					if hasPrefixFold(word, pats.Prefixes) {
						return "the " + canon + " header"
					}
				}
			}
		}
	}
	for name, values := range query {
		for _, qp := range pats.QueryParams {
			if codec.QueryNameReads(strings.TrimSpace(name), qp) && hasValue(values) {
				return "the " + qp + " query parameter"
			}
		}
		for _, v := range values {
			if hasPrefixFold(strings.TrimSpace(v), pats.Prefixes) {
				return "a query parameter"
			}
		}
	}
	return ""
}

func hasValue(values []string) bool {
	for _, v := range values {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

func hasPrefixFold(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			return true
		}
	}
	return false
}

// checkPAT refuses a personal access token for an org in HIPAA mode, or
// when the request's org cannot be told (an opaque token names none).
// org is the org the request acts for as far as it is known.
func (e *Engine) checkPAT(h http.Header, query url.Values, caller *identity.Caller, org string) error {
	if !e.pol.HasHIPAA() {
		return nil
	}
	where := e.patIn(h, query, caller)
	if where == "" {
		return nil
	}
	if _, hipaa := e.pol.HIPAAMode(org); !hipaa && org != "" {
		return nil
	}
	return &refusal.Error{Kind: refusal.Forbidden, Code: policy.CodePATDisabled,
		Reason: "personal access tokens and API keys are disabled for HIPAA organizations (found in " + where + ")"}
}

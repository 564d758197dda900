package policy

import (
	"net/http"
	"strings"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/orgid"
	"github.com/phiguard/phiguard/refusal"
)

// The kinds of refusal a decision makes, as *refusal.Error kinds.
const (
	// ErrDenied: the policy refuses the request (a deny route, or the default).
	ErrDenied = refusal.Denied
	// ErrUnauthenticated: the route needs a caller and there is none.
	ErrUnauthenticated = refusal.Unauthenticated
	// ErrForbidden: the caller may not act for the request's organization.
	ErrForbidden = refusal.Forbidden
)

func refuse(kind refusal.Kind, format string, args ...any) *refusal.Error {
	return refusal.New(kind, format, args...)
}

// Request is what the engine needs to know of a request, from whichever
// front end received it.
type Request struct {
	Method string
	// Path is the canonical, percent-decoded path.
	Path string
	// Caller is the verified caller, or nil when there is no valid token.
	Caller *identity.Caller
	// CallerErr says why there is no caller, when a token was presented
	// but failed verification. Its text must be safe to show.
	CallerErr error
	// Header returns every value of a request header.
	Header func(name string) []string
	// FromTrustedGateway: the peer is in identity.trusted_gateways.
	FromTrustedGateway bool
}

// Decision is what the policy allows for a request.
type Decision struct {
	// Route is the matched route, nil when the default applied.
	Route  *Route
	Params Params
	// Org is the organization the request acts for ("" when none applies).
	Org string
	// Reader: the caller may see decrypted values.
	Reader bool
	// BreakGlass is the reason a caller outside the readers gave to read
	// (the route's break_glass); Reader is then true. "" otherwise.
	BreakGlass string
	// Integration is what an integration was allowed, for the record; nil
	// for a caller that is no integration's.
	Integration *IntegrationAccess
}

// CanonicalMethod returns method as phiguard judges and forwards it:
// upper-cased, since many servers match methods without regard to case.
// ok is false for a method outside GET, HEAD, POST, PUT, PATCH, DELETE and
// OPTIONS: such a request is refused rather than guessed at.
func CanonicalMethod(method string) (canonical string, ok bool) {
	if knownMethods[method] {
		return method, true
	}
	up := strings.ToUpper(method)
	return up, knownMethods[up]
}

// Match finds the first route that takes method (canonical) and path.
func (p *Policy) Match(method, path string) (*Route, Params) {
	var segBuf [16]string // most paths: no allocation
	segs := appendSegments(segBuf[:0], path)
	try := func(r *Route) (Params, bool) {
		if !r.takesMethod(method) {
			return nil, false
		}
		return r.Path.match(segs, p.File.CaseSensitivePaths)
	}
	var buf [8][]int
	lists, ok := p.index.candidates(buf[:0], segs, p.File.CaseSensitivePaths)
	if !ok {
		for _, r := range p.Routes {
			if params, ok := try(r); ok {
				return r, params
			}
		}
		return nil, nil
	}
	// Merge the candidate lists: routes are tried in file order, as if
	// every route were.
	for {
		best := -1
		for j, l := range lists {
			if len(l) > 0 && (best < 0 || l[0] < lists[best][0]) {
				best = j
			}
		}
		if best < 0 {
			return nil, nil
		}
		i := lists[best][0]
		lists[best] = lists[best][1:]
		if params, ok := try(p.Routes[i]); ok {
			return p.Routes[i], params
		}
	}
}

func (r *Route) takesMethod(m string) bool {
	if r.Methods == nil || r.Methods[m] {
		return true
	}
	// A HEAD is answered as a GET by most servers: judge it as one.
	return m == http.MethodHead && r.Methods[http.MethodGet]
}

// splitPath splits a canonical path into segments, ignoring one trailing slash.
func splitPath(path string) []string {
	return appendSegments(nil, path)
}

// appendSegments appends the segments of path, without its leading and
// trailing '/', to dst.
func appendSegments(dst []string, path string) []string {
	path = strings.TrimPrefix(path, "/")
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		return dst
	}
	for seg := range strings.SplitSeq(path, "/") {
		dst = append(dst, seg)
	}
	return dst
}

// NeedsCaller reports whether a request matched to r (nil: the default)
// should have its token verified before Decide.
func (p *Policy) NeedsCaller(r *Route) bool {
	return r != nil && r.Deny == "" && r.AuthRequired
}

// Decide applies the matched route (from Match) to the request. A refusal
// is a *refusal.Error of kind ErrDenied, ErrUnauthenticated or ErrForbidden.
func (p *Policy) Decide(r *Route, params Params, req Request) (Decision, error) {
	if r == nil {
		if !p.defaultAllow {
			return Decision{}, refuse(ErrDenied, "no route matches and the policy default is deny")
		}
		return Decision{}, nil
	}
	d := Decision{Route: r, Params: params}
	if r.Deny != "" {
		return d, refuse(ErrDenied, "%s", r.Deny)
	}
	if r.AuthRequired {
		if err := checkCaller(req); err != nil {
			return d, err
		}
		if err := p.checkHIPAA(req.Caller); err != nil {
			return d, err
		}
		if err := checkRole(r, req.Caller); err != nil {
			return d, err
		}
		access, err := p.checkIntegration(r, req.Caller)
		if err != nil {
			return d, err
		}
		d.Integration = access
	}
	org, err := p.resolveOrg(r, params, req)
	if err != nil {
		return d, err
	}
	d.Org = org
	if r.HasFieldActions() && !p.orgs[org] {
		return d, refuse(ErrForbidden, "organization is not enrolled in the policy")
	}
	d.Reader = r.Readers == nil || req.Caller != nil && r.Readers[req.Caller.Role]
	if !d.Reader && req.Caller != nil && r.BreakGlass[req.Caller.Role] && req.Header != nil {
		if reason := breakGlassReason(req.Header(p.File.HIPAA.BreakGlassHeader)); reason != "" {
			d.Reader, d.BreakGlass = true, reason
		}
	}
	return d, nil
}

// checkCaller refuses a request without a caller that names exactly one
// valid organization and a user: tenancy and identity are never defaulted.
func checkCaller(req Request) error {
	c := req.Caller
	if c == nil {
		ref, isRefusal := refusal.As(req.CallerErr)
		switch {
		case isRefusal:
			return ref
		case req.CallerErr != nil:
			return refuse(ErrUnauthenticated, "%v", req.CallerErr)
		}
		return refuse(ErrUnauthenticated, "a bearer token is required")
	}
	if orgid.Check(c.Org) != nil {
		return refuse(ErrForbidden, "the token does not name exactly one valid organization")
	}
	if c.User == "" {
		return refuse(ErrForbidden, "the token does not name the user")
	}
	return nil
}

func (p *Policy) resolveOrg(r *Route, params Params, req Request) (string, error) {
	var org string
	switch r.OrgFrom.Kind {
	case OrgFromClaim:
		if req.Caller == nil {
			if r.HasFieldActions() {
				return "", refuse(ErrUnauthenticated, "a bearer token is required")
			}
			return "", nil
		}
		org = req.Caller.Org
		if org == "" {
			if r.HasFieldActions() {
				return "", refuse(ErrForbidden, "the token carries no organization claim")
			}
			return "", nil
		}
	case OrgFromPathParam:
		org, _ = params.Get(r.OrgFrom.Name)
	case OrgFromHeader:
		if !req.FromTrustedGateway {
			return "", refuse(ErrForbidden, "the organization header is accepted only from a trusted gateway")
		}
		var values []string
		if req.Header != nil {
			values = req.Header(r.OrgFrom.Name)
		}
		switch len(values) {
		case 0:
			return "", refuse(ErrForbidden, "the %s header is required", r.OrgFrom.Name)
		case 1:
			org = values[0]
		default:
			// Apps differ on which value they read: the first, the last, all joined.
			return "", refuse(ErrForbidden, "the %s header appears more than once", r.OrgFrom.Name)
		}
		if org == "" {
			return "", refuse(ErrForbidden, "the %s header is required", r.OrgFrom.Name)
		}
	}
	if orgid.Check(org) != nil {
		return "", refuse(ErrForbidden, "malformed organization id")
	}
	if req.Caller != nil && r.OrgFrom.Kind != OrgFromClaim && req.Caller.Org != org {
		return "", refuse(ErrForbidden, "the request names an organization other than the caller's")
	}
	return org, nil
}

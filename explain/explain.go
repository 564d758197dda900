package explain

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

// Options say whom a sample is explained for. explain verifies no token:
// the caller of an ingress request is the one given here, whatever the
// sample's Authorization header holds.
type Options struct {
	// Org is the caller's organization; "" for the policy's first org.
	Org string
	// User is the caller's user id; "" for "explain".
	User string
	// Role is the caller's role; "" for none.
	Role string
	// AMR are the caller's authentication methods (RFC 8176): an org in
	// HIPAA mode needs one of hipaa.mfa_methods.
	AMR []string
	// Peer is the client's address; invalid for unknown (a route that
	// takes the org from a header then refuses it).
	Peer netip.Addr
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Explanation is what phiguard would do with a sample: the route, the
// decision, and where each selector of the route acted. It names paths,
// types and lengths; never a value of the sample.
type Explanation struct {
	// Direction is ingress (a client's request to the app) or egress (the
	// app's call to a vendor).
	Direction string `json:"direction"`
	Method    string `json:"method"`
	// Destination is the vendor's host of an egress call.
	Destination string `json:"destination,omitempty"`
	// Route is the route that took the request; nil when none did.
	Route *Route `json:"route"`
	// NoRoute says, when no route took the request, what happens instead
	// and which routes come close.
	NoRoute []string `json:"no_route,omitempty"`
	// Caller is whom an ingress request was explained for.
	Caller *Caller `json:"caller,omitempty"`
	// Org is the organization the request acts for, as the engine decided.
	Org      string   `json:"org,omitempty"`
	Decision Decision `json:"decision"`
	Request  *Body    `json:"request,omitempty"`
	Response *Body    `json:"response,omitempty"`
	// Audit are the records the engine wrote, values left out.
	Audit []Record `json:"audit,omitempty"`
	// Notes say what explain could not check, or stood in for.
	Notes []string `json:"notes,omitempty"`
}

// Route is the route that took a request.
type Route struct {
	Name string `json:"name"`
	// Ref is where the policy defines it: routes[i] or egress_routes[i].
	Ref     string   `json:"ref"`
	Methods []string `json:"methods,omitempty"`
	Path    string   `json:"path"`
	// Params are its path parameters, each with its type.
	Params []Param `json:"params,omitempty"`
	Deny   string  `json:"deny,omitempty"`
	// Auth is required or none (ingress routes).
	Auth string `json:"auth,omitempty"`
	// OrgFrom says where the org comes from (ingress routes).
	OrgFrom string `json:"org_from,omitempty"`
	// Readers are the roles that read plaintext; Reader says whether the
	// caller does. Set on routes that decrypt or search.
	Readers []string `json:"readers,omitempty"`
	Reader  *bool    `json:"reader,omitempty"`
	// BAA: a BAA covers the vendor (egress routes).
	BAA *bool `json:"baa,omitempty"`
}

// Param is a path parameter: its name and the type of what the sample holds.
type Param struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Caller is the stand-in caller.
type Caller struct {
	Org  string   `json:"org"`
	User string   `json:"user"`
	Role string   `json:"role,omitempty"`
	AMR  []string `json:"amr,omitempty"`
}

// Decision is the engine's: allowed, or refused with its status, code
// and reason.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Stage is where a refusal happened: head, request body, intent record,
	// response body.
	Stage  string `json:"stage,omitempty"`
	Status int    `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Body is what the selectors of one body found.
type Body struct {
	// Status is an answer's status.
	Status      int    `json:"status,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	// Format is how explain read it: json, form, or none.
	Format string `json:"format"`
	Bytes  int    `json:"bytes"`
	// Rewritten: phiguard rewrote it (sealed, opened, replaced, dropped …);
	// false when the request is refused first, or nothing applies.
	Rewritten bool       `json:"rewritten"`
	Selectors []Selector `json:"selectors,omitempty"`
	// Untaken are the body's values no selector took: they go on as
	// they were sent.
	Untaken []Location `json:"untaken,omitempty"`
	// Problem says why the body could not be read for locations.
	Problem string `json:"problem,omitempty"`
}

// Selector is one selector of the route and where it acted.
type Selector struct {
	// List is the policy key it is listed under (encrypt_request,
	// decrypt_response, drop_request …), Index its place there.
	List     string `json:"list"`
	Index    int    `json:"index"`
	Selector string `json:"selector"`
	// Does says what it does to what it finds.
	Does  string     `json:"does"`
	Found []Location `json:"found"`
	// Refused is the codec's reason when this selector refuses the body.
	Refused string   `json:"refused,omitempty"`
	Hints   []string `json:"hints,omitempty"`
}

// Location is one value of a body: where, of what type, and what became
// of it.
type Location struct {
	// Path is a concrete JSON path ($.attachments[0].caption), a form
	// field's name as sent, or ?name for a query parameter.
	Path    string `json:"path"`
	Type    string `json:"type"`
	Outcome string `json:"outcome,omitempty"`
}

// Record is an audit record the engine wrote, values left out.
type Record struct {
	Phase    string        `json:"phase,omitempty"`
	Decision string        `json:"decision"`
	Status   int           `json:"status,omitempty"`
	Actions  []string      `json:"actions,omitempty"`
	Fields   []audit.Field `json:"fields,omitempty"`
	// Recorded names the values the record holds (a route's record:,
	// consent_ref).
	Recorded []string `json:"recorded,omitempty"`
	Reason   string   `json:"reason,omitempty"`
}

// Explain runs a sample request (and, when response is not nil, the
// answer to it) through an engine for p built with stand-in keys, caller
// and audit trail, and says what phiguard would do. An error means a
// sample could not be read; a refusal is an explanation.
func Explain(ctx context.Context, p *policy.Policy, request, response []byte, o Options) (*Explanation, error) {
	req, reqBody, err := ParseRequest(request)
	if err != nil {
		return nil, err
	}
	r := &run{ctx: ctx, orig: p, pol: withoutSignatures(p), req: req, reqBody: reqBody, trail: &memoryTrail{}, ex: &Explanation{}}
	if response != nil {
		if r.resp, r.respBody, err = ParseResponse(response, req); err != nil {
			return nil, err
		}
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	org, user := o.Org, o.User
	if org == "" && len(p.File.Orgs) > 0 {
		org = p.File.Orgs[0].ID
	}
	if user == "" {
		user = "explain"
	}
	r.caller = newCaller(org, user, o.Role, o.AMR, now())
	if o.Peer.IsValid() {
		r.peer = netip.AddrPortFrom(o.Peer, 0)
	}
	if r.eng, err = engine.New(engine.Options{Policy: r.pol, Keys: standInKeys{}, Verifier: flagCaller{r.caller},
		Auditor: r.trail, Hasher: audit.NewHasher(newRunMAC()), Now: now}); err != nil {
		return nil, err
	}
	if host, ok := egressHost(r.pol, req); ok {
		r.egress(host)
	} else {
		r.ingress()
	}
	for _, rec := range r.trail.all() {
		out := Record{Phase: rec.Phase, Decision: rec.Decision, Status: rec.Status, Actions: rec.Actions, Fields: rec.Fields, Reason: rec.Reason}
		for _, v := range rec.Recorded {
			out.Recorded = append(out.Recorded, v.Name)
		}
		r.ex.Audit = append(r.ex.Audit, out)
	}
	return r.ex, nil
}

// withoutSignatures is p with its routes' webhook signature checks left
// out: explain holds no shared secret, and a sample carries no signature.
func withoutSignatures(p *policy.Policy) *policy.Policy {
	c := *p
	c.Routes = make([]*policy.Route, len(p.Routes))
	for i, r := range p.Routes {
		rc := *r
		rc.Signature = nil
		c.Routes[i] = &rc
	}
	return &c
}

// egressHost returns the destination of a sample that is an egress call:
// one with an absolute URL, or with a Host an egress route names.
func egressHost(p *policy.Policy, r *http.Request) (string, bool) {
	if r.URL.IsAbs() {
		return r.URL.Host, true
	}
	host := strings.TrimSuffix(strings.ToLower(r.Host), ".")
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.Contains(h, "]") {
		host = h
	}
	for _, e := range p.EgressRoutes {
		if e.Egress.Host == host {
			return r.Host, true
		}
	}
	return "", false
}

// run is one explanation in the making.
type run struct {
	ctx        context.Context
	orig, pol  *policy.Policy
	eng        *engine.Engine
	trail      *memoryTrail
	caller     identity.Caller
	peer       netip.AddrPort
	req        *http.Request
	reqBody    []byte
	resp       *http.Response
	respBody   []byte
	ex         *Explanation
	refusedErr *refusal.Error
}

// refuse records the refusal of err at stage.
func (r *run) refuse(x *engine.Exchange, err error, stage string) {
	ref := x.Refuse(r.ctx, err)
	r.refusedErr = ref
	r.ex.Decision = Decision{Stage: stage, Status: engine.Status(ref.Kind), Code: ref.ClientCode(), Reason: ref.Reason}
}

// refusedBeforeRoute reports whether the engine refused the head before
// it chose a route: its record names none, and the refusal is not the one
// for a request no route takes (noRoute, the code).
func (r *run) refusedBeforeRoute(noRoute string) bool {
	rec := r.lastRecord()
	return r.refusedErr != nil && r.ex.Decision.Stage == "head" && rec != nil && rec.Route == "" && r.refusedErr.ClientCode() != noRoute
}

// lastRecord is the engine's latest record, or nil.
func (r *run) lastRecord() *audit.Record {
	recs := r.trail.all()
	if len(recs) == 0 {
		return nil
	}
	return &recs[len(recs)-1]
}

// requestPath is the path as sent, escapes included (as the HTTP
// adapters give it to the engine).
func requestPath(r *http.Request) string {
	if uri := r.RequestURI; strings.HasPrefix(uri, "/") {
		p, _, _ := strings.Cut(uri, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// answer is the sample answer as the HTTP adapters hand it to the
// engine: a nil reader for none.
func (r *run) answer() (io.Reader, int64) {
	if len(r.respBody) == 0 {
		return nil, 0
	}
	return bytes.NewReader(r.respBody), int64(len(r.respBody))
}

func (r *run) ingress() {
	ex := r.ex
	ex.Direction, ex.Method = "ingress", r.req.Method
	header := r.req.Header.Clone()
	x, err := r.eng.Begin(r.ctx, &engine.Request{Method: r.req.Method, Path: requestPath(r.req), Query: r.req.URL.RawQuery,
		Header: header, Peer: r.peer})
	defer x.Close()
	ex.Method = x.Method()
	route, params := r.matched(x)
	sealed, opened := r.walkIngress(x, err, header)
	if r.refusedBeforeRoute("denied") {
		ex.NoRoute = append(ex.NoRoute, "the request was refused before a route was chosen")
		if route != nil {
			ex.NoRoute = append(ex.NoRoute, "it would go to route "+route.Name)
		}
		route, params = nil, nil
	} else if route == nil {
		r.noIngressRoute(x)
	}
	if rec := r.lastRecord(); rec != nil && route != nil {
		ex.Org = rec.Org
	}
	if route != nil && route.Deny == "" && route.AuthRequired {
		c := r.caller
		ex.Caller = &Caller{Org: c.Org, User: c.User, Role: c.Role, AMR: c.AMR}
	}
	r.describeIngressRoute(route, params)
	r.explainIngressBodies(route, x.Query(), sealed, opened, x.TouchesPHI())
	r.ingressNotes(route)
}

// walkIngress takes the exchange through the steps the HTTP ingress
// takes it through (Begin's outcome is err): seal the request body,
// record the intent, then, with an answer, open it and record the
// outcome. It returns copies of the bodies the engine rewrote (nil for
// none), and notes the decision.
func (r *run) walkIngress(x *engine.Exchange, err error, header http.Header) (sealed, opened []byte) {
	if !x.TouchesPHI() {
		return r.walk(x, err, header, nil, nil)
	}
	return r.walk(x, err, header, x.SealRequest, x.OpenResponse)
}

// walk is the way of an exchange through an adapter: its request body
// rewritten by seal, the intent recorded, its answer rewritten by open
// and the outcome recorded. A nil seal or open leaves that body as it
// is. It returns copies of the bodies rewritten.
func (r *run) walk(x *engine.Exchange, err error, header http.Header,
	seal func(context.Context, http.Header, io.Reader, int64) ([]byte, error),
	open func(context.Context, int, http.Header, io.Reader, int64) ([]byte, bool, error)) (sealed, opened []byte) {
	ctx := r.ctx
	if err != nil {
		r.refuse(x, err, "head")
		return nil, nil
	}
	if seal != nil && len(r.reqBody) > 0 {
		out, err := seal(ctx, header, bytes.NewReader(r.reqBody), int64(len(r.reqBody)))
		if err != nil {
			r.refuse(x, err, "request body")
			return nil, nil
		}
		sealed = bytes.Clone(out)
	}
	if err := x.Intend(ctx); err != nil {
		r.refuse(x, err, "intent record")
		return sealed, nil
	}
	r.ex.Decision.Allowed = true
	if r.resp == nil {
		return sealed, nil
	}
	if open != nil {
		body, size := r.answer()
		out, _, err := open(ctx, r.resp.StatusCode, r.resp.Header.Clone(), body, size)
		if err != nil {
			r.ex.Decision.Allowed = false
			r.refuse(x, err, "response body")
			return sealed, nil
		}
		opened = bytes.Clone(out)
	}
	if err := x.Allow(ctx, r.resp.StatusCode); err != nil {
		r.ex.Decision.Allowed = false
		r.refuse(x, err, "response body")
	}
	return sealed, opened
}

// matched is the route the engine matched, as the policy's own matcher
// finds it again for the judged method and path; nil when none did, or
// when the request was refused before its route was looked for.
func (r *run) matched(x *engine.Exchange) (*policy.Route, policy.Params) {
	if x.Path() == "" {
		return nil, nil
	}
	m, ok := policy.CanonicalMethod(x.Method())
	if !ok {
		return nil, nil
	}
	return r.pol.Match(m, x.Path())
}

func (r *run) describeIngressRoute(route *policy.Route, params policy.Params) {
	ex := r.ex
	if route == nil {
		return
	}
	rt := &Route{Name: route.Name, Ref: fmt.Sprintf("routes[%d]", route.Index), Methods: methodList(route.Methods), Path: route.Path.String(), Deny: route.Deny}
	for _, p := range params {
		rt.Params = append(rt.Params, Param{Name: p.Name, Type: textType(p.Value)})
	}
	if route.Deny == "" {
		rt.Auth = "required"
		if !route.AuthRequired {
			rt.Auth = "none"
		}
		switch route.OrgFrom.Kind {
		case policy.OrgFromClaim:
			if route.AuthRequired {
				rt.OrgFrom = "the caller's org claim"
			}
		case policy.OrgFromPathParam:
			rt.OrgFrom = "the path parameter {" + route.OrgFrom.Name + "}"
		case policy.OrgFromHeader:
			rt.OrgFrom = "the " + route.OrgFrom.Name + " header, from a trusted gateway"
		}
	}
	if len(route.DecryptResponse) > 0 || len(route.SearchRequest) > 0 {
		rt.Readers = sortedKeys(route.Readers)
		reader := r.isReader(route)
		rt.Reader = &reader
	}
	ex.Route = rt
}

// isReader reports whether the caller reads the route's plaintext: every
// caller when the route names no readers, a reader role, or a break-glass
// read the engine recorded.
func (r *run) isReader(route *policy.Route) bool {
	if route.Readers == nil || route.Readers[r.caller.Role] {
		return true
	}
	for _, rec := range r.trail.all() {
		if slices.Contains(rec.Actions, audit.ActionBreakGlass) {
			return true
		}
	}
	return false
}

func (r *run) noIngressRoute(x *engine.Exchange) {
	ex := r.ex
	if r.orig.File.Default == "allow" {
		ex.NoRoute = append(ex.NoRoute, "no route matched; the policy's default is allow: the request goes to the app untouched (no field is encrypted, nothing is recorded)")
	} else {
		ex.NoRoute = append(ex.NoRoute, "no route matched; the policy's default is deny: phiguard answers 403 and never calls the app")
	}
	if x.Path() == "" {
		return
	}
	var others []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if rt, _ := r.pol.Match(m, x.Path()); rt != nil {
			others = append(others, rt.Name+" ("+m+")")
		}
	}
	if len(others) > 0 {
		ex.NoRoute = append(ex.NoRoute, "routes that take this path under another method: "+strings.Join(slices.Compact(others), ", "))
	}
}

// stand-in flags: what to change about the stand-in caller when the
// engine refused it.
var callerHints = map[string]string{
	policy.CodeMFARequired:    "the caller has no second factor: explain one that has (phiguard explain -amr mfa, or another of hipaa.mfa_methods)",
	policy.CodeRoleNotAllowed: "the caller's role is not among the route's allow_roles: explain another (phiguard explain -role ROLE)",
}

func (r *run) ingressNotes(route *policy.Route) {
	ex := r.ex
	if h, ok := callerHints[ex.Decision.Code]; ok && !ex.Decision.Allowed {
		ex.Notes = append(ex.Notes, h)
	}
	if !ex.Decision.Allowed && strings.Contains(ex.Decision.Reason, "trusted gateway") {
		ex.Notes = append(ex.Notes, "the client's address is not among identity.trusted_gateways: explain one that is (phiguard explain -peer IP)")
	}
	if !ex.Decision.Allowed && strings.Contains(ex.Decision.Reason, "not enrolled") {
		ex.Notes = append(ex.Notes, "the organization is not listed under orgs: explain a caller of one that is (phiguard explain -org ID)")
	}
	if route == nil || route.Deny != "" {
		return
	}
	if route.AuthRequired && len(r.req.Header.Values("Authorization")) == 0 && !r.hasIdentityCookie() {
		ex.Notes = append(ex.Notes, "the sample carries no Authorization header: phiguard would answer 401 (a bearer token is required); explained as if the caller above had sent one")
	}
	if s := r.orig.Routes[route.Index].Signature; s != nil {
		ex.Notes = append(ex.Notes, "verify_signature ("+s.Scheme+") is not checked: explain holds no secret. phiguard checks the sender's signature before anything is rewritten (401 signature_invalid when it is missing or wrong) and signs what it forwards (X-Phiguard-Signature)")
	}
	if route.ConsentFrom != nil {
		ex.Notes = append(ex.Notes, "consent_keywords: a STOP or START in "+route.ConsentText.Text+" from "+route.ConsentFrom.Text+" updates the consent registry (explain's registry is its own, empty and forgotten)")
	}
}

func (r *run) hasIdentityCookie() bool {
	id := r.pol.File.Identity
	if id == nil || id.JWT == nil || id.JWT.Cookie == "" {
		return false
	}
	_, err := r.req.Cookie(id.JWT.Cookie)
	return err == nil
}

func (r *run) egress(host string) {
	ex := r.ex
	ex.Direction, ex.Method, ex.Destination = "egress", r.req.Method, strings.ToLower(host)
	header := r.req.Header.Clone()
	x, err := r.eng.BeginEgress(r.ctx, &engine.Request{Method: r.req.Method, Path: requestPath(r.req), Query: r.req.URL.RawQuery,
		Header: header, Peer: r.peer, Host: host})
	defer x.Close()
	ex.Method = x.Method()
	var route *policy.Route
	var params policy.Params
	if m, ok := policy.CanonicalMethod(x.Method()); ok && x.Path() != "" {
		route, params = r.pol.MatchEgress(host, m, x.Path())
	}
	sealed, answered := r.walkEgress(x, err, header)
	if rec := r.lastRecord(); rec != nil {
		ex.Org = rec.Org
	}
	switch {
	case r.refusedBeforeRoute("destination_not_allowed"):
		ex.NoRoute = append(ex.NoRoute, "the call was refused before a route was chosen")
		if route != nil {
			ex.NoRoute = append(ex.NoRoute, "it would go to egress route "+route.Name)
		}
		route = nil
	case route == nil:
		r.noEgressRoute(host)
	default:
		rt := &Route{Name: route.Name, Ref: fmt.Sprintf("egress_routes[%d]", route.Index), Methods: methodList(route.Methods), Path: route.Path.String()}
		baa := route.Egress.BAA
		rt.BAA = &baa
		for _, p := range params {
			rt.Params = append(rt.Params, Param{Name: p.Name, Type: textType(p.Value)})
		}
		ex.Route = rt
	}
	r.explainEgressBodies(route, sealed, answered)
	if route != nil && route.Egress.ConsentTo != nil {
		note := "explain's consent registry is empty: every recipient's consent is unknown. A recipient who sent STOP is refused (403 no_consent)"
		if route.Egress.RequireConsent {
			note += ", and with require_consent so is one who never opted in"
		}
		ex.Notes = append(ex.Notes, note)
	}
}

// walkEgress takes the exchange through the steps the egress listener
// takes it through: rewrite the body for the vendor, record the intent,
// then, with an answer, seal it and record the outcome.
func (r *run) walkEgress(x *engine.Exchange, err error, header http.Header) (sealed, answered []byte) {
	return r.walk(x, err, header, x.SealEgress, x.SealAnswer)
}

func (r *run) noEgressRoute(host string) {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	var same []string
	for _, e := range r.pol.EgressRoutes {
		if e.Egress.Host == h {
			ms := "every method"
			if l := methodList(e.Methods); len(l) > 0 {
				ms = strings.Join(l, ", ")
			}
			same = append(same, fmt.Sprintf("%s (%s %s)", e.Name, ms, e.Path.String()))
		}
	}
	r.ex.NoRoute = append(r.ex.NoRoute, "no egress route takes this call: phiguard answers 403 destination_not_allowed and never contacts the vendor")
	if len(same) > 0 {
		r.ex.NoRoute = append(r.ex.NoRoute, "egress routes of this host: "+strings.Join(same, "; "))
	} else if len(r.pol.EgressRoutes) > 0 {
		var hosts []string
		for _, e := range r.pol.EgressRoutes {
			hosts = append(hosts, e.Egress.Host)
		}
		r.ex.NoRoute = append(r.ex.NoRoute, "no egress route names this host; they name "+strings.Join(slices.Compact(slices.Sorted(slices.Values(hosts))), ", "))
	}
}

func methodList(m map[string]bool) []string {
	if m == nil {
		return nil
	}
	return sortedKeys(m)
}

func sortedKeys(m map[string]bool) []string {
	if m == nil {
		return nil
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

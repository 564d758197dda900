// Package engine is phiguard's transport-neutral core: given a request as
// an adapter received it (method, path, headers, peer, body), it judges the
// request, decides it by the policy, seals the request body's PHI, opens
// the response body's PHI for the callers who may read it, and writes the
// audit record. The HTTP ingress (package proxy) is one adapter over it;
// the egress listener and the Envoy ext_proc server are others. None of
// them re-implements policy, hygiene, transforms or audit.
//
// One request is one Exchange:
//
//	x, err := eng.Begin(ctx, req) // judge the head; x is never nil
//	defer x.Close()
//	if err != nil { answer x.Refuse(ctx, err) }
//	body, err = x.SealRequest(ctx, header, body, size) // routes with field actions
//	… forward, get the response …
//	body, err = x.OpenResponse(ctx, status, header, body, size)
//	err = x.Allow(ctx, status) // the audit record; refuse on error
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/consent"
	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
	"github.com/phiguard/phiguard/session"
)

// Keys seals and opens field values for an organization.
type Keys interface {
	// AppendEncrypt appends the token sealing plaintext to dst; a token's
	// characters need no escaping in JSON, a form or a URL.
	AppendEncrypt(ctx context.Context, dst []byte, org string, plaintext []byte) ([]byte, error)
	Decrypt(ctx context.Context, org string, token []byte) ([]byte, error)
	// AppendEncryptExact appends the exact-match token of plaintext: equal
	// for equal plaintexts of one org (searchable: exact).
	AppendEncryptExact(ctx context.Context, dst []byte, org string, plaintext []byte) ([]byte, error)
	// AppendIndexWord appends the index word of a normalized word
	// (searchable: words) of chars characters after its prefix.
	AppendIndexWord(dst []byte, org string, word []byte, chars int) ([]byte, error)
}

// Verifier identifies the caller from the Authorization header values.
type Verifier interface {
	Verify(ctx context.Context, authorization []string) (*identity.Caller, error)
}

// Auditor records what happened to a request.
type Auditor interface {
	Record(ctx context.Context, r *audit.Record) error
}

// Observer is told how every exchange ended, once, when it is closed:
// metrics. It must not keep o, which is reused.
type Observer interface {
	Observe(o *Outcome)
}

// Outcome is how an exchange ended. It holds names, codes, counts and
// durations; never a value from the request.
type Outcome struct {
	// Route is the route matched; nil when none did.
	Route *policy.Route
	// Decision is the audit decision (audit.DecisionAllow, DecisionDeny,
	// DecisionError); empty when the exchange ended before an answer.
	Decision string
	// Status is what phiguard answered; 0 with Decision.
	Status int
	// Refusal is the refusal's code (refusal.Kind.Code); empty when allowed.
	Refusal string
	// Fields are what the actions did, as in the audit record.
	Fields []audit.Field
	// Duration runs from Begin to Close.
	Duration time.Duration
	// Upstream runs from forwarding the request to the app's response
	// headers; 0 when the app did not answer.
	Upstream time.Duration
	// Request and Response say which of the route's selectors found a
	// value in a body they were applied to.
	Request, Response Coverage
	// Egress: a call the app made to a vendor (BeginEgress); Route is
	// then an egress route, or nil for a destination no route takes.
	Egress bool
}

// Coverage is which selectors of a route found a value in one body.
type Coverage struct {
	// Checked: the selectors were applied to a body (a request body that
	// was sealed; a 2xx JSON answer that was opened).
	Checked bool
	// Found has bit i set when selector i found a value; selectors past
	// the 63rd share bit 63.
	Found uint64
}

// Complete reports whether each of n selectors found a value.
func (c Coverage) Complete(n int) bool {
	return c.Found == uint64(1)<<min(n, 64)-1 // 1<<64 is 0: all 64 bits
}

func (c *Coverage) found(sel int) { c.Found |= 1 << min(sel, 63) }

// Options configure an Engine. Policy, Keys (when a route has field
// actions) and Auditor are required.
type Options struct {
	Policy *policy.Policy
	Keys   Keys
	// Verifier identifies callers; nil refuses every route that needs one.
	Verifier Verifier
	Auditor  Auditor
	// Observer is told how each exchange ended; nil tells no one.
	Observer Observer
	// Log receives operational messages, never PHI; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Hasher keyed-hashes path parameters (and unmatched paths) for the
	// audit record; nil leaves their values out.
	Hasher *audit.Hasher
	// Sessions keeps session state for the orgs whose sessions the
	// policy tracks. nil: a memory store of the policy's
	// state.max_sessions (Successor: the predecessor's store).
	Sessions session.Store
	// Consent is the SMS consent registry, for a policy with
	// consent_keywords or egress consent checks. nil: a memory registry
	// of consent.max_entries (Successor: the predecessor's).
	Consent consent.Store
}

// Engine applies one policy. It is safe for concurrent use.
type Engine struct {
	pol      *policy.Policy
	keys     Keys
	verifier Verifier
	auditor  Auditor
	observer Observer
	log      *slog.Logger
	now      func() time.Time
	sessions session.Store
	consent  consent.Store
	hasher   *audit.Hasher
	policyID string      // the policy's SHA-256, first 16 hex digits
	plans    []routePlan // by route index
	// egressPlans are the egress routes', by their index.
	egressPlans []egressPlan
	mask        []byte // JSON string of the policy's mask
	// slots holds one token per request in flight (max_concurrent_requests);
	// egressSlots, one per egress call, apart: a request the app is
	// serving may need one for its own call out.
	slots, egressSlots chan struct{}
	// guarded are the headers phiguard judges or sets (guardedHeaders).
	guarded map[string]bool
}

// routePlan is what a route needs at request time, compiled once.
type routePlan struct {
	// reqSels are the selectors a request body is sealed by: the route's
	// encrypt_request (the first nEnc), then its body search terms.
	reqSels []policy.Selector
	nEnc    int
	// recStart is where the route's recorded request fields begin in
	// reqSels; nDec is where its recorded response fields begin in the
	// response matcher's selectors (after decrypt_response).
	recStart, nDec int
	// query are the route's query: search terms.
	query []policy.Selector
	// refusedForm are form fields a request body may not hold: the
	// method override, and names the app could read as a search term
	// that this body's form would not rewrite.
	refusedForm []string
	encJSON     *codec.Matcher
	encForm     bool
	dec         *codec.Matcher
	// decrypts: the route's responses may carry plaintext PHI.
	decrypts bool
	// sig checks a webhook's signature and signs it again; nil for none.
	sig *webhookSig
}

// New compiles what the policy's routes need at request time.
func New(o Options) (*Engine, error) {
	if o.Policy == nil || o.Auditor == nil {
		return nil, errors.New("engine: Policy and Auditor are required")
	}
	e := &Engine{pol: o.Policy, keys: o.Keys, verifier: o.Verifier, auditor: o.Auditor, observer: o.Observer, log: o.Log, now: o.Now, sessions: o.Sessions, hasher: o.Hasher, policyID: o.Policy.SHA256[:min(16, len(o.Policy.SHA256))],
		slots:       make(chan struct{}, max(o.Policy.File.Ingress.MaxConcurrentRequests, 1)),
		egressSlots: make(chan struct{}, max(o.Policy.File.Ingress.MaxConcurrentRequests, 1)),
		guarded:     guardedHeaders(o.Policy)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.sessions == nil && o.Policy.TracksSessions() {
		e.sessions = session.NewMemory(o.Policy.File.State.MaxSessions)
	}
	var err error
	if e.consent, err = consentStoreFor(o); err != nil {
		return nil, err
	}
	mask, err := jsontext.AppendQuote(nil, o.Policy.File.Mask)
	if err != nil {
		return nil, fmt.Errorf("engine: mask: %w", err)
	}
	e.mask = mask
	for _, r := range o.Policy.Routes {
		if r.HasFieldActions() && o.Keys == nil {
			return nil, fmt.Errorf("engine: route %s has field actions but no keys were given", r.Name)
		}
		reqSels := slices.Clone(r.EncryptRequest)
		var query []policy.Selector
		for _, s := range r.SearchRequest {
			if s.Query {
				query = append(query, s)
			} else {
				reqSels = append(reqSels, s)
			}
		}
		recStart := len(reqSels)
		reqSels = append(reqSels, r.RecordRequest...)
		decSels := append(slices.Clone(r.DecryptResponse), r.RecordResponse...)
		refusedJSON, refusedForm := searchAliases(r.SearchRequest, reqSels)
		var sig *webhookSig
		if r.Signature != nil {
			var err error
			if sig, err = newWebhookSig(r.Name, r.Signature); err != nil {
				return nil, fmt.Errorf("engine: %w", err)
			}
		}
		e.plans = append(e.plans, routePlan{
			sig:         sig,
			reqSels:     reqSels,
			nEnc:        len(r.EncryptRequest),
			recStart:    recStart,
			nDec:        len(r.DecryptResponse),
			query:       query,
			refusedForm: append(refusedForm, methodOverrideParam),
			encJSON:     codec.NewRequestMatcher(reqSels, append(refusedJSON, methodOverrideField)...),
			encForm:     codec.HasForm(reqSels),
			dec:         codec.NewMatcher(decSels),
			decrypts:    len(decSels) > 0,
		})
	}
	for _, r := range o.Policy.EgressRoutes {
		if len(r.Egress.Decrypt) > 0 && o.Keys == nil {
			return nil, fmt.Errorf("engine: egress route %s decrypts but no keys were given", r.Name)
		}
		e.egressPlans = append(e.egressPlans, newEgressPlan(r))
	}
	return e, nil
}

// Successor builds an engine for o that shares e's capacity slots (and,
// unless o names one, its session store): what a policy reload puts in
// force. o's max_concurrent_requests is not used.
func (e *Engine) Successor(o Options) (*Engine, error) {
	if o.Sessions == nil {
		o.Sessions = e.sessions
	}
	if o.Consent == nil {
		o.Consent = e.consent
	}
	n, err := New(o)
	if err != nil {
		return nil, err
	}
	n.slots, n.egressSlots = e.slots, e.egressSlots
	return n, nil
}

// InFlight returns the requests holding a capacity slot.
func (e *Engine) InFlight() int { return len(e.slots) }

// Policy returns the policy the engine applies.
func (e *Engine) Policy() *policy.Policy { return e.pol }

// Request is a request as an adapter received it.
type Request struct {
	// Method as sent; the engine judges and forwards it upper-cased.
	Method string
	// Path as sent, escapes included, without the query.
	Path string
	// Query is the raw query string, without '?'.
	Query string
	// Header holds the request's headers. Begin removes the ones the app
	// must not act on and sets the ones phiguard owns; the adapter forwards
	// what is left.
	Header http.Header
	// Trailers: the request declares or carries trailers.
	Trailers bool
	// Peer is the address of the connection's other end; the zero value
	// when unknown.
	Peer netip.AddrPort
	// Host is the destination of an egress call (BeginEgress): the host
	// of its absolute URL, else its Host header, with or without a port.
	Host string
}

// Exchange is one request's way through the engine: its judgement, its
// decision and its audit record. It is used by one goroutine at a time.
type Exchange struct {
	e      *Engine
	start  time.Time
	slot   chan struct{} // the capacity slots it holds one of; nil: none
	path   canonicalPath
	method string
	query  string // to forward (Query)
	// rawPath and rawQuery are as received: what a webhook's sender signed.
	rawPath, rawQuery string
	// verified: the webhook's signature was checked and held.
	verified bool
	client   netip.Addr // the client's address (ClientAddr)
	// mustRecord: the exchange is audited even if it touches no PHI.
	mustRecord bool
	decision   policy.Decision
	plan       *routePlan
	// egress is the plan of an egress call's route; nil on ingress.
	// checked: its body went through SealEgress.
	egress  *egressPlan
	checked bool
	rec     audit.Record
	audited bool
	// opened is OpenResponse's body, lent from the pool until Close;
	// openedBody reads it.
	opened     []byte
	openedBody openedReader
	// sealed is SealRequest's body, given back once Close and the readers
	// of SealedBody have all let go. It is set once; closed says whether
	// Close let go of it.
	sealed *lent
	closed bool
	// upstart is when the request was forwarded; out is for the observer.
	upstart time.Time
	out     Outcome
	// fields and actions back rec's slices for the usual few entries.
	fields  [10]audit.Field
	actions [4]string
}

// Begin judges a request's head: capacity, canonical path and method,
// header and query hygiene, the route, the caller, the policy's decision
// and the channels PHI could slip through. It always returns an Exchange
// (close it when the request is done); a non-nil error is the refusal,
// which x.Refuse records and turns into the answer.
func (e *Engine) Begin(ctx context.Context, req *Request) (*Exchange, error) {
	x, err := e.begin(req, e.slots)
	if err != nil {
		return x, err
	}
	return x, x.judgeHead(ctx, req)
}

// begin starts an exchange: its record, the client, a capacity slot
// from slots.
func (e *Engine) begin(req *Request, slots chan struct{}) (*Exchange, error) {
	x := &Exchange{e: e, start: e.now(), method: req.Method, query: req.Query, rawPath: req.Path, rawQuery: req.Query}
	x.rec = audit.Record{
		RequestID: newRequestID(),
		Method:    req.Method,
		Fields:    x.fields[:0],
		Actions:   x.actions[:0],
	}
	x.rec.Policy = e.policyID
	if ua := req.Header.Get("User-Agent"); ua != "" {
		x.rec.UserAgent = audit.Text(ua, maxUserAgent)
	}
	if req.Peer.IsValid() {
		// Before the forwarding headers are stripped (sanitize).
		x.client = clientAddr(req.Peer.Addr().Unmap(), req.Header, e.pol.TrustedProxies)
		x.rec.ClientIP = x.client.String()
	}
	select {
	case slots <- struct{}{}:
		x.slot = slots
	default:
		return x, ErrBusy
	}
	return x, nil
}

// judgeTarget judges what every request is judged by, wherever it goes:
// one canonical path without a token in it, a known method (the method
// judged is the method forwarded), and header and query hygiene. It
// returns the parsed query.
func (x *Exchange) judgeTarget(req *Request) (url.Values, error) {
	path, err := canonicalize(req.Path)
	if err != nil {
		return nil, badRequest("%s: %v", errAmbiguousPath, err)
	}
	x.path = path
	if codec.HasTokenMarker(path.decoded) {
		return nil, codec.PlantedToken("the path")
	}
	method, ok := policy.CanonicalMethod(req.Method)
	if !ok {
		return nil, ErrMethod
	}
	x.method, x.rec.Method = method, method
	return sanitize(req.Header, req.Query, x.e.guarded)
}

func (x *Exchange) judgeHead(ctx context.Context, req *Request) error {
	e := x.e
	query, err := x.judgeTarget(req)
	if err != nil {
		return err
	}
	method, path := x.method, x.path

	route, params := e.pol.Match(method, path.decoded)
	if route != nil {
		x.rec.Route = route.Name
		x.out.Route = route
		x.rec.Path = route.Path.String() // else record names the path
		if e.hasher != nil {
			for _, p := range params {
				x.rec.Params = append(x.rec.Params, audit.Value{Name: p.Name, Value: e.hasher.Hash(p.Value)})
			}
		}
	}
	preq := policy.Request{
		Method:             method,
		Path:               path.decoded,
		Header:             req.Header.Values,
		FromTrustedGateway: e.fromTrustedGateway(req.Peer),
	}
	caller := (*identity.Caller)(nil) // for the record
	if e.pol.NeedsCaller(route) {
		preq.Caller, preq.CallerErr = e.identify(ctx, req.Header)
		caller = preq.Caller
	} else if (route == nil || route.Deny != "") && len(req.Header.Values("Authorization")) > 0 {
		// A refused request is recorded with who sent it, when a valid
		// token says; the token decides nothing here.
		caller, _ = e.identify(ctx, req.Header)
	}
	if caller != nil {
		x.rec.User, x.rec.Role = caller.User, caller.Role
		x.rec.Session = caller.Session
	}
	if e.pol.HasHIPAA() {
		org := e.pol.KnownOrg(route, params, caller)
		if err := e.checkPAT(req.Header, query, caller, org); err != nil {
			x.rec.Org = org
			return err
		}
	}
	dec, err := e.pol.Decide(route, params, preq)
	x.rec.Org = dec.Org
	if err != nil {
		if x.rec.Org == "" && caller != nil {
			x.rec.Org = caller.Org
		}
		return err
	}
	if err := e.checkSession(ctx, preq.Caller); err != nil {
		return err
	}
	x.decision = dec
	if e.pol.File.HIPAA.BreakGlassHeader != "" {
		req.Header.Del(e.pol.File.HIPAA.BreakGlassHeader) // phiguard's, never the app's
	}
	if dec.BreakGlass != "" {
		x.rec.AddAction(audit.ActionBreakGlass)
		x.rec.BreakGlass = dec.BreakGlass
	}
	if route != nil && (len(route.RecordRequest) > 0 || len(route.RecordResponse) > 0) {
		x.mustRecord = true
	}
	if in := dec.Integration; in != nil {
		x.rec.Integration, x.rec.Scope = in.ID, in.Scope
		if in.Risk == policy.RiskHigh {
			// Every allowed high-risk access is on the trail, PHI route or not.
			x.rec.AddAction(audit.ActionHighRisk)
			x.mustRecord = true
		}
	}
	var plan *routePlan
	if route != nil && route.HasFieldActions() {
		plan = &e.plans[route.Index]
	}
	if e.pol.HasQuerySearch() {
		if err := e.checkSearchParams(req.Header, query, path.decoded, plan); err != nil {
			return err
		}
	}
	if plan == nil {
		return nil
	}
	x.plan = plan
	if err := checkChannels(req); err != nil {
		return err
	}
	if err := checkQuery(query, x.plan.reqSels); err != nil {
		return err
	}
	if len(route.SearchRequest) > 0 && !dec.Reader {
		return errNotSearcher
	}
	if len(x.plan.query) > 0 {
		if x.query, err = x.sealQuery(ctx, req.Query); err != nil {
			return err
		}
	}
	if x.plan.decrypts {
		// phiguard reads the answer; a compressed one it could not.
		req.Header.Set("Accept-Encoding", "identity")
	}
	return nil
}

// cookieToken returns the value of the cookie name, the token of a
// browser session; "" when there is none. Two cookies of that name are
// refused: which one the app reads is up to the app.
func cookieToken(h http.Header, name string) (string, error) {
	var found []string
	for _, line := range h.Values("Cookie") {
		cookies, err := http.ParseCookie(line)
		if err != nil {
			continue // the app's cookies are the app's business
		}
		for _, c := range cookies {
			if c.Name == name {
				found = append(found, c.Value)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", refusal.New(refusal.Unauthenticated, "the request carries more than one %s cookie", name)
}

func (e *Engine) identify(ctx context.Context, h http.Header) (*identity.Caller, error) {
	if e.verifier == nil {
		return nil, errors.New("no identity provider is configured")
	}
	auth := h.Values("Authorization")
	if id := e.pol.File.Identity; len(auth) == 0 && id != nil && id.JWT != nil && id.JWT.Cookie != "" {
		tok, err := cookieToken(h, id.JWT.Cookie)
		if err != nil {
			return nil, err
		}
		if tok != "" {
			auth = []string{"Bearer " + tok}
		}
	}
	c, err := e.verifier.Verify(ctx, auth)
	if errors.Is(err, identity.ErrClaims) {
		// A genuine token that does not name one organization and a user.
		return nil, &refusal.Error{Kind: refusal.Forbidden, Reason: err.Error(), Detail: identity.ErrClaims}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (e *Engine) fromTrustedGateway(peer netip.AddrPort) bool {
	if !peer.IsValid() {
		return false
	}
	ip := peer.Addr().Unmap()
	for _, pfx := range e.pol.TrustedGateways {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// checkChannels refuses what phiguard cannot apply the policy inside.
func checkChannels(req *Request) error {
	if req.Header.Get("Upgrade") != "" || headerHasToken(req.Header, "Connection", "upgrade") {
		return badRequest("protocol upgrades are refused on routes that carry PHI")
	}
	if req.Trailers || len(req.Header.Values("Trailer")) > 0 {
		return badRequest("request trailers are refused on routes that carry PHI")
	}
	return nil
}

// checkQuery refuses a query parameter the app could read as a field the
// route encrypts, or as a search term it takes in the body: many
// frameworks merge the query into the body's parameters, so it would be
// stored, or searched for, in plaintext.
func checkQuery(query url.Values, sels []policy.Selector) error {
	if len(sels) == 0 {
		return nil
	}
	for name := range query {
		if codec.FormNameTooDeep(name) {
			return badRequest("a query parameter name nests deeper than %d levels", codec.MaxFormNameNesting)
		}
		if codec.QueryNameSelected(name, sels) {
			return badRequest("a query parameter names a field this route encrypts or a search term it takes in the body; send it in the body")
		}
	}
	return nil
}

// Close releases the exchange's capacity slot and the buffers it lent: a
// body SealRequest or OpenResponse returned must not be used afterwards
// (readers from SealedBody keep theirs until they are closed). It is safe
// to call twice.
func (x *Exchange) Close() {
	observe := !x.closed && x.e.observer != nil
	if x.slot != nil {
		<-x.slot
		x.slot = nil
	}
	if x.opened != nil {
		putBuffer(x.opened)
		x.opened = nil
		x.openedBody.r.Reset(nil)
	}
	if x.sealed != nil && !x.closed {
		x.sealed.release()
	}
	x.closed = true
	if observe {
		x.observe() // last: whatever the observer does, the slot and buffers are back
	}
}

func (x *Exchange) observe() {
	o := &x.out
	o.Decision, o.Status, o.Fields = x.rec.Decision, x.rec.Status, x.rec.Fields
	o.Duration = x.e.now().Sub(x.start)
	x.e.observer.Observe(o)
}

// ForwardStarted notes that the request is being sent to the app.
func (x *Exchange) ForwardStarted() { x.upstart = x.e.now() }

// ForwardAnswered notes that the app's response headers arrived.
func (x *Exchange) ForwardAnswered() {
	if !x.upstart.IsZero() {
		x.out.Upstream = x.e.now().Sub(x.upstart)
	}
}

// RequestID identifies the request in the audit trail, logs and answers.
func (x *Exchange) RequestID() string { return x.rec.RequestID }

// ClientAddr is the client's address: the peer's, or behind trusted
// proxies the one their forwarding headers name; invalid when unknown.
func (x *Exchange) ClientAddr() netip.Addr { return x.client }

// Method is the method judged, to be forwarded.
func (x *Exchange) Method() string { return x.method }

// Path is the canonical path, percent-decoded, as the policy matched it.
func (x *Exchange) Path() string { return x.path.decoded }

// EscapedPath is the canonical path as it is forwarded.
func (x *Exchange) EscapedPath() string { return x.path.escaped }

// TouchesPHI reports whether the request's route has field actions: its
// bodies go through SealRequest and OpenResponse and it is audited.
func (x *Exchange) TouchesPHI() bool { return x.plan != nil }

// SetUpstreamHeaders sets the headers phiguard tells the app: the request
// id and the caller it verified.
func (x *Exchange) SetUpstreamHeaders(h http.Header) {
	// One backing array for the values; each header's slice is capped at
	// its own element, so an append elsewhere never writes into another.
	v := [...]string{x.rec.RequestID, x.decision.Org, x.rec.User, x.rec.Role}
	for i, name := range [...]string{headerRequestID, headerOrg, headerUser, headerRole} {
		if v[i] != "" {
			h[name] = v[i : i+1 : i+1]
		}
	}
}

// Intend writes the intent record of an exchange that touches PHI (or
// must be recorded), once its request is sealed and before the adapter
// forwards it: phase intent, with the caller, the route and the fields
// sealed. A non-nil error means it was not written within the audit
// trail's bound: the adapter must refuse (x.Refuse) and never call the
// app, so that no PHI is written or read without a record. The outcome
// record follows (Allow, Refuse).
func (x *Exchange) Intend(ctx context.Context) error {
	if x.plan != nil && x.plan.sig != nil && !x.verified {
		return errSignatureInvalid // a webhook without a body to check
	}
	if x.egress != nil && x.egress.rule.ConsentTo != nil && !x.checked {
		return badRequest("this route sends messages: a call without a body has no recipient whose consent can be checked")
	}
	if x.plan == nil && !x.mustRecord {
		return nil
	}
	x.rec.Phase, x.rec.Decision = audit.PhaseIntent, audit.DecisionAllow
	err := x.record(ctx)
	x.rec.Phase, x.audited = "", false
	return err
}

// Allow records the exchange as allowed, answered with status. Routes
// without field actions are not audited. A non-nil error means the record
// was not written: the adapter must refuse (x.Refuse) instead of passing
// the answer on.
func (x *Exchange) Allow(ctx context.Context, status int) error {
	x.rec.Decision = audit.DecisionAllow
	x.rec.Status = status
	if x.plan == nil && !x.mustRecord {
		return nil
	}
	return x.record(ctx)
}

// Refuse records a refusal, for err from any step, and returns what the
// client is told. If the record cannot be written, the answer is the audit
// refusal. A refusal of kind refusal.ClientGone gets no answer.
func (x *Exchange) Refuse(ctx context.Context, err error) *refusal.Error {
	ref := classify(err)
	if ref.Kind == refusal.Internal {
		x.e.log.Error("request failed", "request_id", x.rec.RequestID, "err_kind", ErrorKind(err))
	}
	x.rec.Decision = decisionOf(ref.Kind)
	x.rec.Reason = ref.Reason
	x.rec.Status = Status(ref.Kind)
	x.out.Refusal = ref.ClientCode()
	if !ref.Kind.Failure() {
		x.rec.AddAction(audit.ActionDeny)
	}
	if ref.Kind != refusal.AuditUnavailable && !x.audited {
		if aerr := x.record(ctx); aerr != nil {
			ref = errAudit
			x.rec.Decision, x.rec.Status = decisionOf(ref.Kind), Status(ref.Kind)
			x.out.Refusal = ref.Kind.Code()
		}
	}
	return ref
}

func (x *Exchange) record(ctx context.Context) error {
	x.audited = true
	if x.rec.Path == "" {
		// No route took the request: its path, hashed once, and only now.
		p := x.rawPath
		if x.path.decoded != "" {
			p = x.path.decoded
		}
		x.rec.Path = x.e.pathRef(p)
	}
	now := x.e.now()
	x.rec.Time = now.UTC()
	x.rec.LatencyMS = float64(now.Sub(x.start).Microseconds()) / 1000
	return x.e.auditor.Record(ctx, &x.rec)
}

// maxUserAgent bounds a record's user_agent, in characters.
const maxUserAgent = 200

// pathRef is what a record says of a path no route took: its keyed hash,
// or "-" without a hash key. Paths carry identifiers.
func (e *Engine) pathRef(path string) string {
	if e.hasher == nil {
		return "-"
	}
	return e.hasher.Hash(path)
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

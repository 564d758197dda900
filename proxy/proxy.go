package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/liblog"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/proxy/codec"
	"github.com/phiguard/phiguard/refusal"
)

// Keys seals and opens field values for an organization.
type Keys interface {
	// AppendEncrypt appends the token sealing plaintext to dst; a token's
	// characters need no escaping in JSON, a form or a URL.
	AppendEncrypt(ctx context.Context, dst []byte, org string, plaintext []byte) ([]byte, error)
	Decrypt(ctx context.Context, org string, token []byte) ([]byte, error)
}

// Verifier identifies the caller from the Authorization header values.
type Verifier interface {
	Verify(authorization []string) (*identity.Caller, error)
}

// Auditor records what happened to a request.
type Auditor interface {
	Record(ctx context.Context, r *audit.Record) error
}

// Options configure a Proxy. Policy, Keys (when a route has field actions)
// and Auditor are required.
type Options struct {
	Policy *policy.Policy
	Keys   Keys
	// Verifier identifies callers; nil refuses every route that needs one.
	Verifier Verifier
	Auditor  Auditor
	// Transport reaches the app; nil means a transport built from the
	// policy's ingress settings.
	Transport http.RoundTripper
	// Log receives operational messages, never PHI; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Proxy is the ingress pipeline. It is an http.Handler.
type Proxy struct {
	pol      *policy.Policy
	keys     Keys
	verifier Verifier
	auditor  Auditor
	log      *slog.Logger
	now      func() time.Time
	rp       *httputil.ReverseProxy
	plans    []routePlan // by route index
	mask     []byte      // JSON string of the policy's mask
	// slots holds one token per request in flight (max_concurrent_requests).
	slots chan struct{}
	// guarded are the headers phiguard judges or sets (guardedHeaders).
	guarded map[string]bool
}

// routePlan is what a route needs at request time, compiled once.
type routePlan struct {
	encJSON *codec.Matcher
	encForm bool
	dec     *codec.Matcher
	// decrypts: the route's responses may carry plaintext PHI.
	decrypts bool
}

// New builds the pipeline for a policy.
func New(o Options) (*Proxy, error) {
	if o.Policy == nil || o.Auditor == nil {
		return nil, errors.New("proxy: Policy and Auditor are required")
	}
	p := &Proxy{pol: o.Policy, keys: o.Keys, verifier: o.Verifier, auditor: o.Auditor, log: o.Log, now: o.Now,
		slots: make(chan struct{}, max(o.Policy.File.Ingress.MaxConcurrentRequests, 1)), guarded: guardedHeaders(o.Policy)}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	mask, err := jsontext.AppendQuote(nil, o.Policy.File.Mask)
	if err != nil {
		return nil, fmt.Errorf("proxy: mask: %w", err)
	}
	p.mask = mask
	for _, r := range o.Policy.Routes {
		if r.HasFieldActions() && o.Keys == nil {
			return nil, fmt.Errorf("proxy: route %s has field actions but no keys were given", r.Name)
		}
		p.plans = append(p.plans, routePlan{
			encJSON:  codec.NewRequestMatcher(r.EncryptRequest, methodOverrideField),
			encForm:  codec.HasForm(r.EncryptRequest),
			dec:      codec.NewMatcher(r.DecryptResponse),
			decrypts: len(r.DecryptResponse) > 0,
		})
	}
	tr := o.Transport
	if tr == nil {
		tr = NewTransport(o.Policy)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      tr,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       liblog.New(p.log, "net/http/httputil"),
		BufferPool:     copyBuffers{},
	}
	return p, nil
}

// NewTransport reaches the app as the policy's ingress settings say:
// HTTP/1.1, or HTTP/2 with prior knowledge when upstream_h2c is set;
// directly, or through upstream_proxy when the policy names one. Proxy
// settings in the environment are never used: bearer tokens and PHI
// would follow them.
func NewTransport(pol *policy.Policy) *http.Transport {
	in := pol.File.Ingress
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	if pol.UpstreamProxy != nil {
		t.Proxy = http.ProxyURL(pol.UpstreamProxy)
	}
	t.DisableCompression = true // phiguard asks for and decodes encodings itself
	// Keep a connection per request in flight: Go's default of 2 idle
	// connections per host turns a busy sidecar into a connection churner.
	t.MaxIdleConns = in.UpstreamMaxIdleConns
	t.MaxIdleConnsPerHost = in.UpstreamMaxIdleConns
	t.ResponseHeaderTimeout = in.UpstreamTimeout
	if in.UpstreamH2C {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return t
}

// exchange is the per-request state shared by ServeHTTP, Rewrite,
// ModifyResponse and ErrorHandler through the request context.
type exchange struct {
	start    time.Time
	path     canonicalPath
	decision policy.Decision
	plan     *routePlan
	rec      audit.Record
	audited  bool
	// decrypted: the response carries plaintext PHI.
	decrypted bool
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// ServeHTTP runs the pipeline: request id → capacity → canonical request
// → match → identify → decide → check channels → transform → forward.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw := requestPath(r)
	ex := &exchange{start: p.now()}
	ex.rec = audit.Record{
		RequestID: newRequestID(),
		ClientIP:  clientIP(r),
		Method:    r.Method,
		Path:      raw,
	}
	w.Header().Set("X-Request-Id", ex.rec.RequestID)

	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	default:
		p.refuse(w, r, ex, errBusy)
		return
	}
	path, err := canonicalize(raw)
	if err != nil {
		p.refuse(w, r, ex, badRequest("%s: %v", errAmbiguousPath, err))
		return
	}
	ex.path = path
	ex.rec.Path = path.decoded
	if codec.HasTokenMarker(path.decoded) {
		p.refuse(w, r, ex, codec.PlantedToken("the path"))
		return
	}
	method, ok := policy.CanonicalMethod(r.Method)
	if !ok {
		p.refuse(w, r, ex, errMethod)
		return
	}
	// The method judged is the method forwarded.
	r.Method, ex.rec.Method = method, method
	query, err := sanitizeHeaders(r, p.guarded)
	if err != nil {
		p.refuse(w, r, ex, err)
		return
	}

	route, params := p.pol.Match(r.Method, path.decoded)
	if route != nil {
		ex.rec.Route = route.Name
	}
	req := policy.Request{
		Method:             r.Method,
		Path:               path.decoded,
		Header:             r.Header.Values,
		FromTrustedGateway: p.fromTrustedGateway(r),
	}
	if p.pol.NeedsCaller(route) {
		req.Caller, req.CallerErr = p.identify(r)
		if req.Caller != nil {
			ex.rec.User, ex.rec.Role = req.Caller.User, req.Caller.Role
		}
	}
	dec, err := p.pol.Decide(route, params, req)
	ex.rec.Org = dec.Org
	if err != nil {
		if ex.rec.Org == "" && req.Caller != nil {
			ex.rec.Org = req.Caller.Org
		}
		p.refuse(w, r, ex, err)
		return
	}
	ex.decision = dec
	if route != nil && route.HasFieldActions() {
		ex.plan = &p.plans[route.Index]
		if err := p.checkChannels(r); err != nil {
			p.refuse(w, r, ex, err)
			return
		}
		if err := checkQuery(query, route); err != nil {
			p.refuse(w, r, ex, err)
			return
		}
		if err := p.encryptRequest(r, ex); err != nil {
			p.refuse(w, r, ex, err)
			return
		}
		if len(route.DecryptResponse) > 0 {
			r.Header.Set("Accept-Encoding", "identity")
		}
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
}

func (p *Proxy) identify(r *http.Request) (*identity.Caller, error) {
	if p.verifier == nil {
		return nil, errors.New("no identity provider is configured")
	}
	c, err := p.verifier.Verify(r.Header.Values("Authorization"))
	if errors.Is(err, identity.ErrClaims) {
		// A genuine token that does not name one organization and a user.
		return nil, &refusal.Error{Kind: refusal.Forbidden, Reason: err.Error(), Detail: identity.ErrClaims}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (p *Proxy) fromTrustedGateway(r *http.Request) bool {
	if len(p.pol.TrustedGateways) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, pfx := range p.pol.TrustedGateways {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// checkChannels refuses what phiguard cannot apply the policy inside.
func (p *Proxy) checkChannels(r *http.Request) error {
	if r.Header.Get("Upgrade") != "" || headerHasToken(r.Header, "Connection", "upgrade") {
		return badRequest("protocol upgrades are refused on routes that carry PHI")
	}
	if len(r.Trailer) > 0 || len(r.Header.Values("Trailer")) > 0 {
		return badRequest("request trailers are refused on routes that carry PHI")
	}
	return nil
}

// checkQuery refuses a query parameter the app could read as a field the
// route encrypts: many frameworks merge the query into the body's
// parameters, so it would be stored in plaintext.
func checkQuery(query url.Values, route *policy.Route) error {
	if len(route.EncryptRequest) == 0 {
		return nil
	}
	for name := range query {
		if codec.FormNameTooDeep(name) {
			return badRequest("a query parameter name nests deeper than %d levels", codec.MaxFormNameNesting)
		}
		if codec.QueryNameSelected(name, route.EncryptRequest) {
			return badRequest("a query parameter names a field this route encrypts; send it in the body")
		}
	}
	return nil
}

// encryptRequest reads the request body of a route with field actions,
// judges it (one meaning, no override fields, no planted tokens) and
// replaces the selected fields with tokens. A route that only decrypts
// still has its request body judged.
func (p *Proxy) encryptRequest(r *http.Request, ex *exchange) error {
	route := ex.decision.Route
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	kind, why, err := requestMediaKind(r.Header)
	if err != nil {
		return refusal.New(refusal.UnsupportedMedia, "%s", why)
	}
	gz, ok := contentEncoding(r.Header)
	if !ok {
		return refusal.New(refusal.UnsupportedEncoding, "only gzip or no Content-Encoding is read")
	}
	if len(route.EncryptRequest) > 0 {
		switch {
		case kind == bodyJSON && ex.plan.encJSON.Empty():
			return refusal.New(refusal.UnsupportedMedia, "this route takes form bodies")
		case kind == bodyForm && !ex.plan.encForm:
			return refusal.New(refusal.UnsupportedMedia, "this route takes JSON bodies")
		}
	}
	in := p.pol.File.Ingress
	body, err := readBody(r.Body, r.ContentLength, gz, in.MaxBodyBytes)
	r.Body.Close()
	if err != nil {
		return err
	}
	var out []byte
	if kind == bodyJSON {
		out, err = p.sealJSON(r.Context(), body, ex)
	} else {
		out, err = p.sealForm(r.Context(), body, ex)
	}
	if err != nil {
		return err
	}
	if int64(len(out)) > in.MaxResponseBytes {
		// The app would store what phiguard could never hand back.
		return errTooLargeSealed
	}
	r.Body, r.ContentLength = rewrittenBody(r.Header, out)
	r.TransferEncoding = nil
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(out)), nil }
	return nil
}

func (p *Proxy) sealJSON(ctx context.Context, body []byte, ex *exchange) ([]byte, error) {
	route, org := ex.decision.Route, ex.decision.Org
	out, _, err := codec.RewriteJSON(body, ex.plan.encJSON, func(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
		dst = append(dst, '"')
		dst, err := p.keys.AppendEncrypt(ctx, dst, org, v)
		if err != nil {
			return dst, p.keyFailure(err)
		}
		ex.rec.AddField(audit.ActionEncrypt, route.EncryptRequest[sel].Text, "", 1)
		return append(dst, '"'), nil
	})
	return out, err
}

func (p *Proxy) sealForm(ctx context.Context, body []byte, ex *exchange) ([]byte, error) {
	route, org := ex.decision.Route, ex.decision.Org
	out, _, err := codec.RewriteForm(body, route.EncryptRequest, func(sel int, v string) (string, error) {
		pt, err := jsontext.AppendQuote(nil, v)
		if err != nil {
			return "", err
		}
		tok, err := p.keys.AppendEncrypt(ctx, nil, org, pt)
		if err != nil {
			return "", p.keyFailure(err)
		}
		ex.rec.AddField(audit.ActionEncrypt, route.EncryptRequest[sel].Text, "", 1)
		return string(tok), nil
	}, methodOverrideParam)
	return out, err
}

// keyFailure logs a key error (never a value) and returns the 503 refusal.
func (p *Proxy) keyFailure(err error) error {
	p.log.Error("key operation failed", "err", err)
	return errKeys
}

// rewrite builds the outbound request: the app's URL with the canonical
// path, fresh forwarding headers and phiguard's identity headers.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeOf(pr.In.Context())
	up := p.pol.Upstream
	pr.Out.URL.Scheme = up.Scheme
	pr.Out.URL.Host = up.Host
	base := strings.TrimSuffix(up.EscapedPath(), "/")
	pr.Out.URL.RawPath = base + ex.path.escaped
	pr.Out.URL.Path = strings.TrimSuffix(up.Path, "/") + ex.path.decoded
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = ""
	pr.SetXForwarded()
	h := pr.Out.Header
	h.Set(headerRequestID, ex.rec.RequestID)
	if ex.decision.Org != "" {
		h.Set(headerOrg, ex.decision.Org)
	}
	if ex.rec.User != "" {
		h.Set(headerUser, ex.rec.User)
	}
	if ex.rec.Role != "" {
		h.Set(headerRole, ex.rec.Role)
	}
}

// modifyResponse decrypts or masks response fields on routes with field
// actions, then writes the audit record. Any failure turns into an error
// page through errorHandler: the app's body is never passed on unread.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	ex := exchangeOf(resp.Request.Context())
	if ex == nil || ex.plan == nil {
		return nil
	}
	ex.rec.UpstreamStatus = resp.StatusCode
	if !ex.plan.dec.Empty() {
		if err := p.decryptResponse(resp, ex); err != nil {
			return err
		}
	}
	ex.rec.Decision = audit.DecisionAllow
	ex.rec.Status = resp.StatusCode
	if ex.plan.decrypts {
		// Plaintext PHI, now or on the next call: no cache may keep it.
		forbidCaching(resp.Header)
	}
	return p.record(resp.Request.Context(), ex)
}

func (p *Proxy) decryptResponse(resp *http.Response, ex *exchange) error {
	if resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 ||
		resp.Request.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return nil
	}
	gz, ok := contentEncoding(resp.Header)
	if !ok {
		return errUpstreamBody
	}
	body, err := readBody(resp.Body, resp.ContentLength, gz, p.pol.File.Ingress.MaxResponseBytes)
	resp.Body.Close()
	switch {
	case errors.Is(err, errTooLarge):
		return errUpstreamLarge
	case err != nil:
		return errUpstreamBody
	}
	if len(body) > 0 {
		if kind, _, err := mediaKind(resp.Header); err != nil || kind != bodyJSON {
			return errUpstreamBody
		}
		route := ex.decision.Route
		ctx := resp.Request.Context()
		body, _, err = codec.RewriteJSON(body, ex.plan.dec, func(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
			return p.reveal(ctx, dst, ex, route.DecryptResponse[sel].Text, v)
		})
		if errors.Is(err, refusal.BadRequest) {
			return errUpstreamBody // the app's JSON, not the client's
		}
		if err != nil {
			return err
		}
	}
	resp.Body, resp.ContentLength = rewrittenBody(resp.Header, body)
	resp.TransferEncoding = nil
	return nil
}

// rewrittenBody frames a body phiguard rewrote: decoded (no
// Content-Encoding) and of a known length.
func rewrittenBody(h http.Header, body []byte) (io.ReadCloser, int64) {
	h.Del("Content-Encoding")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return io.NopCloser(bytes.NewReader(body)), int64(len(body))
}

// Reasons a value is masked, as audit records name them.
const (
	maskNotReader   = "the caller's role may not read it"
	maskOtherOrg    = "token of another organization"
	maskUndecodable = "token does not decrypt"
	maskNotToken    = "value is not a phiguard token"
)

// reveal appends to dst what the caller may see of one selected response
// value: the plaintext for a reader, the mask for everyone else and for
// every token that does not open.
func (p *Proxy) reveal(ctx context.Context, dst []byte, ex *exchange, path string, v jsontext.Value) ([]byte, error) {
	if v.Kind() == 'n' {
		return append(dst, v...), nil // null holds nothing to protect
	}
	if !ex.decision.Reader {
		ex.rec.AddField(audit.ActionMask, path, maskNotReader, 1)
		return append(dst, p.mask...), nil
	}
	tok, ok := tokenText(v)
	if !ok {
		// Stored before phiguard or by a path it does not cover: never decrypted, never trusted.
		ex.rec.AddField(audit.ActionMask, path, maskNotToken, 1)
		return append(dst, p.mask...), nil
	}
	pt, err := p.keys.Decrypt(ctx, ex.decision.Org, tok)
	switch {
	case err == nil && jsontext.Value(pt).IsValid():
		ex.rec.AddField(audit.ActionDecrypt, path, "", 1)
		ex.decrypted = true
		return append(dst, pt...), nil
	case errors.Is(err, keys.ErrOrgMismatch):
		ex.rec.AddField(audit.ActionMask, path, maskOtherOrg, 1)
		return append(dst, p.mask...), nil
	case err == nil, errors.Is(err, keys.ErrDecrypt), errors.Is(err, keys.ErrNotToken):
		ex.rec.AddField(audit.ActionMask, path, maskUndecodable, 1)
		return append(dst, p.mask...), nil
	default:
		return dst, p.keyFailure(err)
	}
}

// tokenText returns the text of a JSON string that holds a token. A token
// needs no escapes, so the quoted bytes are used as they are unless the
// app escaped some character.
func tokenText(v jsontext.Value) ([]byte, bool) {
	if v.Kind() != '"' {
		return nil, false
	}
	s := []byte(v[1 : len(v)-1])
	if bytes.IndexByte(s, '\\') >= 0 {
		u, err := jsontext.AppendUnquote(nil, v)
		if err != nil {
			return nil, false
		}
		s = u
	}
	return s, keys.LooksLikeToken(s)
}

// errorHandler answers for a failed upstream call or a failed response
// transform, with a JSON error and, for PHI routes, an audit record.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeOf(r.Context())
	ref := classify(err)
	if _, known := refusal.As(err); !known && !errors.Is(err, audit.ErrUnavailable) {
		if errors.Is(err, context.Canceled) {
			ref = errClientGone
		} else {
			p.log.Warn("upstream call failed", "request_id", ex.rec.RequestID, "err_kind", errorKind(err))
			ref = errUpstream
		}
	}
	p.refuse(w, r, ex, ref)
}

// refuse answers the client itself and records the refusal.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, ex *exchange, err error) {
	ref := classify(err)
	if ref.Kind == refusal.Internal {
		p.log.Error("request failed", "request_id", ex.rec.RequestID, "err_kind", errorKind(err))
	}
	ex.rec.Decision = decisionOf(ref.Kind)
	ex.rec.Reason = ref.Reason
	ex.rec.Status = httpStatus(ref.Kind)
	if !ref.Kind.Failure() {
		ex.rec.AddAction(audit.ActionDeny)
	}
	if ref.Kind != refusal.AuditUnavailable && !ex.audited {
		if aerr := p.record(r.Context(), ex); aerr != nil {
			ref = errAudit
		}
	}
	if ref.Kind == refusal.ClientGone {
		return
	}
	writeError(w, ref, ex.rec.RequestID)
}

func (p *Proxy) record(ctx context.Context, ex *exchange) error {
	ex.audited = true
	ex.rec.Time = p.now().UTC()
	ex.rec.LatencyMS = float64(p.now().Sub(ex.start).Microseconds()) / 1000
	return p.auditor.Record(ctx, &ex.rec)
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

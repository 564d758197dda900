package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/consent"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/internal/liblog"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
	"github.com/phiguard/phiguard/session"
)

// Options configure a Proxy. Policy, Keys (when a route has field actions)
// and Auditor are required.
type Options struct {
	Policy *policy.Policy
	Keys   engine.Keys
	// Verifier identifies callers; nil refuses every route that needs one.
	Verifier engine.Verifier
	Auditor  engine.Auditor
	// Observer is told how each exchange ended; nil tells no one.
	Observer engine.Observer
	// Transport reaches the app; nil means a transport built from the
	// policy's ingress settings.
	Transport http.RoundTripper
	// Log receives operational messages, never PHI; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sessions keeps session state (engine.Options.Sessions).
	Sessions session.Store
	// Consent is the SMS consent registry (engine.Options.Consent).
	Consent consent.Store
	// Hasher keyed-hashes path identifiers in records (engine.Options.Hasher).
	Hasher *audit.Hasher
}

// Proxy is the HTTP ingress: an adapter that hands each request to the
// engine and forwards what the engine allows. It is an http.Handler.
type Proxy struct {
	// eng is the engine in force: a request keeps the one it began with.
	eng atomic.Pointer[engine.Engine]
	up  *url.URL // the app; fixed for the proxy's life
	log *slog.Logger
	rp  *httputil.ReverseProxy
}

// New builds the ingress for a policy.
func New(o Options) (*Proxy, error) {
	eng, err := engine.New(engine.Options{Policy: o.Policy, Keys: o.Keys, Verifier: o.Verifier, Auditor: o.Auditor, Observer: o.Observer, Log: o.Log, Now: o.Now, Sessions: o.Sessions, Consent: o.Consent, Hasher: o.Hasher})
	if err != nil {
		return nil, err
	}
	p := &Proxy{up: o.Policy.Upstream, log: o.Log}
	p.eng.Store(eng)
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
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

// Engine returns the engine in force.
func (p *Proxy) Engine() *engine.Engine { return p.eng.Load() }

// SetEngine puts e in force for the requests that begin after it returns;
// requests in flight finish on the engine they began with. e should come
// from Engine().Successor, so that they share the capacity slots. The app's
// address and the transport to it stay as they are.
func (p *Proxy) SetEngine(e *engine.Engine) { p.eng.Store(e) }

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *engine.Exchange {
	x, _ := ctx.Value(exchangeKey{}).(*engine.Exchange)
	return x
}

// ServeHTTP runs the pipeline: the engine judges the head (request id →
// capacity → canonical request → match → identify → decide → channels),
// seals the body, then the request is forwarded; the response is opened
// and audited in modifyResponse.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	x, err := p.eng.Load().Begin(ctx, &engine.Request{
		Method:   r.Method,
		Path:     requestPath(r),
		Query:    r.URL.RawQuery,
		Header:   r.Header,
		Trailers: len(r.Trailer) > 0,
		Peer:     peer(r),
	})
	defer x.Close()
	w.Header().Set("X-Request-Id", x.RequestID())
	if err != nil {
		refuse(w, r, x, err)
		return
	}
	r.Method = x.Method()
	body := passBody
	if x.TouchesPHI() {
		body = sealBody
	}
	forward(w, r, x, p.rp, body)
}

// bodyRule says what forward does with a request's body.
type bodyRule uint8

const (
	passBody   bodyRule = iota // forwarded as it is
	sealBody                   // Exchange.SealRequest
	egressBody                 // Exchange.SealEgress
)

// forward rewrites r's body by rule, records the intent, and hands r to
// rp; a failure of either is refused, and nothing is forwarded.
func forward(w http.ResponseWriter, r *http.Request, x *engine.Exchange, rp *httputil.ReverseProxy, rule bodyRule) {
	ctx := r.Context()
	if rule != passBody && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		var body []byte
		var err error
		if rule == sealBody {
			body, err = x.SealRequest(ctx, r.Header, r.Body, r.ContentLength)
		} else {
			body, err = x.SealEgress(ctx, r.Header, r.Body, r.ContentLength)
		}
		r.Body.Close()
		if err != nil {
			refuse(w, r, x, err)
			return
		}
		// The rewritten body is lent by the exchange. The reverse proxy
		// never closes the body it forwards, and stops every read of it
		// before ServeHTTP returns; closing the reader after that (defers
		// run last in, first out: before the caller's x.Close) waits for a
		// read in flight and lets the buffer go back to the pool. A retry's
		// reader belongs to the transport, which closes it.
		sealed := x.SealedBody()
		defer sealed.Close()
		r.Body, r.ContentLength = sealed, int64(len(body))
		r.TransferEncoding = nil
		r.GetBody = func() (io.ReadCloser, error) { return x.SealedBody(), nil }
	}
	// Record before forwarding: no record, no call.
	if err := x.Intend(ctx); err != nil {
		refuse(w, r, x, err)
		return
	}
	rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, exchangeKey{}, x)))
}

// requestPath returns the path exactly as the client sent it, escapes included.
func requestPath(r *http.Request) string {
	if uri := r.RequestURI; strings.HasPrefix(uri, "/") {
		p, _, _ := strings.Cut(uri, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// peer parses the connection's remote address; the zero value when it is
// not an IP address and port.
func peer(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return ap
}

// rewrite builds the outbound request: the app's URL with the canonical
// path, fresh forwarding headers and phiguard's identity headers.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	x.ForwardStarted()
	up := p.up
	pr.Out.URL.Scheme = up.Scheme
	pr.Out.URL.Host = up.Host
	pr.Out.URL.RawPath = strings.TrimSuffix(up.EscapedPath(), "/") + x.EscapedPath()
	pr.Out.URL.Path = strings.TrimSuffix(up.Path, "/") + x.Path()
	pr.Out.URL.RawQuery = x.Query()
	pr.Out.Host = ""
	pr.SetXForwarded()
	if c := x.ClientAddr(); c.IsValid() && c != peer(pr.In).Addr().Unmap() {
		// Behind trusted proxies: the app learns the client they named.
		pr.Out.Header.Set("X-Forwarded-For", c.String()+", "+peer(pr.In).Addr().Unmap().String())
	}
	x.SetUpstreamHeaders(pr.Out.Header)
}

// modifyResponse hands the app's answer on a route with field actions to
// the engine (decrypt or mask, forbid caching), then writes the audit
// record. Any failure turns into an error page through errorHandler: the
// app's body is never passed on unread.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	ctx := resp.Request.Context()
	x := exchangeOf(ctx)
	if x == nil {
		return nil
	}
	x.ForwardAnswered()
	if !x.TouchesPHI() {
		return x.Allow(ctx, resp.StatusCode) // counted, not audited
	}
	return answer(resp, x, x.OpenResponse)
}

// answer hands resp's body to the engine's transform (OpenResponse on
// ingress, SealAnswer on egress), lends what it returns as the new body,
// and records the outcome.
func answer(resp *http.Response, x *engine.Exchange, transform func(context.Context, int, http.Header, io.Reader, int64) ([]byte, bool, error)) error {
	ctx := resp.Request.Context()
	var body io.Reader
	if resp.Body != nil && resp.Body != http.NoBody {
		body = resp.Body
	}
	out, replaced, err := transform(ctx, resp.StatusCode, resp.Header, body, resp.ContentLength)
	if err != nil {
		return err
	}
	if replaced {
		lendBody(resp, x, out)
	}
	return x.Allow(ctx, resp.StatusCode)
}

// errorHandler answers for a failed upstream call or a failed response
// transform, with a JSON error and, for PHI routes, an audit record.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r.Context())
	refuse(w, r, x, callFailure(p.log, x, err, "upstream call failed", engine.ErrUpstream))
}

// callFailure is the refusal for an error of the reverse proxy: a
// refusal or an audit failure as it is, a client that went away, or, for
// anything else (a connection refused, a timeout, a bad certificate),
// unreachable, logged by its kind alone.
func callFailure(log *slog.Logger, x *engine.Exchange, err error, msg string, unreachable error) error {
	if _, known := refusal.As(err); known || errors.Is(err, audit.ErrUnavailable) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return engine.ErrClientGone
	}
	log.Warn(msg, "request_id", x.RequestID(), "err_kind", engine.ErrorKind(err))
	return unreachable
}

// refuse answers the client itself, once the engine has recorded the refusal.
func refuse(w http.ResponseWriter, r *http.Request, x *engine.Exchange, err error) {
	ref := x.Refuse(r.Context(), err)
	if ref.Kind == refusal.ClientGone {
		return
	}
	writeError(w, ref, x.RequestID())
}

// lendBody makes out, the exchange's rewritten answer (lent until
// x.Close, which ServeHTTP defers until the reverse proxy has copied it),
// resp's body.
func lendBody(resp *http.Response, x *engine.Exchange, out []byte) {
	resp.Body.Close()
	resp.Body, resp.ContentLength = x.OpenedBody(), int64(len(out))
	resp.TransferEncoding = nil
}

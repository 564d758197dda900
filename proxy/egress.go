package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"os"

	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/internal/liblog"
	"github.com/phiguard/phiguard/policy"
)

// EgressOptions configure an Egress. Engine is required.
type EgressOptions struct {
	// Engine returns the engine in force (Proxy.Engine): egress calls are
	// judged by the same policy, capacity slots and audit trail as the
	// requests the app answers, and follow its reloads.
	Engine func() *engine.Engine
	// Transport reaches the vendors; nil means NewEgressTransport of the
	// engine's policy.
	Transport http.RoundTripper
	// Log receives operational messages, never PHI; nil discards them.
	Log *slog.Logger
}

// Egress is the listener the app's outbound vendor calls go through: an
// adapter that hands each call to the engine (BeginEgress, SealEgress)
// and sends what the engine allows to the vendor over TLS. The app
// speaks plain HTTP to it, either as to a forward proxy (an absolute
// URL: HTTP_PROXY with http:// vendor URLs) or to its address with the
// vendor's name in the Host header. It is an http.Handler.
type Egress struct {
	engine func() *engine.Engine
	log    *slog.Logger
	rp     *httputil.ReverseProxy
}

// NewEgress builds the egress listener's handler.
func NewEgress(o EgressOptions) (*Egress, error) {
	if o.Engine == nil {
		return nil, errors.New("proxy: egress needs an engine")
	}
	g := &Egress{engine: o.Engine, log: o.Log}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	tr := o.Transport
	if tr == nil {
		t, err := NewEgressTransport(o.Engine().Policy())
		if err != nil {
			return nil, err
		}
		tr = t
	}
	g.rp = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      tr,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.errorHandler,
		ErrorLog:       liblog.New(g.log, "net/http/httputil"),
		BufferPool:     copyBuffers{},
	}
	return g, nil
}

// NewEgressTransport reaches vendors over TLS 1.2 or later, their
// certificates checked against the system's roots or egress.ca_file.
// Proxy settings in the environment are never used: PHI would follow them.
func NewEgressTransport(pol *policy.Policy) (*http.Transport, error) {
	eg := pol.File.Egress
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.ResponseHeaderTimeout = eg.UpstreamTimeout
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if eg.CAFile != "" {
		pem, err := os.ReadFile(eg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("egress.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("egress.ca_file: %s holds no PEM certificate", eg.CAFile)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}

// ServeHTTP runs an egress call through the engine: judge the head and
// find the route by destination → rewrite the body for the vendor →
// record the intent → call the vendor → record the outcome.
func (g *Egress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	x, err := g.engine().BeginEgress(ctx, &engine.Request{
		Method:   r.Method,
		Path:     requestPath(r),
		Query:    r.URL.RawQuery,
		Header:   r.Header,
		Trailers: len(r.Trailer) > 0,
		Peer:     peer(r),
		Host:     destination(r),
	})
	defer x.Close()
	w.Header().Set("X-Request-Id", x.RequestID())
	if err != nil {
		refuse(w, r, x, err)
		return
	}
	r.Method = x.Method()
	forward(w, r, x, g.rp, egressBody)
}

// destination is the host an egress call names: its absolute URL's
// (forward-proxy form), else its Host header.
func destination(r *http.Request) string {
	if r.URL.IsAbs() {
		return r.URL.Host
	}
	return r.Host
}

// rewrite points the call at its route's upstream. No forwarding
// headers: the vendor learns nothing of the pod's addresses.
func (g *Egress) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	x.ForwardStarted()
	pr.Out.URL = x.Upstream()
	pr.Out.Host = ""
}

// modifyResponse seals what the route's encrypt_response selects in the
// vendor's answer, and records it.
func (g *Egress) modifyResponse(resp *http.Response) error {
	x := exchangeOf(resp.Request.Context())
	x.ForwardAnswered()
	return answer(resp, x, x.SealAnswer)
}

// errorHandler answers for a vendor that could not be reached (bad
// certificate, refused connection, timeout) or an outcome record that
// could not be written.
func (g *Egress) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r.Context())
	refuse(w, r, x, callFailure(g.log, x, err, "vendor call failed", engine.ErrVendor))
}

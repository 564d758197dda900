// Package metrics is phiguard's Prometheus instrumentation, on a registry
// the caller gives. Labels carry only names from the policy (routes,
// selectors, sinks), codes and outcomes: never a value from a request,
// never a path with an id in it, never a user.
package metrics

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

const namespace = "phiguard"

// Unmatched is the route label of a request no route matched.
const Unmatched = "(unmatched)"

// UnlistedDestination is the destination label of an egress call to a
// host no egress route names: the host itself is the app's to choose,
// and would grow the series without bound.
const UnlistedDestination = "(unlisted)"

// Directions of the coverage series.
const (
	DirRequest  = "request"
	DirResponse = "response"
)

// Reload results.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// Sources are the parts the metrics read when scraped.
type Sources struct {
	// InFlight returns the requests in flight.
	InFlight func() int
	// Ready returns whether the readiness probe would answer ready.
	Ready func() bool
	// JWT counts token verifications.
	JWT *identity.Stats
	// Auditor reports on its sinks.
	Auditor *audit.Auditor
	// Keyring returns the keyring in force; nil when there is none.
	Keyring func() *keys.Keyring
	// Version is phiguard's version.
	Version string
}

// Metrics holds every series phiguard exports. Its methods are safe for
// concurrent use; Observe is on the request path.
type Metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	upstream   *prometheus.HistogramVec
	fields     *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	saturation prometheus.Counter
	egress     *prometheus.CounterVec

	coverageChecks *prometheus.CounterVec
	coverageMisses *prometheus.CounterVec
	selectorHits   *prometheus.CounterVec

	policyReloads  *prometheus.CounterVec
	reloadOK       prometheus.Gauge
	policyInfo     *prometheus.GaugeVec
	restart        prometheus.Gauge
	keyringReloads *prometheus.CounterVec
	kmsCalls       *prometheus.CounterVec
	kmsDuration    *prometheus.HistogramVec

	// routes holds each route's series, bound once per policy.
	routes atomic.Pointer[map[string]*routeSeries]
	mu     sync.Mutex // serializes SetPolicy
	hash   string     // the policy_info label set now
	// coverage keeps every route's coverage counts for the ratio gauge,
	// across reloads; keyed by route and direction.
	coverage sync.Map // of coverageKey → *coverageCount
}

type coverageKey struct{ route, dir string }

type coverageCount struct{ checks, misses atomic.Uint64 }

// routeSeries are a route's series, bound to its label once.
type routeSeries struct {
	route    *policy.Route // nil for Unmatched
	name     string
	duration prometheus.Observer
	upstream prometheus.Observer
	req, res *selectorSeries // nil: the route has no selectors that way
}

// selectorSeries are the coverage series of one direction of a route.
type selectorSeries struct {
	n      int // selectors
	checks prometheus.Counter
	misses prometheus.Counter
	count  *coverageCount
	hits   []prometheus.Counter // by selector, the first 64
}

// New registers phiguard's series on reg, reading src when scraped.
func New(reg prometheus.Registerer, src Sources) *Metrics {
	return newMetrics(factory{reg: reg}, src)
}

func newMetrics(f factory, src Sources) *Metrics {
	m := &Metrics{
		requests: f.counterVec("requests_total",
			"Requests answered, by route, audit decision (allow, deny, error) and HTTP status code.",
			"route", "decision", "code"),
		duration: f.histogramVec("request_duration_seconds",
			"Time from a request's head to the end of its exchange, by route.", "route"),
		upstream: f.histogramVec("upstream_duration_seconds",
			"Time from forwarding a request to the app's response headers, by route.", "route"),
		fields: f.counterVec("fields_total",
			"Field values encrypted, decrypted or masked, and on egress replaced, dropped, scanned or checked for consent, by route, action and reason (a mask's cause, the DLP detectors, the consent state).",
			"route", "action", "reason"),
		egress: f.counterVec("egress_requests_total",
			"Calls the app made to vendors through the egress listener, by egress route, destination host (unlisted for a host no route names), audit decision and HTTP status code. They are not in requests_total.",
			"route", "destination", "decision", "code"),
		refusals: f.counterVec("refusals_total",
			"Requests refused, by refusal code (the code of the JSON error).", "code"),
		saturation: f.counter("saturation_refusals_total",
			"Requests refused because max_concurrent_requests were in flight."),
		coverageChecks: f.counterVec("route_coverage_checks_total",
			"Bodies a route's selectors were applied to, by route and direction (request, response).",
			"route", "direction"),
		coverageMisses: f.counterVec("route_coverage_misses_total",
			"Bodies in which some selector of the route found no value, by route and direction.",
			"route", "direction"),
		selectorHits: f.counterVec("selector_hits_total",
			"Bodies in which a selector found at least one value, by route, direction and selector as the policy writes it.",
			"route", "direction", "selector"),
		policyReloads: f.counterVec("policy_reloads_total",
			"Policy reloads, by result (success, failure).", "result"),
		reloadOK: f.gauge("policy_reload_success",
			"1 if the last policy reload succeeded (or none was tried), 0 if it failed and the previous policy is still in force."),
		policyInfo: f.gaugeVec("policy_info",
			"The policy in force: its file's SHA-256, as the label; the value is 1.", "sha256"),
		restart: f.gauge("restart_required",
			"1 when a reloaded policy changed settings only a restart applies (listeners, audit sinks, limits)."),
		keyringReloads: f.counterVec("keyring_reloads_total",
			"Keyring reloads, by result (success, failure).", "result"),
		kmsCalls: f.counterVec("kms_calls_total",
			"Calls to the KMS (keysets wrapped and unwrapped; never per request), by operation and result (ok, error).",
			"operation", "result"),
		kmsDuration: f.histogramVec("kms_call_duration_seconds",
			"Time of one KMS call, the SDK's retries included, by operation.", "operation"),
	}
	m.reloadOK.Set(1)
	m.routes.Store(&map[string]*routeSeries{Unmatched: m.bindRoute(Unmatched, nil)})
	for _, r := range []string{ResultSuccess, ResultFailure} {
		m.policyReloads.WithLabelValues(r)
		m.keyringReloads.WithLabelValues(r)
	}
	for _, op := range []string{"Encrypt", "Decrypt"} {
		m.kmsCalls.WithLabelValues(op, "ok")
		m.kmsCalls.WithLabelValues(op, "error")
		m.kmsDuration.WithLabelValues(op)
	}
	if src.InFlight != nil {
		f.gaugeFunc("requests_in_flight", "Requests in flight.", func() float64 { return float64(src.InFlight()) })
	}
	if src.Ready != nil {
		f.gaugeFunc("ready", "1 when the readiness probe answers ready.", func() float64 { return b2f(src.Ready()) })
	}
	f.gaugeVec("build_info", "phiguard's version and the Go version it was built with; the value is 1.",
		"version", "goversion").WithLabelValues(src.Version, runtime.Version()).Set(1)
	f.mustRegister(&scraped{m: m, src: src})
	return m
}

// SetPolicy binds the series of pol's routes and notes the policy's hash;
// call it with each policy put in force.
func (m *Metrics) SetPolicy(pol *policy.Policy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	routes := make(map[string]*routeSeries, len(pol.Routes)+1)
	routes[Unmatched] = m.bindRoute(Unmatched, nil)
	for _, r := range pol.Routes {
		routes[r.Name] = m.bindRoute(r.Name, r)
	}
	for _, r := range pol.EgressRoutes {
		routes[r.Name] = m.bindRoute(r.Name, r)
	}
	m.routes.Store(&routes)
	if m.hash != pol.SHA256 {
		if m.hash != "" {
			m.policyInfo.DeleteLabelValues(m.hash)
		}
		m.hash = pol.SHA256
		m.policyInfo.WithLabelValues(pol.SHA256).Set(1)
	}
}

func (m *Metrics) bindRoute(name string, r *policy.Route) *routeSeries {
	var enc, dec []policy.Selector
	if r != nil {
		enc, dec = r.EncryptRequest, r.DecryptResponse
	}
	return &routeSeries{
		route:    r,
		name:     name,
		duration: m.duration.WithLabelValues(name),
		upstream: m.upstream.WithLabelValues(name),
		req:      m.bindSelectors(name, DirRequest, enc),
		res:      m.bindSelectors(name, DirResponse, dec),
	}
}

func (m *Metrics) bindSelectors(route, dir string, sels []policy.Selector) *selectorSeries {
	if len(sels) == 0 {
		return nil
	}
	cc, _ := m.coverage.LoadOrStore(coverageKey{route, dir}, new(coverageCount))
	s := &selectorSeries{
		n:      len(sels),
		checks: m.coverageChecks.WithLabelValues(route, dir),
		misses: m.coverageMisses.WithLabelValues(route, dir),
		count:  cc.(*coverageCount),
	}
	for _, sel := range sels[:min(len(sels), 64)] {
		s.hits = append(s.hits, m.selectorHits.WithLabelValues(route, dir, sel.Text))
	}
	return s
}

var _ engine.Observer = (*Metrics)(nil)

// Observe counts one exchange.
func (m *Metrics) Observe(o *engine.Outcome) {
	name := Unmatched
	if o.Route != nil {
		name = o.Route.Name
	}
	rs := (*m.routes.Load())[name]
	if rs == nil || rs.route != o.Route {
		// The route of another policy than the one bound: a request that
		// was in flight across a reload. Its selectors are the ones it
		// was judged by.
		rs = m.bindRoute(name, o.Route)
	}
	switch {
	case o.Decision == "":
	case o.Egress:
		dest := UnlistedDestination
		if o.Route != nil {
			dest = o.Route.Egress.Host
		}
		m.egress.WithLabelValues(name, dest, o.Decision, statusCode(o.Status)).Inc()
	default:
		m.requests.WithLabelValues(name, o.Decision, statusCode(o.Status)).Inc()
	}
	if o.Refusal != "" {
		m.refusals.WithLabelValues(o.Refusal).Inc()
		if o.Refusal == saturated {
			m.saturation.Inc()
		}
	}
	rs.duration.Observe(o.Duration.Seconds())
	if o.Upstream > 0 {
		rs.upstream.Observe(o.Upstream.Seconds())
	}
	for i := range o.Fields {
		f := &o.Fields[i]
		m.fields.WithLabelValues(name, f.Action, f.Reason).Add(float64(f.Count))
	}
	rs.req.observe(o.Request)
	rs.res.observe(o.Response)
}

var saturated = engine.ErrBusy.Kind.Code()

func (s *selectorSeries) observe(c engine.Coverage) {
	if s == nil || !c.Checked {
		return
	}
	s.checks.Inc()
	s.count.checks.Add(1)
	if !c.Complete(s.n) {
		s.misses.Inc()
		s.count.misses.Add(1)
	}
	for i, h := range s.hits {
		if c.Found&(1<<i) != 0 {
			h.Inc()
		}
	}
}

// Reloaded counts a policy reload. On success, pol is now in force and
// restart says whether it changed settings only a restart applies.
func (m *Metrics) Reloaded(pol *policy.Policy, err error, restart bool) {
	if err != nil {
		m.policyReloads.WithLabelValues(ResultFailure).Inc()
		m.reloadOK.Set(0)
		return
	}
	m.policyReloads.WithLabelValues(ResultSuccess).Inc()
	m.reloadOK.Set(1)
	m.restart.Set(b2f(restart))
	m.SetPolicy(pol)
}

// KMSCall counts a call to the KMS.
func (m *Metrics) KMSCall(op string, took time.Duration, err error) {
	r := "ok"
	if err != nil {
		r = "error"
	}
	m.kmsCalls.WithLabelValues(op, r).Inc()
	m.kmsDuration.WithLabelValues(op).Observe(took.Seconds())
}

// KeyringReloaded counts a keyring reload.
func (m *Metrics) KeyringReloaded(err error) {
	r := ResultSuccess
	if err != nil {
		r = ResultFailure
	}
	m.keyringReloads.WithLabelValues(r).Inc()
}

// statusCodes are the label values of the status codes, made once.
var statusCodes = func() (c [600]string) {
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

func statusCode(s int) string {
	if s >= 0 && s < len(statusCodes) {
		return statusCodes[s]
	}
	return strconv.Itoa(s)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

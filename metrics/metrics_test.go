package metrics

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/policy"
)

const testPolicy = `version: 1
ingress: {upstream: "http://app.invalid"}
identity: {jwt: {jwks: unused.json}}
keys: {keyring: unused}
orgs: [{id: org_a}]
routes:
  - name: send-message
    match: {methods: [POST], path: "/m"}
    encrypt_request: ["$.body", "$.caption"]
    decrypt_response: ["$.body"]
`

func loadPolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTest(t *testing.T) (*Metrics, *prometheus.Registry, *policy.Policy) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, Sources{InFlight: func() int { return 3 }, Ready: func() bool { return true }, Version: "test"})
	pol := loadPolicy(t, testPolicy)
	m.SetPolicy(pol)
	return m, reg, pol
}

// expect compares the named families of reg with want (text format).
func expect(t *testing.T, reg *prometheus.Registry, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// TestObserveCountsAndCoverage: an exchange is counted by route, decision
// and code; its fields by action and reason; a body in which a selector
// found nothing lowers the route's coverage ratio below 1.
func TestObserveCountsAndCoverage(t *testing.T) {
	m, reg, pol := newTest(t)
	route := pol.Routes[0]
	full := &engine.Outcome{Route: route, Decision: audit.DecisionAllow, Status: 201, Duration: time.Millisecond, Upstream: time.Millisecond,
		Fields:  []audit.Field{{Action: audit.ActionEncrypt, Path: "$.body", Count: 2}, {Action: audit.ActionEncrypt, Path: "$.caption", Count: 1}},
		Request: engine.Coverage{Checked: true, Found: 0b11}}
	partial := &engine.Outcome{Route: route, Decision: audit.DecisionAllow, Status: 201, Duration: time.Millisecond,
		Fields:  []audit.Field{{Action: audit.ActionEncrypt, Path: "$.body", Count: 1}, {Action: audit.ActionMask, Path: "$.body", Count: 4, Reason: "not_reader"}},
		Request: engine.Coverage{Checked: true, Found: 0b01}}
	m.Observe(full)
	m.Observe(partial)
	m.Observe(&engine.Outcome{Decision: audit.DecisionDeny, Status: 403, Refusal: "denied"})
	m.Observe(&engine.Outcome{Decision: audit.DecisionError, Status: 503, Refusal: "over_capacity"})

	expect(t, reg, `
# HELP phiguard_requests_total Requests answered, by route, audit decision (allow, deny, error) and HTTP status code.
# TYPE phiguard_requests_total counter
phiguard_requests_total{code="201",decision="allow",route="send-message"} 2
phiguard_requests_total{code="403",decision="deny",route="(unmatched)"} 1
phiguard_requests_total{code="503",decision="error",route="(unmatched)"} 1
# HELP phiguard_fields_total Field values encrypted, decrypted or masked, and on egress replaced, dropped, scanned or checked for consent, by route, action and reason (a mask's cause, the DLP detectors, the consent state).
# TYPE phiguard_fields_total counter
phiguard_fields_total{action="encrypt",reason="",route="send-message"} 4
phiguard_fields_total{action="mask",reason="not_reader",route="send-message"} 4
# HELP phiguard_refusals_total Requests refused, by refusal code (the code of the JSON error).
# TYPE phiguard_refusals_total counter
phiguard_refusals_total{code="denied"} 1
phiguard_refusals_total{code="over_capacity"} 1
# HELP phiguard_saturation_refusals_total Requests refused because max_concurrent_requests were in flight.
# TYPE phiguard_saturation_refusals_total counter
phiguard_saturation_refusals_total 1
# HELP phiguard_route_coverage_ratio Share of the bodies a route's selectors were applied to in which every selector found a value, by route and direction; 1 before any. Below 1: a selector that does not match, so PHI may pass in plaintext.
# TYPE phiguard_route_coverage_ratio gauge
phiguard_route_coverage_ratio{direction="request",route="send-message"} 0.5
phiguard_route_coverage_ratio{direction="response",route="send-message"} 1
# HELP phiguard_selector_hits_total Bodies in which a selector found at least one value, by route, direction and selector as the policy writes it.
# TYPE phiguard_selector_hits_total counter
phiguard_selector_hits_total{direction="request",route="send-message",selector="$.body"} 2
phiguard_selector_hits_total{direction="request",route="send-message",selector="$.caption"} 1
phiguard_selector_hits_total{direction="response",route="send-message",selector="$.body"} 0
# HELP phiguard_requests_in_flight Requests in flight.
# TYPE phiguard_requests_in_flight gauge
phiguard_requests_in_flight 3
`, "phiguard_requests_total", "phiguard_fields_total", "phiguard_refusals_total", "phiguard_saturation_refusals_total",
		"phiguard_route_coverage_ratio", "phiguard_selector_hits_total", "phiguard_requests_in_flight")
	for route, want := range map[string]uint64{"send-message": 1, Unmatched: 0} {
		if n := sampleCount(t, m.upstream.WithLabelValues(route)); n != want {
			t.Errorf("upstream latency of %s: %d observations, want %d (only the exchange the app answered)", route, n, want)
		}
		if n := sampleCount(t, m.duration.WithLabelValues(route)); n != 2 {
			t.Errorf("latency of %s: %d observations, want 2", route, n)
		}
	}
}

func sampleCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var d dto.Metric
	if err := o.(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

// TestReloadedSeries: a failed reload flips reload_success and counts a
// failure; a good one puts the new policy's digest in policy_info alone,
// and says whether a restart is required.
func TestReloadedSeries(t *testing.T) {
	m, reg, pol := newTest(t)
	m.Reloaded(nil, errors.New("bad"), false)
	next := loadPolicy(t, testPolicy+"  - {name: extra, match: {path: /x}, auth: none}\n")
	expect(t, reg, `
# HELP phiguard_policy_reload_success 1 if the last policy reload succeeded (or none was tried), 0 if it failed and the previous policy is still in force.
# TYPE phiguard_policy_reload_success gauge
phiguard_policy_reload_success 0
# HELP phiguard_policy_info The policy in force: its file's SHA-256, as the label; the value is 1.
# TYPE phiguard_policy_info gauge
phiguard_policy_info{sha256="`+pol.SHA256+`"} 1
`, "phiguard_policy_reload_success", "phiguard_policy_info")
	m.Reloaded(next, nil, true)
	expect(t, reg, `
# HELP phiguard_policy_reloads_total Policy reloads, by result (success, failure).
# TYPE phiguard_policy_reloads_total counter
phiguard_policy_reloads_total{result="failure"} 1
phiguard_policy_reloads_total{result="success"} 1
# HELP phiguard_policy_reload_success 1 if the last policy reload succeeded (or none was tried), 0 if it failed and the previous policy is still in force.
# TYPE phiguard_policy_reload_success gauge
phiguard_policy_reload_success 1
# HELP phiguard_policy_info The policy in force: its file's SHA-256, as the label; the value is 1.
# TYPE phiguard_policy_info gauge
phiguard_policy_info{sha256="`+next.SHA256+`"} 1
# HELP phiguard_restart_required 1 when a reloaded policy changed settings only a restart applies (listeners, audit sinks, limits).
# TYPE phiguard_restart_required gauge
phiguard_restart_required 1
`, "phiguard_policy_reloads_total", "phiguard_policy_reload_success", "phiguard_policy_info", "phiguard_restart_required")
	// A request that began on a route the new policy dropped is still counted.
	m.Observe(&engine.Outcome{Route: &policy.Route{Name: "gone"}, Decision: audit.DecisionAllow, Status: 200})
	if v := testutil.ToFloat64(m.requests.WithLabelValues("gone", "allow", "200")); v != 1 {
		t.Errorf("request on a dropped route counted %v, want 1", v)
	}
}

// TestNames: sorted, unique, with the series of each kind of collector
// (a scrape of every one of them is cmd/phiguard's
// TestScrapeShowsEverySeries), and a histogram's series rather than its
// family name.
func TestNames(t *testing.T) {
	names := Names()
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("Names not sorted and unique: %v", names)
	}
	for _, want := range []string{"phiguard_requests_total", "phiguard_request_duration_seconds_bucket", "phiguard_audit_sink_up", "phiguard_jwt_cache_hits_total", "phiguard_route_coverage_ratio", "phiguard_build_info", "phiguard_ready"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names has no %s", want)
		}
	}
	if slices.Contains(names, "phiguard_request_duration_seconds") {
		t.Error("Names lists a histogram's family name, which no series has")
	}
}

// BenchmarkObserve is the metrics' share of each request: an encrypted
// message, allowed.
func BenchmarkObserve(b *testing.B) {
	reg := prometheus.NewRegistry()
	m := New(reg, Sources{})
	pol, err := policy.Parse("p.yaml", []byte(testPolicy))
	if err != nil {
		b.Fatal(err)
	}
	m.SetPolicy(pol)
	o := &engine.Outcome{Route: pol.Routes[0], Decision: audit.DecisionAllow, Status: 201, Duration: time.Millisecond, Upstream: time.Millisecond,
		Fields:  []audit.Field{{Action: audit.ActionEncrypt, Path: "$.body", Count: 2}},
		Request: engine.Coverage{Checked: true, Found: 0b11}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(o)
		}
	})
}

// TestObserveAcrossReload: a request judged by a route of the previous
// policy is counted by that route's selectors, not by the selectors of
// the route of the same name now in force; and Observe before any policy
// is bound does not fail.
func TestObserveAcrossReload(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, Sources{})
	m.Observe(&engine.Outcome{Decision: audit.DecisionDeny, Status: 403, Refusal: "denied"})

	old := loadPolicy(t, testPolicy)
	m.SetPolicy(old)
	next := loadPolicy(t, strings.Replace(testPolicy, `encrypt_request: ["$.body", "$.caption"]`, `encrypt_request: ["$.text"]`, 1))
	m.SetPolicy(next)
	m.Observe(&engine.Outcome{Route: old.Routes[0], Decision: audit.DecisionAllow, Status: 201, Request: engine.Coverage{Checked: true, Found: 0b11}})
	for sel, want := range map[string]float64{"$.body": 1, "$.caption": 1, "$.text": 0} {
		if got := testutil.ToFloat64(m.selectorHits.WithLabelValues("send-message", DirRequest, sel)); got != want {
			t.Errorf("hits of %s: %v, want %v", sel, got, want)
		}
	}
	if got := testutil.ToFloat64(m.coverageMisses.WithLabelValues("send-message", DirRequest)); got != 0 {
		t.Errorf("a body complete for its own route's two selectors counted %v misses", got)
	}
}

// TestObserveEgress: egress calls are counted apart from the requests the
// app answers, by route and destination; a host no route names is
// labelled (unlisted), never by itself.
func TestObserveEgress(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, Sources{Version: "test"})
	pol := loadPolicy(t, testPolicy+`egress_routes:
  - name: push-send
    host: fcm.googleapis.com
    baa: false
    replace_request: [{field: "$.message.notification.body", text: "You have a new message"}]
`)
	m.SetPolicy(pol)
	push := pol.EgressRoutes[0]
	m.Observe(&engine.Outcome{Egress: true, Route: push, Decision: audit.DecisionAllow, Status: 200, Duration: time.Millisecond, Upstream: time.Millisecond,
		Fields: []audit.Field{{Action: audit.ActionReplace, Path: "$.message.notification.body", Count: 1}}})
	m.Observe(&engine.Outcome{Egress: true, Route: push, Decision: audit.DecisionDeny, Status: 403, Refusal: "phi_blocked"})
	m.Observe(&engine.Outcome{Egress: true, Decision: audit.DecisionDeny, Status: 403, Refusal: "destination_not_allowed"})
	expect(t, reg, `
# HELP phiguard_egress_requests_total Calls the app made to vendors through the egress listener, by egress route, destination host (unlisted for a host no route names), audit decision and HTTP status code. They are not in requests_total.
# TYPE phiguard_egress_requests_total counter
phiguard_egress_requests_total{code="200",decision="allow",destination="fcm.googleapis.com",route="push-send"} 1
phiguard_egress_requests_total{code="403",decision="deny",destination="(unlisted)",route="(unmatched)"} 1
phiguard_egress_requests_total{code="403",decision="deny",destination="fcm.googleapis.com",route="push-send"} 1
# HELP phiguard_fields_total Field values encrypted, decrypted or masked, and on egress replaced, dropped, scanned or checked for consent, by route, action and reason (a mask's cause, the DLP detectors, the consent state).
# TYPE phiguard_fields_total counter
phiguard_fields_total{action="replace",reason="",route="push-send"} 1
# HELP phiguard_refusals_total Requests refused, by refusal code (the code of the JSON error).
# TYPE phiguard_refusals_total counter
phiguard_refusals_total{code="destination_not_allowed"} 1
phiguard_refusals_total{code="phi_blocked"} 1
`, "phiguard_egress_requests_total", "phiguard_requests_total", "phiguard_fields_total", "phiguard_refusals_total")
}

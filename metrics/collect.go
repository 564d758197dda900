package metrics

import (
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// factory makes phiguard's series on one registerer, and notes every
// name made, for Names.
type factory struct {
	reg   prometheus.Registerer
	names *[]string // nil: not noted
}

func (f factory) mustRegister(c prometheus.Collector) {
	f.reg.MustRegister(c)
}

func (f factory) note(names ...string) {
	if f.names != nil {
		*f.names = append(*f.names, names...)
	}
}

func fqName(name string) string { return prometheus.BuildFQName(namespace, "", name) }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	f.note(fqName(name))
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: fqName(name), Help: help}, labels)
	f.mustRegister(c)
	return c
}

func (f factory) counter(name, help string) prometheus.Counter {
	f.note(fqName(name))
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: fqName(name), Help: help})
	f.mustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	f.note(fqName(name))
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: fqName(name), Help: help})
	f.mustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	f.note(fqName(name))
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: fqName(name), Help: help}, labels)
	f.mustRegister(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.note(fqName(name))
	f.mustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: fqName(name), Help: help}, fn))
}

// latencyBuckets span a sidecar's added microseconds to a slow app's
// seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func (f factory) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	n := fqName(name)
	f.note(n+"_bucket", n+"_sum", n+"_count") // the series; n only names the family
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: fqName(name), Help: help, Buckets: latencyBuckets}, labels)
	f.mustRegister(h)
	return h
}

// scrapedNames are the names of the series made by newDesc.
var scrapedNames []string

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	scrapedNames = append(scrapedNames, fqName(name))
	return prometheus.NewDesc(fqName(name), help, labels, nil)
}

// The series read from other parts when scraped.
var (
	descJWTVerifications = newDesc("jwt_verifications_total",
		"Bearer tokens judged, by result: valid (signature and claims verified) or invalid (refused, cached or not). Cache hits are counted apart.", "result")
	descJWTCacheHits = newDesc("jwt_cache_hits_total",
		"Bearer tokens accepted from the verified-token cache, without a signature check.")
	descAuditRecords = newDesc("audit_records_total",
		"Lines an audit sink wrote (records and check lines), by sink.", "sink")
	descAuditFailures = newDesc("audit_write_failures_total",
		"Lines an audit sink failed to write, by sink.", "sink")
	descAuditUp = newDesc("audit_sink_up",
		"1 when an audit sink's last write succeeded, 0 when it failed.", "sink")
	descKeysets = newDesc("keysets",
		"Organizations' keysets in the keyring in force, by state: loaded, unavailable (not unwrapped: their PHI routes answer 503), shredded, and stale (loaded, but their changed file did not load: the last good keyset serves).", "state")
	descKeyAge = newDesc("key_primary_age_seconds",
		"Age of each organization's primary data key (0 when its creation is unknown).", "org")
	descKeyOpened = newDesc("key_tokens_opened_total",
		"Tokens each data key opened, by org and key id (8 hex digits, as keys list shows them): a key whose count no longer grows can be retired.", "org", "key")
	descCoverage = newDesc("route_coverage_ratio",
		"Share of the bodies a route's selectors were applied to in which every selector found a value, by route and direction; 1 before any. Below 1: a selector that does not match, so PHI may pass in plaintext.", "route", "direction")
)

// scraped collects the series whose values live elsewhere.
type scraped struct {
	m   *Metrics
	src Sources
}

func (s *scraped) Describe(ch chan<- *prometheus.Desc) {
	if s.src.JWT != nil {
		ch <- descJWTVerifications
		ch <- descJWTCacheHits
	}
	if s.src.Auditor != nil {
		ch <- descAuditRecords
		ch <- descAuditFailures
		ch <- descAuditUp
	}
	if s.src.Keyring != nil {
		ch <- descKeysets
		ch <- descKeyAge
		ch <- descKeyOpened
	}
	ch <- descCoverage
}

func (s *scraped) Collect(ch chan<- prometheus.Metric) {
	if s.src.JWT != nil {
		hits, valid, invalid := s.src.JWT.Load()
		ch <- prometheus.MustNewConstMetric(descJWTVerifications, prometheus.CounterValue, float64(valid), "valid")
		ch <- prometheus.MustNewConstMetric(descJWTVerifications, prometheus.CounterValue, float64(invalid), "invalid")
		ch <- prometheus.MustNewConstMetric(descJWTCacheHits, prometheus.CounterValue, float64(hits))
	}
	if s.src.Auditor != nil {
		for _, st := range s.src.Auditor.Sinks() {
			ch <- prometheus.MustNewConstMetric(descAuditRecords, prometheus.CounterValue, float64(st.Written), st.Name)
			ch <- prometheus.MustNewConstMetric(descAuditFailures, prometheus.CounterValue, float64(st.Failed), st.Name)
			ch <- prometheus.MustNewConstMetric(descAuditUp, prometheus.GaugeValue, b2f(st.Up), st.Name)
		}
	}
	if s.src.Keyring != nil {
		if ring := s.src.Keyring(); ring != nil {
			counts := map[string]float64{"loaded": 0, "unavailable": 0, "shredded": 0, "stale": 0}
			counts["unavailable"] = float64(len(ring.Unavailable()))
			counts["stale"] = float64(len(ring.Stale()))
			for _, org := range ring.Orgs() {
				info, _ := ring.Info(org)
				switch {
				case !info.Shredded.IsZero():
					counts["shredded"]++
				case ring.Has(org):
					counts["loaded"]++
					age := 0.0
					for _, k := range info.Keys {
						if k.ID == info.Primary && !k.Created.IsZero() {
							age = time.Since(k.Created).Seconds()
						}
					}
					ch <- prometheus.MustNewConstMetric(descKeyAge, prometheus.GaugeValue, age, org)
					for id, n := range ring.Opened(org) {
						ch <- prometheus.MustNewConstMetric(descKeyOpened, prometheus.CounterValue, float64(n), org, fmt.Sprintf("%08x", id))
					}
				}
			}
			for state, n := range counts {
				ch <- prometheus.MustNewConstMetric(descKeysets, prometheus.GaugeValue, n, state)
			}
		}
	}
	s.m.coverage.Range(func(k, v any) bool {
		key, c := k.(coverageKey), v.(*coverageCount)
		ratio := 1.0
		// Misses first: a check counted between the loads only raises the ratio.
		misses := c.misses.Load()
		if checks := c.checks.Load(); checks > 0 {
			ratio = 1 - float64(misses)/float64(checks)
		}
		ch <- prometheus.MustNewConstMetric(descCoverage, prometheus.GaugeValue, ratio, key.route, key.dir)
		return true
	})
}

// Names returns the name of every series phiguard exports, sorted (for a
// histogram, its _bucket, _sum and _count): for alert rules and
// dashboards to be checked against.
func Names() []string {
	var names []string
	newMetrics(factory{reg: prometheus.NewRegistry(), names: &names}, Sources{
		InFlight: func() int { return 0 },
		Ready:    func() bool { return true },
	})
	names = append(names, scrapedNames...)
	slices.Sort(names)
	return slices.Compact(names)
}

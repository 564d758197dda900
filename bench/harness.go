package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// target is one proxy under test.
type target struct {
	name       string // baseline or phiguard
	origin     string // http://127.0.0.1:PORT
	child      *child
	metricsURL string // "" when it serves no metrics
	adminURL   string // http://127.0.0.1:PORT of its metrics (and profiler); "" when none
	h1, h2     *http.Client
	open       *http.Client // open loop: no connection cap
}

func (t *target) client(w *workload) *http.Client {
	if w.h2 {
		return t.h2
	}
	return t.h1
}

func (t *target) closeIdle() {
	for _, c := range []*http.Client{t.h1, t.h2, t.open} {
		c.CloseIdleConnections()
	}
}

// measurement is one closed-loop measurement of one proxy and workload.
type measurement struct {
	proxy    string
	workload string
	round    int
	requests int
	errors   int
	firstErr string
	elapsed  time.Duration
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // the proxy's user+system time
	cpuOK    bool
	allocs   float64 // per request
	allocsOK bool
	// upConns is the number of connections the proxy opened to the upstream.
	upConns int64
	// busy is the harness's (load generator and upstream) CPU use over its
	// CPUs, 0 to 1: near 1, the harness and not the proxy set the pace.
	busy float64
}

// openMeasurement is one open-loop measurement.
type openMeasurement struct {
	proxy    string
	workload string
	round    int
	requests int
	errors   int
	firstErr string
	p50, p99 time.Duration
}

// errRequestsFailed: the run completed, but some requests failed.
var errRequestsFailed = errors.New("some requests failed: see the errors column")

func runHarness(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	workloads, err := selectWorkloads(cfg.workloads)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "phiguard-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Deferred after RemoveAll, so it runs first: no child outlives the run.
	var children []*child
	defer func() {
		for _, c := range children {
			c.stop()
		}
	}()

	pin := planPinning(cfg.pin, progress)
	defer pin.restore()
	env := []string{}
	if pin.on {
		env = append(env, "GOMAXPROCS=1")
	}

	bin := cfg.phiguard
	if bin == "" {
		progress("building ./cmd/phiguard")
		if bin, err = buildPhiguard(ctx, dir); err != nil {
			return err
		}
	}
	up, err := startUpstream(stderr)
	if err != nil {
		return err
	}
	defer up.close()
	setup, tokens, err := preparePhiguard(ctx, bin, dir, up.url(), cfg.conns, cfg.profile != "")
	if err != nil {
		return err
	}
	auths := make([]string, len(tokens))
	for i, t := range tokens {
		auths[i] = "Bearer " + t
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	baseAddr, err := freeAddr()
	if err != nil {
		return err
	}
	baseMetrics, err := freeAddr()
	if err != nil {
		return err
	}
	base, err := startChild("baseline", filepath.Join(dir, "baseline.log"), env,
		self, baselineFlag, baseAddr, up.url(), baseMetrics, strconv.Itoa(max(cfg.conns, 256)))
	if err != nil {
		return err
	}
	children = append(children, base)
	phg, err := startChild("phiguard", filepath.Join(dir, "phiguard.log"), env, bin, "serve", "-config", setup.policy)
	if err != nil {
		return err
	}
	children = append(children, phg)
	for _, c := range children {
		pin.child(c, progress)
	}
	if err := waitListening(ctx, base, 15*time.Second, baseAddr, baseMetrics); err != nil {
		return err
	}
	if err := waitListening(ctx, phg, 15*time.Second, setup.listen); err != nil {
		return err
	}
	targets := []*target{
		newTarget("baseline", baseAddr, base, "http://"+baseMetrics+"/metrics", cfg.conns),
		newTarget("phiguard", setup.listen, phg, "", cfg.conns),
	}
	if setup.adminAddr != "" {
		if err := waitListening(ctx, phg, 15*time.Second, setup.adminAddr); err != nil {
			return err
		}
		targets[1].metricsURL = "http://" + setup.adminAddr + "/metrics"
		targets[1].adminURL = "http://" + setup.adminAddr
	}
	defer func() {
		for _, t := range targets {
			t.closeIdle()
		}
	}()

	if err := seed(ctx, targets[1].h1, targets[1].origin, up, auths[0]); err != nil {
		return err
	}
	if err := checkSeeded(ctx, targets[1].h1, targets[1].origin, targets[0].origin, auths[0]); err != nil {
		return err
	}

	r := &runner{cfg: cfg, up: up, auths: auths, pin: pin, progress: progress, metrics: &http.Client{Timeout: 5 * time.Second}}
	results, warmErrs, err := r.closedRounds(ctx, targets, workloads)
	if err != nil {
		return err
	}
	var open []openMeasurement
	if cfg.rate > 0 {
		if open, err = r.openRounds(ctx, targets, workloads); err != nil {
			return err
		}
	}

	rep := newReport(cfg, pin, bin, results, open, warmErrs, targets[1].metricsURL != "")
	rep.printTables(stdout)
	out := cfg.out
	if out == "" {
		out = filepath.Join("bin", "bench", rep.commit+".txt")
	}
	if err := rep.writeBenchFile(out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s\ncompare commits: benchstat bin/bench/OLD.txt bin/bench/NEW.txt\n", out)
	if rep.failed() {
		return errRequestsFailed
	}
	return nil
}

func newTarget(name, addr string, c *child, metricsURL string, conns int) *target {
	return &target{name: name, origin: "http://" + addr, child: c, metricsURL: metricsURL, adminURL: strings.TrimSuffix(metricsURL, "/metrics"),
		h1: newClient(false, conns), h2: newClient(true, conns), open: newClient(false, 0)}
}

// runner runs the measurements.
type runner struct {
	cfg      config
	up       *upstream
	auths    []string
	pin      *pinning
	progress func(string, ...any)
	metrics  *http.Client
}

// ordered returns the targets in this round's order: the first proxy
// alternates, so neither always runs on a warmer (or hotter) machine.
func ordered(targets []*target, round int) []*target {
	if round%2 == 0 {
		return targets
	}
	return []*target{targets[1], targets[0]}
}

func (r *runner) warmup() time.Duration {
	return min(max(r.cfg.duration/4, 50*time.Millisecond), 500*time.Millisecond)
}

// closedRounds measures every workload on both proxies, back to back, for
// each round. Warm-up errors are returned apart; they are reported too.
func (r *runner) closedRounds(ctx context.Context, targets []*target, workloads []*workload) ([]measurement, map[string]string, error) {
	var out []measurement
	warmErrs := map[string]string{}
	for round := range r.cfg.rounds {
		for _, w := range workloads {
			for _, t := range ordered(targets, round) {
				if round == 0 {
					res := closedLoop(ctx, t.client(w), t.origin, w, r.auths, r.cfg.conns, r.warmup())
					if res.errors > 0 {
						warmErrs[t.name+" "+w.name] = fmt.Sprintf("%d of %d warm-up requests failed, first: %s", res.errors, res.requests, res.firstErr)
					}
				}
				m, err := r.measure(ctx, t, w, round)
				if err != nil {
					return nil, nil, err
				}
				r.progress("round %d/%d %-19s %-8s %8.0f req/s  p50 %7s  p99 %7s  upstream conns %5d  errors %d",
					round+1, r.cfg.rounds, w.name, t.name, m.rps, ms(m.p50), ms(m.p99), m.upConns, m.errors)
				out = append(out, m)
			}
		}
	}
	return out, warmErrs, nil
}

func (r *runner) measure(ctx context.Context, t *target, w *workload, round int) (measurement, error) {
	m := measurement{proxy: t.name, workload: w.name, round: round}
	mallocs0, allocErr0 := scrapeMallocs(ctx, r.metrics, t.metricsURL)
	cpu0, cpuErr0 := cpuTime(t.child.pid())
	self0, selfErr0 := cpuTime(os.Getpid())
	conns0 := r.up.conns.Load()
	profiled := r.profile(ctx, t, w, round)
	res := closedLoop(ctx, t.client(w), t.origin, w, r.auths, r.cfg.conns, r.cfg.duration)
	m.upConns = r.up.conns.Load() - conns0
	self1, selfErr1 := cpuTime(os.Getpid())
	cpu1, cpuErr1 := cpuTime(t.child.pid())
	mallocs1, allocErr1 := scrapeMallocs(ctx, r.metrics, t.metricsURL)
	if err := <-profiled; err != nil {
		r.progress("no CPU profile of %s %s: %v", t.name, w.name, err)
	}
	if err := ctx.Err(); err != nil {
		return m, err
	}
	if t.child.exited() {
		return m, t.child.died()
	}
	m.requests, m.errors, m.firstErr, m.elapsed = res.requests, res.errors, res.firstErr, res.elapsed
	m.rps, m.p50, m.p99 = res.rate(), res.percentile(0.50), res.percentile(0.99)
	if cpuErr0 == nil && cpuErr1 == nil {
		m.cpu, m.cpuOK = cpu1-cpu0, true
	}
	if allocErr0 == nil && allocErr1 == nil && res.requests > 0 {
		m.allocs, m.allocsOK = (mallocs1-mallocs0)/float64(res.requests), true
	}
	if selfErr0 == nil && selfErr1 == nil && res.elapsed > 0 {
		m.busy = (self1 - self0).Seconds() / res.elapsed.Seconds() / float64(r.pin.harnessCPUs())
	}
	return m, nil
}

// profile records, with -cpuprofile, a CPU profile of t for the length of
// one measurement into DIR/WORKLOAD-PROXY-rROUND.pprof, read with
// go tool pprof. The returned channel yields once the profile is written.
func (r *runner) profile(ctx context.Context, t *target, w *workload, round int) <-chan error {
	done := make(chan error, 1)
	if r.cfg.profile == "" {
		done <- nil
		return done
	}
	if t.adminURL == "" {
		done <- fmt.Errorf("%s serves no profiler", t.name)
		return done
	}
	secs := max(int(r.cfg.duration.Round(time.Second)/time.Second), 1)
	path := filepath.Join(r.cfg.profile, fmt.Sprintf("%s-%s-r%d.pprof", w.name, t.name, round+1))
	go func() {
		done <- fetchProfile(ctx, t.adminURL+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), path, time.Duration(secs+10)*time.Second)
	}()
	return done
}

// openRounds runs the open-loop phase for the workloads marked open.
func (r *runner) openRounds(ctx context.Context, targets []*target, workloads []*workload) ([]openMeasurement, error) {
	var out []openMeasurement
	for round := range r.cfg.rounds {
		for _, w := range workloads {
			if !w.open {
				continue
			}
			for _, t := range ordered(targets, round) {
				res := openLoop(ctx, t.open, t.origin, w, r.auths, r.cfg.rate, r.cfg.duration)
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if t.child.exited() {
					return nil, t.child.died()
				}
				m := openMeasurement{proxy: t.name, workload: w.name, round: round, requests: res.requests, errors: res.errors,
					firstErr: res.firstErr, p50: res.percentile(0.50), p99: res.percentile(0.99)}
				r.progress("open  %d/%d %-19s %-8s %4d req/s   p50 %7s  p99 %7s  errors %d",
					round+1, r.cfg.rounds, w.name, t.name, r.cfg.rate, ms(m.p50), ms(m.p99), m.errors)
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// pinning places the proxies on the last allowed CPU and the harness on the
// others, so a proxy never competes with the load it is measured under.
type pinning struct {
	on      bool
	harness []int
	proxy   int
	orig    []int
}

func planPinning(want bool, progress func(string, ...any)) *pinning {
	p := &pinning{}
	if !want {
		return p
	}
	cpus, err := allowedCPUs()
	if err != nil || len(cpus) < 2 || runtime.NumCPU() < 2 {
		progress("not pinning: needs 2 CPUs or more (%d allowed)", len(cpus))
		return p
	}
	p.orig, p.harness, p.proxy = cpus, cpus[:len(cpus)-1], cpus[len(cpus)-1]
	if err := pinProcess(os.Getpid(), p.harness); err != nil {
		progress("not pinning: %v", err)
		pinProcess(os.Getpid(), p.orig)
		return p
	}
	p.on = true
	runtime.GOMAXPROCS(len(p.harness))
	return p
}

// child pins a proxy to its CPU; on failure the run goes on unpinned for
// that child, and says so.
func (p *pinning) child(c *child, progress func(string, ...any)) {
	if !p.on {
		return
	}
	if err := pinProcess(c.pid(), []int{p.proxy}); err != nil {
		progress("could not pin %s to CPU %d: %v", c.name, p.proxy, err)
	}
}

func (p *pinning) harnessCPUs() int {
	if p.on {
		return len(p.harness)
	}
	return runtime.NumCPU()
}

func (p *pinning) restore() {
	if p.on {
		pinProcess(os.Getpid(), p.orig)
		runtime.SetDefaultGOMAXPROCS()
	}
}

func (p *pinning) String() string {
	if !p.on {
		return "not pinned"
	}
	return fmt.Sprintf("proxies pinned to CPU %d (GOMAXPROCS=1), harness to CPUs %v", p.proxy, p.harness)
}

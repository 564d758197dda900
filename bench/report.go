package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// busyLimit: a harness this busy during a baseline measurement may have
// capped the baseline's throughput.
const busyLimit = 0.9

// report turns the measurements into tables and a benchstat file.
type report struct {
	cfg      config
	machine  string
	cpu      string
	commit   string
	pin      *pinning
	closed   []measurement
	open     []openMeasurement
	warmErrs map[string]string
	phgAlloc bool // phiguard served /metrics
	order    []string
	openOrd  []string
}

func newReport(cfg config, pin *pinning, bin string, closed []measurement, open []openMeasurement, warmErrs map[string]string, phgAlloc bool) *report {
	r := &report{cfg: cfg, cpu: cpuModel(), commit: gitCommit(), pin: pin, closed: closed, open: open, warmErrs: warmErrs, phgAlloc: phgAlloc}
	r.machine = fmt.Sprintf("%s, %d CPUs, %s %s/%s", r.cpu, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, m := range closed {
		if !slices.Contains(r.order, m.workload) {
			r.order = append(r.order, m.workload)
		}
	}
	for _, m := range open {
		if !slices.Contains(r.openOrd, m.workload) {
			r.openOrd = append(r.openOrd, m.workload)
		}
	}
	return r
}

func (r *report) failed() bool {
	for _, m := range r.closed {
		if m.errors > 0 {
			return true
		}
	}
	for _, m := range r.open {
		if m.errors > 0 {
			return true
		}
	}
	return len(r.warmErrs) > 0
}

// pick returns the measurements of one workload and proxy, by round.
func (r *report) pick(workload, proxy string) []measurement {
	var out []measurement
	for _, m := range r.closed {
		if m.workload == workload && m.proxy == proxy {
			out = append(out, m)
		}
	}
	return out
}

func (r *report) pickOpen(workload, proxy string) []openMeasurement {
	var out []openMeasurement
	for _, m := range r.open {
		if m.workload == workload && m.proxy == proxy {
			out = append(out, m)
		}
	}
	return out
}

// summary is the median over rounds of one proxy's measurements.
type summary struct {
	rps           float64
	p50, p99      float64 // seconds
	cpu1k         float64 // CPU seconds per 1000 requests
	cpuOK         bool
	allocs        float64
	allocsOK      bool
	errors, reqs  int
	firstErr      string
	busy          float64
	upConns       float64   // per 1000 requests
	cpuPer, rpsBy []float64 // by round, for ratios
	allocBy       []float64
}

func summarize(ms []measurement) summary {
	var s summary
	var p50s, p99s, ups []float64
	s.cpuOK, s.allocsOK = len(ms) > 0, len(ms) > 0
	for _, m := range ms {
		s.rpsBy = append(s.rpsBy, m.rps)
		p50s, p99s = append(p50s, m.p50.Seconds()), append(p99s, m.p99.Seconds())
		s.errors += m.errors
		s.reqs += m.requests
		if s.firstErr == "" {
			s.firstErr = m.firstErr
		}
		s.busy = max(s.busy, m.busy)
		if m.requests > 0 {
			ups = append(ups, float64(m.upConns)/float64(m.requests)*1000)
		}
		if m.cpuOK && m.requests > 0 {
			s.cpuPer = append(s.cpuPer, m.cpu.Seconds()/float64(m.requests)*1000)
		} else {
			s.cpuOK = false
		}
		if m.allocsOK {
			s.allocBy = append(s.allocBy, m.allocs)
		} else {
			s.allocsOK = false
		}
	}
	s.rps, s.p50, s.p99, s.upConns = median(s.rpsBy), median(p50s), median(p99s), median(ups)
	if s.cpuOK {
		s.cpu1k = median(s.cpuPer)
	}
	if s.allocsOK {
		s.allocs = median(s.allocBy)
	}
	return s
}

// pairedRatio is the median over rounds of b[i]/a[i]: each round's two
// measurements ran back to back, so their ratio cancels slow drift.
func pairedRatio(a, b []float64) (float64, bool) {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if a[i] > 0 {
			rs = append(rs, b[i]/a[i])
		}
	}
	if len(rs) == 0 {
		return 0, false
	}
	return median(rs), true
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *report) printTables(w io.Writer) {
	fmt.Fprintf(w, "machine: %s; commit %s; %s\n", r.machine, r.commit, r.pin)
	fmt.Fprintf(w, "closed loop: %d connections (h2: streams on one connection), %s per measurement, median of %d interleaved rounds\n\n",
		r.cfg.conns, r.cfg.duration, r.cfg.rounds)
	rows := [][]string{{"workload", "base req/s", "phg req/s", "phg/base", "p50 ms base / phg", "p99 ms base / phg",
		"CPU s/1000 req base / phg (phg/base)", "allocs/req base / phg", "upstream conns/1k req base / phg", "errors"}}
	var notes []string
	busy := false
	for _, name := range r.order {
		b, p := summarize(r.pick(name, "baseline")), summarize(r.pick(name, "phiguard"))
		baseRate := fmt.Sprintf("%.0f", b.rps)
		if b.busy >= busyLimit {
			baseRate += " †"
			busy = true
		}
		ratio, ok := pairedRatio(b.rpsBy, p.rpsBy)
		cpu := "n/a"
		if b.cpuOK && p.cpuOK {
			cr, _ := pairedRatio(b.cpuPer, p.cpuPer)
			cpu = fmt.Sprintf("%.3f / %.3f (%.1f×)", b.cpu1k, p.cpu1k, cr)
		}
		errs := "0"
		if b.errors+p.errors > 0 {
			errs = fmt.Sprintf("FAILED: base %d / phg %d of %d / %d", b.errors, p.errors, b.reqs, p.reqs)
			for _, s := range []struct {
				name string
				sum  summary
			}{{"baseline", b}, {"phiguard", p}} {
				if s.sum.errors > 0 {
					notes = append(notes, fmt.Sprintf("errors %s %s: %d, first: %s", name, s.name, s.sum.errors, s.sum.firstErr))
				}
			}
		}
		rows = append(rows, []string{name, baseRate, fmt.Sprintf("%.0f", p.rps), ratioCell(ratio, ok),
			pair(b.p50, p.p50), pair(b.p99, p.p99), cpu, allocPair(b, p), fmt.Sprintf("%.0f / %.0f", b.upConns, p.upConns), errs})
	}
	printTable(w, rows)
	fmt.Fprintln(w, "\nphg/base: median over rounds of phiguard/baseline measured back to back; other columns: medians over rounds.")
	fmt.Fprintln(w, "upstream conns: new connections each proxy opened to the app per 1000 requests (0 once its idle pool holds them all).")
	if busy {
		fmt.Fprintf(w, "† the harness (load generator and upstream) was over %.0f%% busy during a baseline measurement: the baseline req/s is a floor and phg/base a ceiling.\n", busyLimit*100)
	}
	if !r.phgAlloc {
		fmt.Fprintln(w, "phiguard allocs n/a: this phiguard serves no /metrics (policy key admin.listen).")
	}
	for _, k := range sortedKeys(r.warmErrs) {
		notes = append(notes, fmt.Sprintf("warm-up %s: %s", k, r.warmErrs[k]))
	}
	for _, n := range notes {
		fmt.Fprintln(w, "ERROR", n)
	}
	if len(r.open) == 0 {
		return
	}
	fmt.Fprintf(w, "\nopen loop: %d req/s on a fixed schedule for %s, latency from each request's scheduled time, median of %d rounds\n\n",
		r.cfg.rate, r.cfg.duration, r.cfg.rounds)
	rows = [][]string{{"workload", "rate req/s", "requests (all rounds) base / phg", "p50 ms base / phg", "p99 ms base / phg", "added p50 ms", "errors"}}
	for _, name := range r.openOrd {
		bs, ps := r.pickOpen(name, "baseline"), r.pickOpen(name, "phiguard")
		var b50, p50, b99, p99, added []float64
		be, pe, bn, pn := 0, 0, 0, 0
		for i, m := range bs {
			b50, b99 = append(b50, m.p50.Seconds()), append(b99, m.p99.Seconds())
			be, bn = be+m.errors, bn+m.requests
			if i < len(ps) {
				added = append(added, ps[i].p50.Seconds()-m.p50.Seconds())
			}
		}
		for _, m := range ps {
			p50, p99 = append(p50, m.p50.Seconds()), append(p99, m.p99.Seconds())
			pe, pn = pe+m.errors, pn+m.requests
		}
		errs := "0"
		if be+pe > 0 {
			errs = fmt.Sprintf("FAILED: base %d / phg %d of %d / %d", be, pe, bn, pn)
			for _, m := range append(bs, ps...) {
				if m.errors > 0 {
					notes = append(notes, fmt.Sprintf("open-loop errors %s %s round %d: %d, first: %s", name, m.proxy, m.round+1, m.errors, m.firstErr))
				}
			}
		}
		rows = append(rows, []string{name, fmt.Sprint(r.cfg.rate), fmt.Sprintf("%d / %d", bn, pn),
			pair(median(b50), median(p50)), pair(median(b99), median(p99)), fmt.Sprintf("%+.3f", median(added)*1000), errs})
	}
	printTable(w, rows)
	for _, n := range notes {
		if strings.HasPrefix(n, "open-loop") {
			fmt.Fprintln(w, "ERROR", n)
		}
	}
}

func ratioCell(ratio float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", ratio)
}

// pair formats two latencies in seconds as milliseconds.
func pair(a, b float64) string {
	return msf(a) + " / " + msf(b)
}

func msf(s float64) string {
	ms := s * 1000
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

func ms(d time.Duration) string { return msf(d.Seconds()) + "ms" }

func allocPair(b, p summary) string {
	f := func(s summary) string {
		if !s.allocsOK {
			return "n/a"
		}
		return fmt.Sprintf("%.0f", s.allocs)
	}
	return f(b) + " / " + f(p)
}

// printTable aligns cells in columns separated by " | ": the first column
// to the left, the others to the right.
func printTable(w io.Writer, rows [][]string) {
	widths := map[int]int{}
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for ri, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i == 0 || ri == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if ri == 0 {
			var sep []string
			for i := range row {
				sep = append(sep, strings.Repeat("-", widths[i]))
			}
			fmt.Fprintln(w, strings.Join(sep, "-|-"))
		}
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// writeBenchFile writes every round's measurement in Go benchmark format,
// one line per round, so benchstat sees the variance:
//
//	benchstat bin/bench/OLD.txt bin/bench/NEW.txt   # two commits
//	benchstat -col /proxy bin/bench/NEW.txt         # baseline against phiguard
func (r *report) writeBenchFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "goos: %s\ngoarch: %s\npkg: github.com/phiguard/phiguard/bench\ncpu: %s\ncommit: %s\nconns: %d\nduration: %s\npinned: %t\n",
		runtime.GOOS, runtime.GOARCH, r.cpu, r.commit, r.cfg.conns, r.cfg.duration, r.pin.on)
	for _, m := range r.closed {
		nsPerOp := 0.0
		if m.requests > 0 {
			nsPerOp = float64(m.elapsed.Nanoseconds()) / float64(m.requests)
		}
		fmt.Fprintf(&b, "BenchmarkProxy/workload=%s/proxy=%s 1 %.0f ns/op %.1f req/s %.1f p50-µs %.1f p99-µs",
			m.workload, m.proxy, nsPerOp, m.rps, us(m.p50), us(m.p99))
		if m.cpuOK && m.requests > 0 {
			fmt.Fprintf(&b, " %.2f cpu-ms/1000req", m.cpu.Seconds()*1000/float64(m.requests)*1000)
		}
		if m.allocsOK {
			fmt.Fprintf(&b, " %.1f allocs/req", m.allocs)
		}
		b.WriteByte('\n')
	}
	for _, m := range r.open {
		fmt.Fprintf(&b, "BenchmarkOpenLoop/workload=%s/rate=%d/proxy=%s 1 %.1f p50-µs %.1f p99-µs\n",
			m.workload, r.cfg.rate, m.proxy, us(m.p50), us(m.p99))
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// cpuModel names the processor, from /proc/cpuinfo where there is one.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && (strings.TrimSpace(k) == "model name" || strings.TrimSpace(k) == "Model") {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// gitCommit is the short commit of the working tree, with -dirty when
// tracked files differ from it; "unknown" outside a git checkout.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		commit += "-dirty"
	}
	return commit
}

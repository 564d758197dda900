// Command bench measures phiguard against a bare httputil.ReverseProxy on
// loopback: the same upstream, the same requests and the same real ES256
// tokens through both, interleaved round by round, reported as one table of
// throughput, latency, CPU and allocations per workload.
//
//	go run ./bench [-rounds 3] [-duration 2s] [-conns 32] [-rate 500]
//	               [-workloads a,b] [-phiguard PATH] [-pin=true] [-out FILE]
//	               [-cpuprofile DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	rounds    int
	duration  time.Duration
	conns     int
	rate      int
	workloads []string
	phiguard  string
	pin       bool
	out       string
	profile   string // directory for CPU profiles of each closed-loop measurement; "" for none
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == baselineFlag {
		return serveBaseline(ctx, args[1:], stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return runHarness(ctx, cfg, stdout, stderr)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds; each value reported is the median over rounds")
	fs.DurationVar(&cfg.duration, "duration", 2*time.Second, "length of each measurement")
	fs.IntVar(&cfg.conns, "conns", 32, "closed-loop connections (HTTP/1.1) or concurrent streams (h2)")
	fs.IntVar(&cfg.rate, "rate", 500, "open-loop request rate per second; 0 skips the open-loop phase")
	workloads := fs.String("workloads", "", "comma-separated workloads to run (default all)")
	fs.StringVar(&cfg.phiguard, "phiguard", "", "phiguard binary (default: go build ./cmd/phiguard into a temp dir)")
	fs.BoolVar(&cfg.pin, "pin", true, "pin each proxy to the last CPU and the harness to the others (needs 2 CPUs)")
	fs.StringVar(&cfg.profile, "cpuprofile", "", "write a CPU profile of each proxy for each closed-loop measurement into this directory")
	fs.StringVar(&cfg.out, "out", "", "results in Go benchmark format for benchstat (default bin/bench/COMMIT.txt)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var problems []error
	if cfg.rounds < 1 {
		problems = append(problems, fmt.Errorf("-rounds: want at least 1, got %d", cfg.rounds))
	}
	if cfg.duration <= 0 {
		problems = append(problems, fmt.Errorf("-duration: want more than 0, got %s", cfg.duration))
	}
	if cfg.conns < 1 {
		problems = append(problems, fmt.Errorf("-conns: want at least 1, got %d", cfg.conns))
	}
	if cfg.rate < 0 || cfg.rate > 1_000_000 {
		problems = append(problems, fmt.Errorf("-rate: want 0 to 1000000, got %d", cfg.rate))
	}
	for _, w := range strings.Split(*workloads, ",") {
		if w = strings.TrimSpace(w); w != "" {
			cfg.workloads = append(cfg.workloads, w)
		}
	}
	if _, err := selectWorkloads(cfg.workloads); err != nil {
		problems = append(problems, fmt.Errorf("-workloads: %w", err))
	}
	return cfg, errors.Join(problems...)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the harness re-execute the test binary as the baseline
// proxy, as it re-executes the bench binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == baselineFlag {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHarness runs the whole harness at tiny settings: phiguard built from
// this tree, one round, one passthrough and one decrypting workload.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds phiguard and starts two proxies")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "phiguard")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/phiguard/phiguard/cmd/phiguard").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	outFile := filepath.Join(dir, "bench.txt")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-rounds", "1", "-duration", "200ms", "-conns", "2", "-rate", "20",
		"-workloads", "passthrough,decrypt-10x200B", "-phiguard", bin, "-out", outFile}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	t.Logf("stdout:\n%s", &stdout)

	closed, open := tableRows(stdout.String())
	for _, name := range []string{"passthrough", "decrypt-10x200B"} {
		row, ok := closed[name]
		if !ok {
			t.Errorf("closed-loop table has no %s row", name)
			continue
		}
		if len(row) != 10 {
			t.Errorf("%s row has %d columns, want 10: %q", name, len(row), row)
			continue
		}
		if ratio, err := strconv.ParseFloat(row[3], 64); err != nil || ratio <= 0 {
			t.Errorf("%s ratio = %q, want a positive number", name, row[3])
		}
		if base, _, _ := strings.Cut(row[7], " / "); base == "n/a" {
			t.Errorf("%s baseline allocs/req = n/a, want a number (its /metrics)", name)
		}
		if row[9] != "0" {
			t.Errorf("%s errors = %q, want 0", name, row[9])
		}
		if o, ok := open[name]; !ok || o[len(o)-1] != "0" {
			t.Errorf("open-loop %s row = %q, want one with 0 errors", name, o)
		}
	}
	data, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"BenchmarkProxy/workload=passthrough/proxy=baseline 1 ",
		"BenchmarkProxy/workload=passthrough/proxy=phiguard 1 ",
		"BenchmarkProxy/workload=decrypt-10x200B/proxy=baseline 1 ",
		"BenchmarkProxy/workload=decrypt-10x200B/proxy=phiguard 1 ",
	} {
		if got := bytes.Count(data, []byte(name)); got != 1 {
			t.Errorf("%s has %d lines starting %q, want 1", outFile, got, name)
		}
	}
}

// tableRows splits the closed-loop and open-loop tables into cells by
// workload name.
func tableRows(out string) (closed, open map[string][]string) {
	closed, open = map[string][]string{}, map[string][]string{}
	cur := closed
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "open loop:") {
			cur = open
		}
		cells := strings.Split(line, " | ")
		if len(cells) < 2 || strings.HasPrefix(line, "workload") || strings.HasPrefix(line, "-") {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		cur[cells[0]] = cells
	}
	return closed, open
}

func TestDocument(t *testing.T) {
	for _, tc := range []struct {
		size   int
		fields []string
		valLen int
	}{
		{512, phiFields[:2], 160},
		{4 << 10, phiFields, fieldLen},
		{64 << 10, phiFields, fieldLen},
	} {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			doc := document(tc.size, tc.fields, tc.valLen)
			if len(doc) != tc.size {
				t.Errorf("got %d bytes, want %d", len(doc), tc.size)
			}
			var m map[string]any
			if err := json.Unmarshal(doc, &m); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			for _, f := range tc.fields {
				if s, _ := m[f].(string); len(s) != tc.valLen {
					t.Errorf("field %s has %d bytes, want %d", f, len(s), tc.valLen)
				}
			}
			if bytes.Contains(bytes.ToLower(doc), []byte("ephi")) {
				t.Error("document holds text phiguard would read as a token marker")
			}
		})
	}
}

func TestParseMallocs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    float64
		wantErr bool
	}{
		{"# HELP go_memstats_mallocs_total x\n# TYPE go_memstats_mallocs_total counter\ngo_memstats_mallocs_total 1.234e+06\n", 1234000, false},
		{"go_memstats_frees_total 5\n", 0, true},
	} {
		got, err := parseMallocs(strings.NewReader(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseMallocs(%q) = %v, %v; want %v, error %t", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const adminPolicy = `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "http://127.0.0.1:1"}
admin: {listen: "ADMIN"}
audit: {sinks: [{type: stderr}]}
routes:
  - {name: health, match: {path: /healthz}, auth: none}
`

// TestAdminListener: /healthz and /metrics answer on the admin address,
// never on the proxy's, and the metrics include the Go runtime's.
func TestAdminListener(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte(strings.Replace(adminPolicy, "ADMIN", "127.0.0.1:0", 1)), 0o600)
	stdout, stderr := newLockedBuffer(), newLockedBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", pol}, stdout, stderr) }()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	stopped := make(chan struct{})
	go func() {
		err := <-done
		close(stopped)
		done <- err
	}()
	admin := waitLogged(t, stderr, stopped, deadline.C, "admin listening")
	proxyAddr := waitListening(t, stderr, stopped, deadline.C)

	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + admin + "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("admin /healthz: %d %q, want 200 ok", code, body)
	}
	code, body := get("http://" + admin + "/metrics")
	for _, series := range []string{"go_memstats_mallocs_total", "process_cpu_seconds_total", "go_goroutines"} {
		if code != 200 || !strings.Contains(body, "\n"+series+" ") {
			t.Errorf("admin /metrics: %d, no %s series", code, series)
		}
	}
	// The proxy port does not serve the admin endpoints.
	if code, _ := get("http://" + proxyAddr + "/metrics"); code != http.StatusForbidden {
		t.Errorf("proxy /metrics: %d, want 403 (default deny)", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// TestAdminAddressInUse: serve refuses to start without its admin listener.
func TestAdminAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte(strings.Replace(adminPolicy, "ADMIN", busy.Addr().String(), 1)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb strings.Builder
	err = run(ctx, []string{"serve", "-config", pol}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "admin listener") {
		t.Errorf("serve: got %v, want an admin listener error", err)
	}
}

// TestAdminPprof: the profiler answers only when admin.pprof asks for it.
func TestAdminPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		rec := httptest.NewRecorder()
		adminHandler(newRegistry(), slog.New(slog.DiscardHandler), on, func(context.Context) []string { return nil }, nil, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", on, rec.Code, want)
		}
	}
}

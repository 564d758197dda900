package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/phiguard/phiguard/internal/liblog"
)

// newRegistry holds phiguard's metrics, with the Go runtime's and the
// process's. It is injected, never the global default registry.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// adminHandler serves the operations endpoints: /healthz (the process
// answers), /readyz (ready for requests, or why not), /metrics
// (Prometheus text format), POST /sessions/revoke when revoke is set,
// GET and POST /consent when consent is set,
// and, when asked, Go's profiler under /debug/pprof/. notReady returns
// the reasons phiguard is not ready.
func adminHandler(reg *prometheus.Registry, log *slog.Logger, pprofOn bool, notReady func(context.Context) []string, revoke, consent http.Handler) http.Handler {
	mux := http.NewServeMux()
	if revoke != nil {
		mux.Handle("POST /sessions/revoke", revoke)
	}
	if consent != nil {
		mux.Handle("/consent", consent)
	}
	if pprofOn {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		why := notReady(ctx)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if len(why) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(struct {
				Status  string   `json:"status"`
				Reasons []string `json:"reasons"`
			}{"not ready", why})
			return
		}
		w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
	}))
	return mux
}

// adminServer serves h with the admin listener's timeouts.
func adminServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // a CPU profile runs 30s by default
		ErrorLog:          liblog.New(log, "admin server"),
	}
}

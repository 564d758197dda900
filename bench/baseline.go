package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// baselineFlag re-executes the harness binary as the baseline proxy:
// bench -serve-baseline ADDR UPSTREAM METRICS_ADDR MAX_IDLE_CONNS
const baselineFlag = "-serve-baseline"

// serveBaseline is the bare reverse proxy phiguard is compared with: the
// same listener protocols (HTTP/1.1 and h2c), a transport that keeps enough
// idle connections to the app, a buffer pool, nothing else. It serves Go's
// runtime metrics (and, for -cpuprofile, Go's CPU profiler) on a second
// port so it is measured the same way as phiguard.
func serveBaseline(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) != 4 {
		return fmt.Errorf("%s wants ADDR UPSTREAM METRICS_ADDR MAX_IDLE_CONNS", baselineFlag)
	}
	addr, metricsAddr := args[0], args[2]
	up, err := url.Parse(args[1])
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	maxIdle, err := strconv.Atoi(args[3])
	if err != nil || maxIdle < 1 {
		return fmt.Errorf("max idle connections: want a positive number, got %q", args[3])
	}
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return err
	}
	errLog := log.New(stderr, "baseline: ", 0)
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		DisableCompression:    true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.SetXForwarded()
		},
		Transport:  tr,
		BufferPool: &bufferPool{},
		ErrorLog:   errLog,
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mln, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		ln.Close()
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- msrv.Serve(mln) }()
	select {
	case err := <-errc:
		srv.Close()
		msrv.Close()
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(shutdown), msrv.Shutdown(shutdown))
}

// bufferPool lends the reverse proxy its 32 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

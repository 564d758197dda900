package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/phiguard/phiguard/internal/liblog"
	"github.com/phiguard/phiguard/policy"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", `Runs the proxy, and the admin listener (/healthz, /readyz, /metrics)
unless admin.listen is off. SIGHUP reopens the audit files and reloads the
policy (so does a change to the file, with reload.watch); SIGTERM or SIGINT
drains (ingress.drain_delay, ingress.drain_timeout) and exits 0 once the
requests in flight are done.`, stdout, stderr)
	config := fs.String("config", "", "the policy `FILE` (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *config == "" {
		return usageError{"serve needs -config FILE"}
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	defer routeStdLog(log)()
	pol, err := policy.Load(*config)
	if err != nil {
		return err
	}
	sc, err := newSidecar(ctx, *config, pol, stdout, stderr, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", pol.File.Ingress.Listen)
	if err != nil {
		sc.Close()
		return err
	}
	var aln net.Listener
	if a := pol.File.Admin; a != nil {
		if aln, err = net.Listen("tcp", a.Listen); err != nil {
			ln.Close()
			sc.Close()
			return fmt.Errorf("admin listener (admin.listen; \"off\" for none): %w", err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return errors.Join(sc.serve(ctx, ln, aln, hup), sc.Close())
}

// serve runs the listeners until ctx ends, then drains; aln may be nil.
// A value on hup is SIGHUP.
func (sc *sidecar) serve(ctx context.Context, ln, aln net.Listener, hup <-chan os.Signal) error {
	pol := sc.Policy()
	in := pol.File.Ingress
	srv := &http.Server{
		Handler:           sc.proxy,
		ReadHeaderTimeout: in.ReadHeaderTimeout,
		ReadTimeout:       in.ReadTimeout,
		WriteTimeout:      in.WriteTimeout,
		IdleTimeout:       in.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          liblog.New(sc.log, "net/http server"),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	if in.TLS != nil {
		cert, err := tls.LoadX509KeyPair(in.TLS.Cert, in.TLS.Key)
		if err != nil {
			ln.Close()
			if aln != nil {
				aln.Close()
			}
			return fmt.Errorf("ingress tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.Protocols.SetHTTP2(true)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	errc := make(chan error, 2)
	go func() {
		if in.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var asrv *http.Server
	if aln != nil {
		asrv = adminServer(adminHandler(sc.reg, sc.log, pol.File.Admin.Pprof, sc.readiness), sc.log)
		go func() { errc <- asrv.Serve(aln) }()
		sc.log.Info("admin listening", "addr", aln.Addr().String())
	}
	sc.log.Info("phiguard listening", "addr", ln.Addr().String(), "upstream", pol.Upstream.String(), "routes", len(pol.Routes), "version", version)

	// Background work ends with the listeners.
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	if *pol.File.Reload.Watch {
		go sc.watch(bg, pol.File.Reload.Interval)
	}
	go func() {
		for {
			select {
			case <-bg.Done():
				return
			case <-hup:
				sc.hangup(bg)
			}
		}
	}()

	var failed error
	select {
	case err := <-errc:
		failed = err // a listener failed: stop the other one too
	case <-ctx.Done():
	}
	return errors.Join(failed, sc.drain(srv, asrv, in))
}

// drain turns readiness off, keeps serving for drain_delay, closes the
// ingress listener and waits up to drain_timeout for the requests in
// flight, then stops the admin listener.
func (sc *sidecar) drain(srv, asrv *http.Server, in policy.Ingress) error {
	sc.draining.Store(true)
	sc.ready.Store(false)
	sc.log.Info("draining", "delay", in.DrainDelay.String(), "timeout", in.DrainTimeout.String(), "in_flight", sc.proxy.Engine().InFlight())
	if in.DrainDelay > 0 {
		time.Sleep(in.DrainDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.DrainTimeout)
	defer cancel()
	var err error
	if serr := srv.Shutdown(ctx); serr != nil {
		err = fmt.Errorf("drain: requests still in flight after ingress.drain_timeout (%s): %w", in.DrainTimeout, serr)
		srv.Close()
	}
	if asrv != nil {
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		asrv.Shutdown(actx)
		acancel()
	}
	if err == nil {
		sc.log.Info("drained")
	}
	return err
}

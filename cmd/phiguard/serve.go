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
	// SIGHUP is phiguard's from the start: its default action would kill
	// the process. A termination signal after the first forces the drain.
	hup, term := make(chan os.Signal, 1), make(chan os.Signal, 2)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(hup)
	defer signal.Stop(term)
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
	if sc.egress != nil {
		if sc.egressLn, err = net.Listen("tcp", pol.File.Egress.Listen); err != nil {
			ln.Close()
			if aln != nil {
				aln.Close()
			}
			sc.Close()
			return fmt.Errorf("egress listener (egress.listen): %w", err)
		}
	}
	return errors.Join(sc.serve(ctx, ln, aln, signals{hup: hup, term: term}), sc.Close())
}

// signals are the process's signals for serve; nil channels for none.
type signals struct {
	hup  <-chan os.Signal // reopen the audit files, reload
	term <-chan os.Signal // SIGTERM, SIGINT: the first begins the drain, a later one forces it
}

// serve runs the listeners until ctx ends, then drains; aln may be nil.
func (sc *sidecar) serve(ctx context.Context, ln, aln net.Listener, sig signals) error {
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
		if err := sc.reloadCert(false); err != nil {
			ln.Close()
			if aln != nil {
				aln.Close()
			}
			return err
		}
		srv.TLSConfig = &tls.Config{
			// The certificate in force: renewed files are taken up on SIGHUP
			// and by the policy watch.
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return sc.cert.Load(), nil },
			MinVersion:     tls.VersionTLS12,
		}
		srv.Protocols.SetHTTP2(true)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	errc := make(chan error, 3)
	go func() {
		if in.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var esrv *http.Server
	if sc.egressLn != nil {
		// Plain HTTP/1.1 on loopback, as the app's HTTP clients speak to a
		// forward proxy; phiguard speaks TLS to the vendor.
		esrv = &http.Server{
			Handler:           sc.egress,
			ReadHeaderTimeout: in.ReadHeaderTimeout,
			ReadTimeout:       in.ReadTimeout,
			WriteTimeout:      in.ReadTimeout + pol.File.Egress.UpstreamTimeout + in.ReadTimeout,
			IdleTimeout:       in.IdleTimeout,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          liblog.New(sc.log, "net/http egress server"),
		}
		go func() { errc <- esrv.Serve(sc.egressLn) }()
		sc.log.Info("egress listening", "addr", sc.egressLn.Addr().String(), "egress_routes", len(pol.EgressRoutes))
	}
	var asrv *http.Server
	if aln != nil {
		asrv = adminServer(adminHandler(sc.reg, sc.log, pol.File.Admin.Pprof, sc.readiness, sc.revokeHandler(), sc.consentHandler()), sc.log)
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
			case <-sig.hup:
				sc.hangup(bg)
			}
		}
	}()

	var failed error
	select {
	case err := <-errc:
		failed = err // a listener failed: stop the other one too
	case <-sig.term: // the signal that begins the drain
	case <-ctx.Done():
		// A signal's cause wraps context.Canceled: compare, do not errors.Is.
		if cause := context.Cause(ctx); cause != context.Canceled && sig.term != nil {
			// A signal canceled ctx (main listens too), and the same signal
			// is on its way to term: take it, so that only a later one
			// forces the drain.
			select {
			case <-sig.term:
			case <-time.After(time.Second):
			}
		}
	}
	return errors.Join(failed, sc.drain(srv, esrv, asrv, in, sig.term))
}

// abandonWait bounds waiting, after the drain deadline closed the
// connections, for the requests still running to write their audit
// records before the sinks close.
const abandonWait = 5 * time.Second

// drain turns readiness off, keeps serving for drain_delay, closes the
// ingress listener and waits up to drain_timeout for the requests in
// flight, then stops the admin listener. A signal on term during the
// drain cuts it short.
func (sc *sidecar) drain(srv, esrv, asrv *http.Server, in policy.Ingress, term <-chan os.Signal) error {
	sc.draining.Store(true)
	sc.ready.Store(false)
	sc.log.Info("draining", "delay", in.DrainDelay.String(), "timeout", in.DrainTimeout.String(), "in_flight", sc.proxy.Engine().InFlight())
	forced := make(chan struct{})
	stopWatching := make(chan struct{})
	defer close(stopWatching)
	go func() {
		select {
		case <-term:
			sc.log.Warn("second signal: not waiting for the requests in flight")
			close(forced)
		case <-stopWatching:
		}
	}()
	if in.DrainDelay > 0 {
		select {
		case <-time.After(in.DrainDelay):
		case <-forced:
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.DrainTimeout)
	defer cancel()
	go func() {
		select {
		case <-forced:
			cancel()
		case <-ctx.Done():
		}
	}()
	var err error
	if serr := srv.Shutdown(ctx); serr != nil {
		n := sc.proxy.Engine().InFlight()
		err = fmt.Errorf("drain: %d requests still in flight after ingress.drain_timeout (%s) or a second signal: %w", n, in.DrainTimeout, serr)
		srv.Close()
		// Their connections are closed; let them write their audit
		// records before the sinks close.
		for deadline := time.Now().Add(abandonWait); sc.proxy.Engine().InFlight() > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if esrv != nil {
		// After the ingress: calls the app makes while it finishes the
		// requests in flight still go out.
		if esrv.Shutdown(ctx) != nil {
			esrv.Close()
		}
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

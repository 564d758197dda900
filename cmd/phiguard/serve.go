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
	"time"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/liblog"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/proxy"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	config := fs.String("config", "", "policy file (required)")
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
	handler, closeAll, err := build(ctx, pol, stdout, stderr, log)
	if err != nil {
		return err
	}
	defer closeAll()
	ln, err := net.Listen("tcp", pol.File.Ingress.Listen)
	if err != nil {
		return err
	}
	if pol.File.Admin == nil {
		return serve(ctx, ln, pol, handler, log)
	}
	aln, err := net.Listen("tcp", pol.File.Admin.Listen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	// Either listener failing stops both.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	adminDone := make(chan error, 1)
	go func() {
		err := serveAdmin(ctx, aln, adminHandler(newRegistry(), log, pol.File.Admin.Pprof), log)
		cancel()
		adminDone <- err
	}()
	err = serve(ctx, ln, pol, handler, log)
	cancel()
	return errors.Join(err, <-adminDone)
}

// build wires the policy's parts into the proxy: keyring, verifier, auditor.
func build(ctx context.Context, pol *policy.Policy, stdout, stderr io.Writer, log *slog.Logger) (http.Handler, func(), error) {
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	var sinks []audit.Sink
	for _, s := range pol.File.Audit.Sinks {
		switch s.Type {
		case "stdout":
			sinks = append(sinks, audit.NewWriterSink("stdout", stdout))
		case "stderr":
			sinks = append(sinks, audit.NewWriterSink("stderr", stderr))
		case "file":
			fsink, err := audit.OpenFileSink(s.Path)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			sinks = append(sinks, fsink)
			closers = append(closers, fsink.Close)
		}
	}
	opts := proxy.Options{
		Policy:  pol,
		Auditor: audit.NewAuditor(log, *pol.File.Audit.FailClosed, sinks...),
		Log:     log,
	}
	if k := pol.File.Keys; k != nil {
		lp, err := keys.OpenLocal(k.Keyring)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		kr, err := keys.Open(ctx, k.Keyring, lp)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		for _, o := range pol.File.Orgs {
			if !kr.Has(o.ID) {
				log.Warn("organization has no keys: its PHI routes will answer 503", "org", o.ID, "fix", "phiguard keys create -keyring "+k.Keyring+" -org "+o.ID)
			}
		}
		opts.Keys = kr
	}
	if id := pol.File.Identity; id != nil && id.JWT != nil {
		v, err := identity.NewVerifier(identity.Config{
			JWKSFile: id.JWT.JWKS, Issuer: id.JWT.Issuer, Audience: id.JWT.Audience, ClockSkew: id.JWT.ClockSkew, MaxTokenLifetime: id.JWT.MaxTokenLifetime,
			CacheSize: id.JWT.CacheSize, CacheTTL: id.JWT.CacheTTL,
			OrgClaim: id.Claims.Org, UserClaim: id.Claims.User, RoleClaim: id.Claims.Role,
		})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		opts.Verifier = v
	}
	p, err := proxy.New(opts)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return p, closeAll, nil
}

// serve runs the listener until ctx ends, then drains for up to 10s.
func serve(ctx context.Context, ln net.Listener, pol *policy.Policy, h http.Handler, log *slog.Logger) error {
	in := pol.File.Ingress
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: in.ReadHeaderTimeout,
		ReadTimeout:       in.ReadTimeout,
		WriteTimeout:      in.WriteTimeout,
		IdleTimeout:       in.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          liblog.New(log, "net/http server"),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	if in.TLS != nil {
		cert, err := tls.LoadX509KeyPair(in.TLS.Cert, in.TLS.Key)
		if err != nil {
			return fmt.Errorf("ingress tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.Protocols.SetHTTP2(true)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	errc := make(chan error, 1)
	go func() {
		if in.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("phiguard listening", "addr", ln.Addr().String(), "upstream", pol.Upstream.String(), "routes", len(pol.Routes), "version", version)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

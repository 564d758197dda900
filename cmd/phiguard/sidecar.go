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
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/consent"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/liblog"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/metrics"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/proxy"
	"github.com/phiguard/phiguard/session"
)

// sidecar is a running phiguard: the proxy, and what outlives a policy
// reload (the audit sinks, the transport to the app, the capacity slots,
// the metrics).
type sidecar struct {
	path    string // the policy file
	log     *slog.Logger
	auditor *audit.Auditor
	closers []func() error // the file sinks
	jwt     *identity.Stats
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	proxy   *proxy.Proxy
	// egress is the egress listener's handler; nil when the policy lists
	// no egress_routes at start.
	egress *proxy.Egress
	// egressLn is the egress listener, opened by serve's caller when
	// egress is set; nil for none.
	egressLn net.Listener

	mu          sync.Mutex // serializes reloads
	pol         atomic.Pointer[policy.Policy]
	seen        string // the digest of the policy text in force, or last refused as invalid; under mu
	unreadable  bool   // the watch found the file unreadable; under mu
	lastFailure string // the last reload's error, "" after a success; under mu

	draining atomic.Bool
	ready    atomic.Bool // the last /readyz answer

	// keys is the keyring in force, swapped whole by reloads; requests
	// read it per value.
	keys liveKeys
	// keysDigest is of the keyring files last loaded (under mu);
	// keysComplete is set once a load left no org unavailable: until then
	// phiguard is not ready.
	keysDigest   string
	loadedDigest string    // of the files as the last loadKeyring began; under mu
	verified     time.Time // when every keyset was last unwrapped; under mu
	keysComplete atomic.Bool

	// hasher keyed-hashes path identifiers in records (audit is a
	// restart-only section).
	hasher *audit.Hasher
	// sessions is the session store, opened at start (state is a
	// restart-only section): reloads keep it.
	sessions session.Store
	// consent is the SMS consent registry, in the same store.
	consent consent.Store

	cert atomic.Pointer[tls.Certificate] // ingress.tls's, when set
	// stopJWKS stops the refresh of the verifier in force's JWKS URL.
	jwksMu     sync.Mutex
	stopJWKS   context.CancelFunc
	certDigest string // of the files cert was read from; under certMu
	certMu     sync.Mutex
}

// newSidecar builds what pol describes. Close it when done.
func newSidecar(ctx context.Context, path string, pol *policy.Policy, stdout, stderr io.Writer, log *slog.Logger) (*sidecar, error) {
	sc := &sidecar{path: path, log: log, jwt: new(identity.Stats), reg: newRegistry(), seen: pol.SHA256}
	sinks, closers, err := openSinks(pol.File.Audit.Sinks, stdout, stderr)
	if err != nil {
		return nil, err
	}
	sc.closers = closers
	if sc.auditor, err = newAuditor(pol.File.Audit, log, sinks); err != nil {
		for _, c := range closers {
			c()
		}
		return nil, err
	}
	if err := sc.auditor.Event(ctx, audit.EventStart, "version", version, "policy_sha256", pol.SHA256); err != nil {
		log.Error("the audit trail did not take the start event", "err", err)
	}
	sc.metrics = metrics.New(sc.reg, metrics.Sources{
		InFlight: func() int { return sc.proxy.Engine().InFlight() },
		Ready:    sc.ready.Load,
		JWT:      sc.jwt,
		Auditor:  sc.auditor,
		Keyring:  sc.keys.ring.Load,
		Version:  version,
	})
	session.SetLibraryLog(liblog.New(log, "go-redis"))
	if sc.sessions, err = openSessionStore(pol.File.State); err != nil {
		sc.Close()
		return nil, err
	}
	if sc.consent, err = openConsentStore(pol.File.State, pol.File.Consent); err != nil {
		sc.Close()
		return nil, err
	}
	if err := sc.sessions.Ping(ctx); err != nil {
		log.Warn("session store does not answer yet: callers of orgs with session limits get 503 until it does", "err_kind", "store")
	}
	kr, ring, v, err := sc.parts(ctx, pol)
	if err != nil {
		sc.Close()
		return nil, err
	}
	if k := pol.File.Keys; k != nil {
		sc.useKeyring(ring)
		sc.verified = time.Now()
	}
	if sc.hasher, err = loadHasher(pol.File.Audit.HashKey); err != nil {
		sc.Close()
		return nil, err
	}
	p, err := proxy.New(proxy.Options{Policy: pol, Keys: kr, Verifier: v, Auditor: sc.auditor, Observer: sc.metrics, Log: log, Sessions: sc.sessions, Consent: sc.consent, Hasher: sc.hasher})
	if err != nil {
		sc.Close()
		return nil, err
	}
	sc.proxy = p
	if pol.HasEgress() {
		if sc.egress, err = proxy.NewEgress(proxy.EgressOptions{Engine: p.Engine, Log: log}); err != nil {
			sc.Close()
			return nil, err
		}
	}
	sc.runJWKS(v)
	logWarnings(log, pol)
	sc.pol.Store(pol)
	sc.metrics.SetPolicy(pol)
	sc.ready.Store(true)
	return sc, nil
}

// logWarnings logs what pol probably does not mean (phiguard check
// prints the same).
func logWarnings(log *slog.Logger, pol *policy.Policy) {
	for _, w := range pol.Warnings {
		log.Warn("policy warning", "at", fmt.Sprintf("%s:%d:%d", w.File, w.Line, w.Col), "path", w.Path, "route", w.Route, "warning", w.Msg)
	}
}

// parts loads the keyring and reads the JWKS that pol names. A nil
// interface, not a nil pointer, stands for a part pol does not use. The
// keyring is returned, not yet in force. Keysets that do not unwrap are
// held as unavailable (their requests answer 503) and logged; the watch
// retries them.
func (sc *sidecar) parts(ctx context.Context, pol *policy.Policy) (engine.Keys, *keys.Keyring, engine.Verifier, error) {
	var kr engine.Keys
	var ring *keys.Keyring
	if k := pol.File.Keys; k != nil {
		var err error
		if ring, err = sc.loadKeyring(ctx, k, pol.File.Orgs); ring == nil {
			return nil, nil, nil, err
		}
		for _, o := range pol.File.Orgs {
			if _, known := ring.Info(o.ID); !known {
				sc.log.Warn("organization has no keys: its PHI routes will answer 503", "org", o.ID, "fix", "phiguard keys create -config POLICY -org "+o.ID)
			}
		}
		kr = &sc.keys
	}
	var v engine.Verifier
	if id := pol.File.Identity; id != nil && id.JWT != nil {
		cfg := identity.Config{
			JWKSFile: id.JWT.JWKS, Issuer: id.JWT.Issuer, Audience: id.JWT.Audience, ClockSkew: id.JWT.ClockSkew, MaxTokenLifetime: id.JWT.MaxTokenLifetime,
			CacheSize: id.JWT.CacheSize, CacheTTL: id.JWT.CacheTTL,
			OrgClaim: id.Claims.Org, UserClaim: id.Claims.User, RoleClaim: id.Claims.Role, MFAClaim: id.Claims.MFA,
			PATClaim: id.PATs.Claim, PATValues: id.PATs.Values, ClientClaim: id.Claims.Client,
			Stats:   sc.jwt,
			JWKSURL: id.JWT.JWKSURL, JWKSRefresh: id.JWT.JWKSRefresh,
			OnJWKSError: func(err error) {
				sc.log.Warn("JWKS fetch failed; the last good key set stays in force", "err", err)
			},
		}
		var ver *identity.Verifier
		var err error
		if cfg.JWKSURL != "" {
			ver, err = identity.NewVerifierFromURL(ctx, cfg)
		} else {
			ver, err = identity.NewVerifier(cfg)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		v = ver
	}
	if id := pol.File.Identity; id != nil && (id.Introspection != nil || id.AuthRequest != nil) {
		in, err := newIntrospector(id)
		if err != nil {
			return nil, nil, nil, err
		}
		ch := identity.Chain{Opaque: in}
		ch.JWT, _ = v.(*identity.Verifier)
		v = ch
	}
	return kr, ring, v, nil
}

// newIntrospector makes the introspection client id names, reading its
// client secret.
func newIntrospector(id *policy.Identity) (*identity.Introspector, error) {
	if ar := id.AuthRequest; ar != nil {
		return identity.NewIntrospector(identity.IntrospectConfig{URL: ar.URL, Subrequest: true, Cookie: ar.Cookie, CacheTTL: ar.CacheTTL,
			OrgClaim: id.Claims.Org, UserClaim: id.Claims.User, RoleClaim: id.Claims.Role, MFAClaim: id.Claims.MFA, ClientClaim: id.Claims.Client})
	}
	in := id.Introspection
	cfg := identity.IntrospectConfig{URL: in.URL, ClientID: in.ClientID, CacheTTL: in.CacheTTL,
		OrgClaim: id.Claims.Org, UserClaim: id.Claims.User, RoleClaim: id.Claims.Role, MFAClaim: id.Claims.MFA, ClientClaim: id.Claims.Client}
	if in.ClientSecretFile != "" {
		raw, err := os.ReadFile(in.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("introspection client secret: %w", err)
		}
		cfg.ClientSecret = strings.TrimSpace(string(raw))
	}
	return identity.NewIntrospector(cfg)
}

// loadKeyring loads the keyring k names within its load_timeout, reusing
// the keysets in force whose files did not change. It returns nil only
// when the keyring cannot be read at all (no folder, no master key).
func (sc *sidecar) loadKeyring(ctx context.Context, k *policy.Keys, orgs []policy.Org, opts ...keys.LoadOption) (*keys.Keyring, error) {
	ctx, cancel := context.WithTimeout(ctx, k.LoadTimeout)
	defer cancel()
	// Summed before reading: a file that changes while it loads is seen
	// as changed at the next look.
	sc.loadedDigest = keyringDigest(k.Keyring)
	p, err := providerFor(ctx, k, orgs, sc.metrics.KMSCall)
	if err != nil {
		sc.metrics.KeyringReloaded(err)
		return nil, err
	}
	ring, err := keys.Load(ctx, k.Keyring, p, sc.keys.ring.Load(), opts...)
	sc.metrics.KeyringReloaded(err)
	if err != nil && ring != nil {
		sc.log.Error("keysets not unwrapped: their organizations' PHI routes answer 503 until a reload succeeds", "orgs", ring.Unavailable(), "err", err)
	}
	return ring, err
}

// useKeyring puts ring, the last loadKeyring's, in force and notes
// whether it is complete.
func (sc *sidecar) useKeyring(ring *keys.Keyring) {
	if ring == nil {
		return
	}
	sc.keys.ring.Store(ring)
	sc.keysDigest = sc.loadedDigest
	if len(ring.Unavailable()) == 0 {
		sc.keysComplete.Store(true)
	}
}

// reloadKeys reloads the keyring alone when its files changed, or when
// some keyset is still unavailable: a Kubernetes Secret update swaps the
// files by symlink. The caller holds mu.
func (sc *sidecar) reloadKeys(ctx context.Context, cause string) {
	k := sc.pol.Load().File.Keys
	if k == nil {
		return
	}
	digest := keyringDigest(k.Keyring)
	cur := sc.keys.ring.Load()
	var opts []keys.LoadOption
	if k.ReverifyEvery > 0 && time.Since(sc.verified) >= k.ReverifyEvery {
		opts = append(opts, keys.Reverify())
		cause = "reverify"
	} else if digest == sc.keysDigest && (cur == nil || len(cur.Unavailable()) == 0) {
		return
	}
	ring, err := sc.loadKeyring(ctx, k, sc.pol.Load().File.Orgs, opts...)
	if len(opts) > 0 {
		sc.verified = time.Now()
	}
	if ring == nil {
		if digest != sc.keysDigest {
			sc.log.Error("keyring not reloaded; the keyring in force stays", "cause", cause, "err", err)
			sc.auditor.Event(ctx, "keyring_reload", "result", metrics.ResultFailure, "cause", cause, "reason", err.Error())
			sc.keysDigest = digest
		}
		return
	}
	sc.useKeyring(ring)
	result := metrics.ResultSuccess
	if err != nil {
		result = metrics.ResultFailure
	}
	sc.log.Info("keyring reloaded", "cause", cause, "orgs", len(ring.Orgs()), "unavailable", ring.Unavailable())
	sc.auditor.Event(ctx, "keyring_reload", "result", result, "cause", cause, "unavailable", strings.Join(ring.Unavailable(), " "))
}

// keyringDigest sums the names and contents of the keyring's keyset
// files; "" when they cannot be read.
func keyringDigest(dir string) string {
	paths, err := filepath.Glob(filepath.Join(dir, "orgs", "*.json"))
	if err != nil {
		return ""
	}
	var all []byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return ""
		}
		all = append(append(append(all, p...), 0), policy.Digest(raw)...)
	}
	return policy.Digest(all)
}

// liveKeys is the keyring in force, for the engine: reloads swap it
// without a new engine.
type liveKeys struct{ ring atomic.Pointer[keys.Keyring] }

func (l *liveKeys) AppendEncrypt(ctx context.Context, dst []byte, org string, pt []byte) ([]byte, error) {
	return l.ring.Load().AppendEncrypt(ctx, dst, org, pt)
}

func (l *liveKeys) Decrypt(ctx context.Context, org string, tok []byte) ([]byte, error) {
	return l.ring.Load().Decrypt(ctx, org, tok)
}

func (l *liveKeys) AppendEncryptExact(ctx context.Context, dst []byte, org string, pt []byte) ([]byte, error) {
	return l.ring.Load().AppendEncryptExact(ctx, dst, org, pt)
}

func (l *liveKeys) AppendIndexWord(dst []byte, org string, word []byte, chars int) ([]byte, error) {
	return l.ring.Load().AppendIndexWord(dst, org, word, chars)
}

// openSinks opens the audit sinks specs name: stdout and stderr write to
// the given writers, files are appended to. On error, the files opened are
// closed again.
func openSinks(specs []policy.Sink, stdout, stderr io.Writer) ([]audit.Sink, []func() error, error) {
	var sinks []audit.Sink
	var closers []func() error
	for _, s := range specs {
		switch s.Type {
		case "stdout":
			sinks = append(sinks, audit.NewWriterSink("stdout", stdout))
		case "stderr":
			sinks = append(sinks, audit.NewWriterSink("stderr", stderr))
		case "file":
			f, err := audit.OpenRotatingFileSink(s.Path, audit.Rotation{MaxBytes: s.MaxBytes, MaxAge: s.MaxAge, Retention: s.Retention})
			if err != nil {
				for _, c := range closers {
					c()
				}
				return nil, nil, err
			}
			sinks = append(sinks, f)
			closers = append(closers, f.Close)
		case "http":
			h := http.Header{}
			if s.TokenEnv != "" {
				tok := os.Getenv(s.TokenEnv)
				if tok == "" {
					for _, c := range closers {
						c()
					}
					return nil, nil, fmt.Errorf("audit sink %s: %s is not set", s.URL, s.TokenEnv)
				}
				h.Set("Authorization", "Bearer "+tok)
			}
			f, err := audit.OpenHTTPSink(s.URL, audit.HTTPOptions{URL: s.URL, Header: h, SpoolDir: s.SpoolDir, SpoolBytes: s.SpoolBytes, BatchLines: s.BatchLines})
			if err != nil {
				for _, c := range closers {
					c()
				}
				return nil, nil, err
			}
			sinks = append(sinks, f)
			closers = append(closers, f.Close)
		}
	}
	return sinks, closers, nil
}

// closeTimeout bounds waiting for the file sinks' last writes at exit.
const closeTimeout = 10 * time.Second

// Close flushes and closes the file sinks, waiting for their writes in
// progress at most closeTimeout: a sink whose write hangs does not keep
// the process from exiting, and says so.
// runJWKS keeps the key set of v current, if it comes from a URL, until
// another verifier replaces it or the sidecar closes.
func (sc *sidecar) runJWKS(v engine.Verifier) {
	sc.jwksMu.Lock()
	defer sc.jwksMu.Unlock()
	if sc.stopJWKS != nil {
		sc.stopJWKS()
		sc.stopJWKS = nil
	}
	if ch, ok := v.(identity.Chain); ok && ch.JWT != nil {
		v = ch.JWT
	}
	if ver, ok := v.(*identity.Verifier); ok {
		ctx, cancel := context.WithCancel(context.Background())
		sc.stopJWKS = cancel
		go ver.Run(ctx)
	}
}

func (sc *sidecar) Close() error {
	sc.jwksMu.Lock()
	if sc.stopJWKS != nil {
		sc.stopJWKS()
	}
	sc.jwksMu.Unlock()
	if sc.sessions != nil {
		sc.sessions.Close()
	}
	if sc.consent != nil {
		sc.consent.Close()
	}
	if sc.auditor != nil {
		sc.auditor.Event(context.Background(), audit.EventStop)
		sc.auditor.Close() // the chain's final checkpoint, before the sinks close
	}
	done := make(chan error, 1)
	go func() {
		var errs []error
		for _, c := range sc.closers {
			errs = append(errs, c())
		}
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(closeTimeout):
		return fmt.Errorf("audit files not closed after %s: a write is still blocked; its records may be lost", closeTimeout)
	}
}

// Policy returns the policy in force.
func (sc *sidecar) Policy() *policy.Policy { return sc.pol.Load() }

// reload reads the policy file and, if it is valid, puts it in force
// with the keyring reloaded and the JWKS read again: requests that begin
// afterwards use the new policy, requests in flight finish on the policy
// they began with (the keyring, swapped whole, serves every request from
// the swap on: keys are added, not changed, by a reload). An
// invalid policy, keyring or JWKS leaves everything as it was. Settings
// that only a restart applies (ingress, admin, audit, reload) keep their
// running values; a change to them is reported, never half-applied.
// With onlyChanged, a file whose text was already tried is not reloaded.
func (sc *sidecar) reload(ctx context.Context, cause string, onlyChanged bool) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	data, err := os.ReadFile(sc.path)
	if err != nil {
		if onlyChanged {
			// A ConfigMap swap in progress passes; a file that stays
			// unreadable is logged once.
			if !sc.unreadable {
				sc.unreadable = true
				sc.log.Warn("policy file unreadable; the policy in force stays", "err", err)
			}
			return nil
		}
		return sc.reloadFailed(ctx, cause, fmt.Errorf("read policy: %w", err))
	}
	sc.unreadable = false
	digest := policy.Digest(data)
	if onlyChanged && digest == sc.seen {
		return nil
	}
	next, err := policy.Parse(sc.path, data)
	if err != nil {
		sc.seen = digest // the same text fails the same way: not tried again
		return sc.reloadFailed(ctx, cause, err)
	}
	// A failure from here on may pass (a Secret being updated): the watch
	// tries the same text again.
	cur := sc.pol.Load()
	restart := restartOnly(cur, next)
	kr, ring, v, err := sc.parts(ctx, next)
	if err != nil {
		return sc.reloadFailed(ctx, cause, err)
	}
	eng, err := sc.proxy.Engine().Successor(engine.Options{Policy: next, Keys: kr, Verifier: v, Auditor: sc.auditor, Observer: sc.metrics, Log: sc.log, Sessions: sc.sessions, Consent: sc.consent, Hasher: sc.hasher})
	if err != nil {
		return sc.reloadFailed(ctx, cause, err)
	}
	// The change is on the audit trail before it takes effect.
	if err := sc.auditor.Event(ctx, audit.EventPolicyReload, "result", metrics.ResultSuccess, "cause", cause, "sha256", next.SHA256); err != nil && *cur.File.Audit.FailClosed {
		return sc.reloadFailed(ctx, cause, fmt.Errorf("the audit trail did not take the reload's record: %w", err))
	}
	sc.metrics.Reloaded(next, nil, len(restart) > 0)
	if k := next.File.Keys; k != nil {
		sc.useKeyring(ring)
	}
	sc.proxy.SetEngine(eng)
	sc.runJWKS(v)
	sc.pol.Store(next)
	sc.seen, sc.lastFailure = digest, ""
	sc.log.Info("policy reloaded", "cause", cause, "sha256", next.SHA256, "routes", len(next.Routes), "restart_required", restart)
	logWarnings(sc.log, next)
	if len(restart) > 0 {
		sc.log.Warn("policy changes that take effect only after a restart; the running values stay", "keys", restart)
	}
	return nil
}

// reloadFailed reports a failed reload: counted every time; logged and
// audited unless it is the watch failing again as it did last time.
// The caller holds mu.
func (sc *sidecar) reloadFailed(ctx context.Context, cause string, err error) error {
	sc.metrics.Reloaded(nil, err, false)
	repeat := cause == causeWatch && err.Error() == sc.lastFailure
	sc.lastFailure = err.Error()
	if repeat {
		return err
	}
	sc.log.Error("policy reload failed; the previous policy stays in force", "cause", cause, "err", err)
	sc.auditor.Event(ctx, audit.EventPolicyReload, "result", metrics.ResultFailure, "cause", cause, "reason", err.Error())
	return err
}

// restartOnly returns the sections of next that differ from cur and that
// only a restart applies, and gives next cur's values for them.
func restartOnly(cur, next *policy.Policy) []string {
	var changed []string
	if !reflect.DeepEqual(cur.File.Ingress, next.File.Ingress) {
		changed = append(changed, "ingress")
	}
	if !reflect.DeepEqual(cur.File.Admin, next.File.Admin) {
		changed = append(changed, "admin")
	}
	if !reflect.DeepEqual(cur.File.Audit, next.File.Audit) {
		changed = append(changed, "audit")
	}
	if !reflect.DeepEqual(cur.File.Reload, next.File.Reload) {
		changed = append(changed, "reload")
	}
	if !reflect.DeepEqual(cur.File.State, next.File.State) {
		changed = append(changed, "state")
	}
	if !reflect.DeepEqual(cur.File.Egress, next.File.Egress) {
		changed = append(changed, "egress")
	}
	if cur.HasEgress() != next.HasEgress() {
		// The routes apply at once; the listener opens or closes with a restart.
		changed = append(changed, "egress_routes (the egress listener)")
	}
	next.File.Ingress, next.Upstream, next.UpstreamProxy = cur.File.Ingress, cur.Upstream, cur.UpstreamProxy
	next.File.Admin, next.File.Audit, next.File.Reload, next.File.State = cur.File.Admin, cur.File.Audit, cur.File.Reload, cur.File.State
	next.File.Egress = cur.File.Egress
	return changed
}

// causeWatch is the cause of the reloads the policy file's watch makes.
const causeWatch = "file changed"

// watch reloads the policy whenever its file's text changes, until ctx ends.
func (sc *sidecar) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sc.reload(ctx, causeWatch, true)
			sc.mu.Lock()
			sc.reloadKeys(ctx, causeWatch)
			sc.mu.Unlock()
			if sc.pol.Load().File.Ingress.TLS != nil {
				sc.reloadCert(true)
			}
		}
	}
}

// hangup is SIGHUP: reopen the file sinks (log rotation), take up a
// renewed TLS certificate, then reload the policy.
func (sc *sidecar) hangup(ctx context.Context) {
	if err := sc.auditor.Reopen(); err != nil {
		// /readyz reports the sink whose path no longer names its file.
		sc.log.Error("audit files not reopened; records go to the files open before", "err", err)
	} else {
		sc.log.Info("audit files reopened")
	}
	if sc.pol.Load().File.Ingress.TLS != nil {
		sc.reloadCert(true)
	}
	sc.reload(ctx, "SIGHUP", false)
}

// reloadCert reads ingress.tls's certificate and key and puts them in
// force if they changed. A pair that does not load keeps the one in
// force, and is logged (at start-up, it is the error). report logs a
// change.
func (sc *sidecar) reloadCert(report bool) error {
	t := sc.pol.Load().File.Ingress.TLS
	sc.certMu.Lock()
	defer sc.certMu.Unlock()
	certPEM, err := os.ReadFile(t.Cert)
	if err != nil {
		return sc.certFailed(report, err)
	}
	keyPEM, err := os.ReadFile(t.Key)
	if err != nil {
		return sc.certFailed(report, err)
	}
	digest := policy.Digest(append(certPEM, keyPEM...))
	if digest == sc.certDigest {
		return nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		sc.certDigest = digest // the same files fail the same way
		return sc.certFailed(report, err)
	}
	sc.cert.Store(&cert)
	sc.certDigest = digest
	if report {
		sc.log.Info("TLS certificate reloaded", "cert", t.Cert)
	}
	return nil
}

func (sc *sidecar) certFailed(report bool, err error) error {
	err = fmt.Errorf("ingress tls: %w", err)
	if report {
		sc.log.Error("TLS certificate not reloaded; the one in force stays", "err", err)
	}
	return err
}

// readiness returns why phiguard should not be sent requests; none when
// it is ready.
func (sc *sidecar) readiness(ctx context.Context) []string {
	var why []string
	if sc.draining.Load() {
		why = append(why, "draining: phiguard is shutting down")
	}
	if err := sc.auditor.Check(ctx); err != nil {
		why = append(why, err.Error())
	}
	if pol := sc.pol.Load(); pol.TracksSessions() {
		if err := sc.sessions.Ping(ctx); err != nil {
			why = append(why, "session store: "+err.Error())
		}
	}
	if pol := sc.pol.Load(); pol.UsesConsent() {
		if err := sc.consent.Ping(ctx); err != nil {
			why = append(why, "consent registry: "+err.Error())
		}
	}
	if ring := sc.keys.ring.Load(); ring != nil && !sc.keysComplete.Load() {
		why = append(why, "keyring: keysets not unwrapped yet (KMS unreachable?) for "+strings.Join(ring.Unavailable(), ", "))
	}
	pol := sc.pol.Load()
	if a := pol.File.Admin; a != nil && a.CheckUpstream {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", upstreamAddr(pol))
		if err != nil {
			why = append(why, "upstream unreachable: "+err.Error())
		} else {
			c.Close()
		}
	}
	sc.ready.Store(len(why) == 0)
	return why
}

// upstreamAddr is the host:port phiguard connects to for the app: the
// upstream proxy's when one is set, else the app's.
func upstreamAddr(pol *policy.Policy) string {
	u := pol.Upstream
	if pol.UpstreamProxy != nil {
		u = pol.UpstreamProxy
	}
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

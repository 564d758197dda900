package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/tink-crypto/tink-go/v2/subtle"
	"go.yaml.in/yaml/v3"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/consent"
	"github.com/phiguard/phiguard/internal/orgid"
	"github.com/phiguard/phiguard/session"
)

// Defaults applied to keys the policy leaves out.
const (
	DefaultListen            = ":8443"
	DefaultAdminListen       = "127.0.0.1:9901"
	DefaultDrainTimeout      = 20 * time.Second
	DefaultReloadInterval    = 5 * time.Second
	DefaultMaxBodyBytes      = 10 << 20
	DefaultMask              = "[protected]"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultUpstreamTimeout   = 60 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultMaxConcurrent     = 256
	// DefaultResponseFactor: max_response_bytes defaults to this many
	// times max_body_bytes, room for the growth of encrypted values.
	DefaultResponseFactor = 4
	DefaultClockSkew      = 30 * time.Second
	// DefaultAuditRetention keeps rotated audit files six years.
	DefaultAuditRetention = 6 * 365 * 24 * time.Hour
	DefaultJWTCacheSize   = 10000
	DefaultJWTCacheTTL    = 5 * time.Minute

	maxBodyBytesLimit  = 1 << 30
	maxConcurrentLimit = 1 << 20
	maxJWTCacheSize    = 1 << 24
)

// Policy is a loaded, validated and compiled policy.
type Policy struct {
	// File is the policy as written, with defaults filled in and relative
	// file paths resolved against the policy's folder.
	File File
	// Routes in file order.
	Routes []*Route
	// EgressRoutes are the egress_routes, in file order; each has Egress set.
	EgressRoutes []*Route
	// Upstream is the parsed ingress.upstream.
	Upstream *url.URL
	// UpstreamProxy is the parsed ingress.upstream_proxy; nil: none.
	UpstreamProxy *url.URL
	// TrustedGateways are the parsed identity.trusted_gateways.
	TrustedGateways []netip.Prefix
	// TrustedProxies are the parsed identity.trusted_proxies.
	TrustedProxies []netip.Prefix
	// SHA256 is the hex SHA-256 of the policy text, to tell which policy
	// is in force (metrics, reload logs).
	SHA256 string
	// Search is the compiled search section.
	Search SearchSettings
	// Warnings are what the policy probably does not mean, though it
	// loads (a route that decrypts for every role): check prints them,
	// serve logs them.
	Warnings []Problem
	// Keywords are the consent section's opt-out and opt-in keywords.
	Keywords consent.Keywords

	defaultAllow bool
	// risk maps scope heads to their risk level; integrations by id.
	risk         map[string]string
	integrations map[string]*compiledIntegration
	// hipaa maps the orgs in HIPAA mode to their enabled_at (zero: none).
	hipaa map[string]time.Time
	// sessions maps the orgs whose sessions are tracked (HIPAA mode, or
	// limits set) to their limits.
	sessions map[string]session.Limits
	// mfaMethods are the amr values that count as a second factor.
	mfaMethods map[string]bool
	// querySearch are the routes with query: search terms.
	querySearch []*Route
	orgs        map[string]bool
	index       routeIndex
	// usesConsent: a route reads or checks consent.
	usesConsent bool
	// fieldSets are the valid sets of fields:, by name; fieldSetUsed
	// marks those a route names.
	fieldSets    map[string][]Field
	fieldSetUsed map[string]bool
}

// Route is a compiled route.
type Route struct {
	Name  string
	Index int
	// Methods the route takes; nil means all.
	Methods map[string]bool
	Path    Template
	// AuthRequired: the caller must present a valid bearer token.
	AuthRequired    bool
	OrgFrom         OrgSource
	EncryptRequest  []Selector
	DecryptResponse []Selector
	// SearchRequest are where search terms arrive; each has Search set.
	SearchRequest []Selector
	// Readers may see plaintext; nil means every caller of the org.
	Readers map[string]bool
	// AllowRoles are the only roles the route takes; nil: every role.
	AllowRoles map[string]bool
	// BreakGlass are the roles that may read with a reason; nil: none.
	BreakGlass map[string]bool
	// Scope is what an integration needs to use the route.
	Scope string
	// RecordRequest and RecordResponse are the fields whose values the
	// audit record shows (RecordNames name them, in the same order).
	RecordRequest, RecordResponse           []Selector
	RecordRequestNames, RecordResponseNames []string
	// Deny, when set, refuses the route with this reason.
	Deny string
	// Signature, when set, is the webhook signature check of the route.
	Signature *SignatureCheck
	// ConsentFrom and ConsentText locate an inbound message's sender and
	// text (consent_keywords); nil for none.
	ConsentFrom, ConsentText *Selector
	// Egress is set on egress routes (Policy.EgressRoutes) alone: the
	// vendor, and what it may receive.
	Egress *EgressRule
}

// OrgSourceKind says where a route reads the organization from.
type OrgSourceKind uint8

const (
	OrgFromClaim OrgSourceKind = iota
	OrgFromPathParam
	OrgFromHeader
)

// OrgSource is a compiled org_from.
type OrgSource struct {
	Kind OrgSourceKind
	Name string // path parameter or header name
}

// HasFieldActions reports whether the route reads or rewrites bodies.
func (r *Route) HasFieldActions() bool {
	return len(r.EncryptRequest) > 0 || len(r.DecryptResponse) > 0 || len(r.SearchRequest) > 0 ||
		len(r.RecordRequest) > 0 || len(r.RecordResponse) > 0
}

// Load reads and compiles the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// Parse compiles policy text. name is used in messages and, when it names
// a file, relative paths in the policy are resolved against its folder.
func Parse(name string, data []byte) (*Policy, error) {
	ps := &problems{file: name, pos: map[string]position{}}
	root, err := parseYAML(data)
	if err != nil {
		line := 0
		msg := err.Error()
		// yaml.v3 reports "yaml: line N: msg"
		if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
			if n, tail, ok := strings.Cut(rest, ": "); ok {
				fmt.Sscanf(n, "%d", &line)
				msg = tail
			}
		}
		msg = strings.TrimPrefix(msg, "yaml: ")
		l, col, hint := yamlSyntax(data, line, msg)
		if hint != "" {
			msg += ": " + hint
		}
		ps.at(l, col, "", "%s", msg)
		return nil, ps.err()
	}
	var f File
	(&decoder{ps: ps}).decode(root, "", reflect.ValueOf(&f).Elem())
	ps.routes = map[string]string{}
	for i, r := range f.Routes {
		ps.routes[fmt.Sprintf("routes[%d]", i)] = r.Name
	}
	for i, r := range f.EgressRoutes {
		ps.routes[fmt.Sprintf("egress_routes[%d]", i)] = r.Name
	}
	// Validation runs even after decode problems, so one run reports them
	// all; it stays quiet about paths whose value could not be decoded.
	ps.suppressDecoded()
	p := &Policy{File: f, SHA256: Digest(data)}
	p.compile(ps, filepath.Dir(name))
	if err := ps.err(); err != nil {
		return nil, err
	}
	inFileOrder(ps.warnings)
	p.Warnings = ps.warnings
	return p, nil
}

func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy is empty")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("policy must be one YAML document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("policy is empty")
	}
	return doc.Content[0], nil
}

// compile fills defaults, validates every section and builds the routes.
func (p *Policy) compile(ps *problems, dir string) {
	f := &p.File
	if f.Version != 1 {
		ps.add("version", "want version: 1")
	}
	p.compileIngress(ps, dir)
	p.compileIdentity(ps, dir)
	if f.Keys != nil {
		p.compileKeys(ps, dir)
	}
	p.compileAudit(ps, dir)
	p.compileAdmin(ps)
	p.compileSearch(ps)
	p.compileIntegrations(ps)
	if f.Reload.Watch == nil {
		t := true
		f.Reload.Watch = &t
	}
	defaultDuration(ps, "reload.interval", &f.Reload.Interval, DefaultReloadInterval)
	switch f.Default {
	case "", "deny":
		f.Default = "deny"
	case "allow":
		p.defaultAllow = true
	default:
		ps.add("default", "want allow or deny, got %q", f.Default)
	}
	if f.Mask == "" {
		f.Mask = DefaultMask
	}
	p.orgs = make(map[string]bool, len(f.Orgs))
	p.hipaa = map[string]time.Time{}
	p.sessions = map[string]session.Limits{}
	p.compileHIPAA(ps)
	for i, o := range f.Orgs {
		if o.RotateEvery < 0 || o.Retain < 0 {
			ps.add(fmt.Sprintf("orgs[%d]", i), "rotate_every and retain must not be negative")
		} else if o.Retain > 0 && o.RotateEvery > 0 && o.Retain <= o.RotateEvery {
			ps.add(fmt.Sprintf("orgs[%d].retain", i), "%s does not exceed rotate_every (%s): the primary key would be due for destruction", o.Retain, o.RotateEvery)
		}
		path := fmt.Sprintf("orgs[%d].id", i)
		if err := orgid.Check(o.ID); err != nil {
			ps.add(path, "%v", err)
		} else if p.orgs[o.ID] {
			ps.add(path, "organization %q is listed twice", o.ID)
		}
		p.orgs[o.ID] = true
		if o.HIPAA != nil && *o.HIPAA || o.HIPAA == nil && f.HIPAA.Default {
			p.hipaa[o.ID] = o.EnabledAt
		} else if !o.EnabledAt.IsZero() {
			ps.add(fmt.Sprintf("orgs[%d].enabled_at", i), "enabled_at applies to an org in HIPAA mode (hipaa: true)")
		}
		p.compileSessionLimits(ps, i)
	}
	p.compileState(ps)
	p.compileConsent(ps)
	p.compileFieldSets(ps)
	names := map[string]string{} // route name → where it is defined
	for i := range f.Routes {
		r := p.compileRoute(ps, i)
		if prev, dup := names[r.Name]; dup && r.Name != "" {
			ps.add(fmt.Sprintf("routes[%d].name", i), "duplicate route name %q (also %s)", r.Name, prev)
		}
		names[r.Name] = fmt.Sprintf("routes[%d]", i)
		checkShadow(ps, fmt.Sprintf("routes[%d].match", i), "routes", p.Routes, r, f.CaseSensitivePaths)
		p.Routes = append(p.Routes, r)
		if slices.ContainsFunc(r.SearchRequest, func(s Selector) bool { return s.Query }) {
			p.querySearch = append(p.querySearch, r)
		}
	}
	p.compileEgress(ps, dir)
	for i, r := range p.EgressRoutes {
		if prev, dup := names[r.Name]; dup && r.Name != "" {
			ps.add(fmt.Sprintf("egress_routes[%d].name", i), "route name %q is taken by %s: names are unique across routes and egress_routes", r.Name, prev)
			continue
		}
		names[r.Name] = fmt.Sprintf("egress_routes[%d]", i)
	}
	p.crossCheck(ps)
	p.index = buildIndex(p.Routes, f.CaseSensitivePaths)
}

func (p *Policy) compileIngress(ps *problems, dir string) {
	in := &p.File.Ingress
	if in.Listen == "" {
		in.Listen = DefaultListen
	}
	if in.Upstream == "" {
		ps.add("ingress", "ingress.upstream is required")
	} else if u, err := url.Parse(in.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		ps.add("ingress.upstream", "want an http:// or https:// base URL without query, got %q", in.Upstream)
	} else {
		p.Upstream = u
		if in.UpstreamH2C && u.Scheme != "http" {
			ps.add("ingress.upstream_h2c", "h2c is HTTP/2 without TLS; the upstream is https")
		}
	}
	switch {
	case in.MaxBodyBytes == 0:
		in.MaxBodyBytes = DefaultMaxBodyBytes
	case in.MaxBodyBytes < 0 || in.MaxBodyBytes > maxBodyBytesLimit:
		ps.add("ingress.max_body_bytes", "want 1 to %d bytes, got %d", maxBodyBytesLimit, in.MaxBodyBytes)
	}
	switch {
	case in.MaxResponseBytes == 0:
		in.MaxResponseBytes = DefaultResponseFactor * in.MaxBodyBytes
	case in.MaxResponseBytes < 0 || in.MaxResponseBytes > DefaultResponseFactor*maxBodyBytesLimit:
		ps.add("ingress.max_response_bytes", "want 1 to %d bytes, got %d", DefaultResponseFactor*maxBodyBytesLimit, in.MaxResponseBytes)
	case in.MaxResponseBytes < in.MaxBodyBytes:
		ps.add("ingress.max_response_bytes", "%d is less than max_body_bytes (%d): an accepted body could not be returned", in.MaxResponseBytes, in.MaxBodyBytes)
	}
	switch {
	case in.MaxConcurrentRequests == 0:
		in.MaxConcurrentRequests = DefaultMaxConcurrent
	case in.MaxConcurrentRequests < 0 || in.MaxConcurrentRequests > maxConcurrentLimit:
		ps.add("ingress.max_concurrent_requests", "want 1 to %d, got %d", maxConcurrentLimit, in.MaxConcurrentRequests)
	}
	switch {
	case in.UpstreamMaxIdleConns == 0:
		in.UpstreamMaxIdleConns = in.MaxConcurrentRequests
	case in.UpstreamMaxIdleConns < 0 || in.UpstreamMaxIdleConns > maxConcurrentLimit:
		ps.add("ingress.upstream_max_idle_conns", "want 1 to %d, got %d", maxConcurrentLimit, in.UpstreamMaxIdleConns)
	}
	if in.UpstreamProxy != "" {
		if u, err := url.Parse(in.UpstreamProxy); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ps.add("ingress.upstream_proxy", "want an http:// or https:// proxy URL, got %q", in.UpstreamProxy)
		} else {
			p.UpstreamProxy = u
		}
	}
	if in.TLS != nil {
		if in.TLS.Cert == "" || in.TLS.Key == "" {
			ps.add("ingress.tls", "tls needs both cert and key")
		}
		in.TLS.Cert, in.TLS.Key = resolve(dir, in.TLS.Cert), resolve(dir, in.TLS.Key)
	}
	defaultDuration(ps, "ingress.read_header_timeout", &in.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	defaultDuration(ps, "ingress.upstream_timeout", &in.UpstreamTimeout, DefaultUpstreamTimeout)
	defaultDuration(ps, "ingress.read_timeout", &in.ReadTimeout, DefaultReadTimeout)
	defaultDuration(ps, "ingress.idle_timeout", &in.IdleTimeout, DefaultIdleTimeout)
	defaultDuration(ps, "ingress.write_timeout", &in.WriteTimeout, DefaultWriteTimeout)
	if in.DrainDelay < 0 {
		ps.add("ingress.drain_delay", "must not be negative")
	}
	defaultDuration(ps, "ingress.drain_timeout", &in.DrainTimeout, DefaultDrainTimeout)
	if in.WriteTimeout > 0 && in.UpstreamTimeout > 0 && in.ReadTimeout > 0 && in.WriteTimeout <= in.ReadTimeout+in.UpstreamTimeout {
		ps.add("ingress.write_timeout", "%s does not exceed read_timeout + upstream_timeout (%s): an answer could be cut after the app has acted", in.WriteTimeout, in.ReadTimeout+in.UpstreamTimeout)
	}
}

// Key providers.
const (
	ProviderLocal  = "local"
	ProviderAWSKMS = "aws-kms"
)

// Defaults of the keys section.
const (
	DefaultKeysLoadTimeout   = 30 * time.Second
	DefaultKeysReverifyEvery = time.Hour
	DefaultKMSMaxAttempts    = 5
	DefaultKMSCallTimeout    = 10 * time.Second
)

func (p *Policy) compileKeys(ps *problems, dir string) {
	f := &p.File
	k := f.Keys
	if k.Keyring == "" {
		ps.add("keys", "keys.keyring is required")
	}
	k.Keyring = resolve(dir, k.Keyring)
	defaultDuration(ps, "keys.load_timeout", &k.LoadTimeout, DefaultKeysLoadTimeout)
	defaultDuration(ps, "keys.reverify_every", &k.ReverifyEvery, DefaultKeysReverifyEvery)
	if k.ReverifyEvery > 0 && k.ReverifyEvery < time.Minute {
		ps.add("keys.reverify_every", "at least 1m: each one calls KMS once per org")
	}
	switch k.Provider {
	case "", ProviderLocal:
		k.Provider = ProviderLocal
		for i, o := range f.Orgs {
			if o.KMSKey != "" {
				ps.add(fmt.Sprintf("orgs[%d].kms_key", i), "kms_key needs keys.provider: aws-kms")
			}
		}
	case ProviderAWSKMS:
		if k.AWS == nil {
			k.AWS = &AWSKMS{}
		}
	default:
		ps.add("keys.provider", "unknown provider %q (want local or aws-kms)", k.Provider)
	}
	// Both providers' settings may be present whatever the provider: the
	// provider wraps new keysets, and each keyset file names what wraps
	// it, so a keyring moving from the master key to KMS reads both.
	if k.AcceptLocal && k.Provider != ProviderAWSKMS {
		ps.add("keys.accept_local", "accept_local lets the aws-kms provider read keysets of the master key; the provider is local")
	}
	if k.MasterKey != "" {
		k.MasterKey = resolve(dir, k.MasterKey)
	} else if k.Keyring != "" {
		k.MasterKey = filepath.Join(k.Keyring, "master.json")
	}
	if a := k.AWS; a != nil {
		if a.Endpoint != "" {
			// KMS answers carry plaintext envelope keys: TLS, except to
			// a loopback address (a test server, a local proxy).
			if u, err := url.Parse(a.Endpoint); err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
				ps.add("keys.aws.endpoint", "want an https:// URL (http:// only to a loopback address), got %q", a.Endpoint)
			}
		}
		seen := map[string]string{}
		if a.KMSKey != "" {
			seen[a.KMSKey] = "keys.aws.kms_key"
		}
		for i, o := range f.Orgs {
			if o.KMSKey == "" {
				continue
			}
			path := fmt.Sprintf("orgs[%d].kms_key", i)
			if prev, dup := seen[o.KMSKey]; dup {
				ps.add(path, "%s is also %s: an org's own key wraps that org alone", o.KMSKey, prev)
				continue
			}
			seen[o.KMSKey] = path
		}
		switch {
		case a.MaxAttempts == 0:
			a.MaxAttempts = DefaultKMSMaxAttempts
		case a.MaxAttempts < 1 || a.MaxAttempts > 20:
			ps.add("keys.aws.max_attempts", "want 1 to 20, got %d", a.MaxAttempts)
		}
		defaultDuration(ps, "keys.aws.call_timeout", &a.CallTimeout, DefaultKMSCallTimeout)
		if a.KMSKey == "" && k.Provider == ProviderAWSKMS {
			for i, o := range f.Orgs {
				if o.KMSKey == "" {
					ps.add(fmt.Sprintf("orgs[%d]", i), "org %s has no kms_key and keys.aws.kms_key is not set", o.ID)
				}
			}
		}
	}
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (p *Policy) compileAdmin(ps *problems) {
	f := &p.File
	if f.Admin == nil {
		f.Admin = &Admin{}
	}
	a := f.Admin
	switch a.Listen {
	case "":
		a.Listen = DefaultAdminListen
	case "off":
		if a.Pprof || a.CheckUpstream {
			ps.add("admin", "admin.listen is off: pprof and check_upstream need the admin listener")
		}
		f.Admin = nil
		return
	}
	if _, port, err := net.SplitHostPort(a.Listen); err != nil {
		ps.add("admin.listen", `want host:port or "off", got %q`, a.Listen)
	} else if sameAddr(a.Listen, f.Ingress.Listen) && port != "0" {
		ps.add("admin.listen", "the admin listener must not share the proxy's address %q", a.Listen)
	}
}

// sameAddr reports whether two listen addresses would take the same
// port: equal, or one of them on every address.
func sameAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return pa == pb && (ha == hb || wild(ha) || wild(hb))
}

// defaultDuration fills an unset duration with def and refuses a negative one.
func defaultDuration(ps *problems, path string, d *time.Duration, def time.Duration) {
	switch {
	case *d == 0:
		*d = def
	case *d < 0:
		ps.add(path, "must be positive")
	}
}

func (p *Policy) compileIdentity(ps *problems, dir string) {
	id := p.File.Identity
	if id == nil {
		return
	}
	if in := id.Introspection; in != nil {
		if u, err := url.Parse(in.URL); err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
			ps.add("identity.introspection.url", "want an https:// URL (http:// only to a loopback address), got %q", in.URL)
		}
		if (in.ClientID == "") != (in.ClientSecretFile == "") {
			ps.add("identity.introspection", "client_id and client_secret_file go together")
		}
		in.ClientSecretFile = resolve(dir, in.ClientSecretFile)
		switch {
		case in.CacheTTL == 0:
			in.CacheTTL = time.Minute
		case in.CacheTTL < 0 || in.CacheTTL > time.Hour:
			ps.add("identity.introspection.cache_ttl", "want 1s to 1h, got %s", in.CacheTTL)
		}
	}
	if ar := id.AuthRequest; ar != nil {
		if id.Introspection != nil {
			ps.add("identity.auth_request", "use introspection or auth_request, not both")
		}
		if u, err := url.Parse(ar.URL); err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
			ps.add("identity.auth_request.url", "want an https:// URL (http:// only to a loopback address), got %q", ar.URL)
		}
		switch {
		case ar.CacheTTL == 0:
			ar.CacheTTL = time.Minute
		case ar.CacheTTL < 0 || ar.CacheTTL > time.Hour:
			ps.add("identity.auth_request.cache_ttl", "want 1s to 1h, got %s", ar.CacheTTL)
		}
	}
	if id.JWT != nil {
		switch {
		case id.JWT.JWKS == "" && id.JWT.JWKSURL == "":
			ps.add("identity.jwt", "identity.jwt.jwks (a file) or jwks_url is required")
		case id.JWT.JWKS != "" && id.JWT.JWKSURL != "":
			ps.add("identity.jwt.jwks_url", "name the key set once: jwks (a file) or jwks_url, not both")
		case id.JWT.JWKSURL != "":
			// Public keys, but whoever answers chooses whom phiguard
			// believes: TLS, except on loopback.
			if u, err := url.Parse(id.JWT.JWKSURL); err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
				ps.add("identity.jwt.jwks_url", "want an https:// URL (http:// only to a loopback address), got %q", id.JWT.JWKSURL)
			}
		}
		if id.JWT.JWKSRefresh < 0 || id.JWT.JWKSRefresh > 0 && id.JWT.JWKSRefresh < time.Minute {
			ps.add("identity.jwt.jwks_refresh", "want 1m or more, got %s", id.JWT.JWKSRefresh)
		}
		if id.JWT.JWKSRefresh == 0 {
			id.JWT.JWKSRefresh = 10 * time.Minute
		}
		if id.JWT.JWKS != "" {
			id.JWT.JWKS = resolve(dir, id.JWT.JWKS)
		}
		if c := id.JWT.Cookie; c != "" && (strings.ContainsAny(c, " \t=;,\"()<>@:/[]?{}\\") || strings.ContainsFunc(c, unicode.IsControl)) {
			ps.add("identity.jwt.cookie", "want a cookie name (no spaces, separators or control characters), got %q", c)
		}
		switch {
		case id.JWT.ClockSkew == 0:
			id.JWT.ClockSkew = DefaultClockSkew
		case id.JWT.ClockSkew < 0 || id.JWT.ClockSkew > 10*time.Minute:
			ps.add("identity.jwt.clock_skew", "want 0s to 10m, got %s", id.JWT.ClockSkew)
		}
		if id.JWT.MaxTokenLifetime < 0 {
			ps.add("identity.jwt.max_token_lifetime", "must be positive (or left out for no limit)")
		}
		switch {
		case id.JWT.CacheSize == 0:
			id.JWT.CacheSize = DefaultJWTCacheSize
		case id.JWT.CacheSize < -1 || id.JWT.CacheSize > maxJWTCacheSize:
			ps.add("identity.jwt.cache_size", "want 1 to %d, or -1 for no cache, got %d", maxJWTCacheSize, id.JWT.CacheSize)
		}
		defaultDuration(ps, "identity.jwt.cache_ttl", &id.JWT.CacheTTL, DefaultJWTCacheTTL)
	}
	if id.Claims.Org == "" {
		id.Claims.Org = "org_id"
	}
	if id.Claims.User == "" {
		id.Claims.User = "sub"
	}
	if id.Claims.Role == "" {
		id.Claims.Role = "role"
	}
	p.compilePATs(ps, &id.PATs)
	p.TrustedGateways = parsePrefixes(ps, "identity.trusted_gateways", id.TrustedGateways)
	p.TrustedProxies = parsePrefixes(ps, "identity.trusted_proxies", id.TrustedProxies)
}

// parsePrefixes parses a list of CIDRs and single IP addresses.
func parsePrefixes(ps *problems, path string, list []string) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range list {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pfx.Masked())
		} else if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		} else {
			ps.add(fmt.Sprintf("%s[%d]", path, i), "want a CIDR or an IP address, got %q", s)
		}
	}
	return out
}

func (p *Policy) compileAudit(ps *problems, dir string) {
	a := &p.File.Audit
	if a.FailClosed == nil {
		t := true
		a.FailClosed = &t
	}
	if len(a.Sinks) == 0 {
		a.Sinks = []Sink{{Type: "stdout"}}
	}
	for i := range a.Sinks {
		s := &a.Sinks[i]
		path := fmt.Sprintf("audit.sinks[%d]", i)
		switch s.Type {
		case "stdout", "stderr":
			if s.Path != "" {
				ps.add(path+".path", "a %s sink takes no path", s.Type)
			}
			if s.MaxBytes != 0 || s.MaxAge != 0 || s.Retention != 0 {
				ps.add(path, "max_bytes, max_age and retention are for file sinks; the log collector rotates %s", s.Type)
			}
		case "file":
			if s.Path == "" {
				ps.add(path, "a file sink needs a path")
			}
			s.Path = resolve(dir, s.Path)
			if s.MaxBytes < 0 || s.MaxAge < 0 || s.Retention < 0 {
				ps.add(path, "max_bytes, max_age and retention must not be negative")
			}
			if s.Retention == 0 {
				s.Retention = DefaultAuditRetention
			}
		case "http":
			u, err := url.Parse(s.URL)
			switch {
			case s.URL == "":
				ps.add(path+".url", "an http sink needs the collector's url")
			case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
				ps.add(path+".url", "want an https:// URL, got %q", s.URL)
			case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
				ps.add(path+".url", "audit records go to a collector over https (http only on loopback)")
			}
			if s.SpoolDir == "" {
				ps.add(path+".spool_dir", "an http sink needs a spool_dir: lines wait there while the collector is slow")
			}
			s.SpoolDir = resolve(dir, s.SpoolDir)
			if s.SpoolBytes < 0 || s.BatchLines < 0 {
				ps.add(path, "spool_bytes and batch_lines must not be negative")
			}
		case "":
			ps.add(path, "type is required (stdout, stderr, file or http)")
		default:
			ps.add(path+".type", "unknown sink type %q (want stdout, stderr, file or http)", s.Type)
		}
		if s.Type != "http" && (s.URL != "" || s.TokenEnv != "" || s.SpoolDir != "" || s.SpoolBytes != 0 || s.BatchLines != 0) {
			ps.add(path, "url, token_env, spool_dir, spool_bytes and batch_lines are for http sinks")
		}
		if s.Type != "file" && s.Type != "stdout" && s.Type != "stderr" && (s.MaxBytes != 0 || s.MaxAge != 0 || s.Retention != 0) {
			ps.add(path, "max_bytes, max_age and retention are for file sinks")
		}
	}
	if a.SigningKey != "" {
		a.SigningKey = resolve(dir, a.SigningKey)
	}
	if a.HashKey != "" {
		a.HashKey = resolve(dir, a.HashKey)
	}
	if a.CheckpointEvery < 0 {
		ps.add("audit.checkpoint_every", "must not be negative")
	}
	if a.CheckpointEvery == 0 {
		a.CheckpointEvery = audit.DefaultCheckpointEvery
	}
	defaultDuration(ps, "audit.checkpoint_interval", &a.CheckpointInterval, audit.DefaultCheckpointInterval)
	defaultDuration(ps, "audit.timeout", &a.Timeout, audit.DefaultTimeout)
	// One sink per destination: two would write every record twice and
	// share one name in metrics and readiness.
	seen := map[Sink]int{}
	for i, sk := range a.Sinks {
		if prev, dup := seen[sk]; dup && sk.Type != "" {
			ps.add(fmt.Sprintf("audit.sinks[%d]", i), "the same destination as audit.sinks[%d]", prev)
			continue
		}
		seen[sk] = i
	}
}

var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

func (p *Policy) compileRoute(ps *problems, i int) *Route {
	rc := p.File.Routes[i]
	base := fmt.Sprintf("routes[%d]", i)
	r := &Route{Name: rc.Name, Index: i, AuthRequired: true, Deny: rc.Deny, Scope: rc.Scope}
	if rc.Name == "" {
		ps.add(base, "name is required")
	}
	if rc.Match.Path == "" {
		ps.add(base+".match", "match.path is required")
	} else if t, err := parseTemplate(rc.Match.Path); err != nil {
		ps.add(base+".match.path", "%v", err)
	} else {
		r.Path = t
	}
	r.Methods = compileMethods(ps, base, rc.Match.Methods)
	switch rc.Auth {
	case "", "required":
	case "none":
		r.AuthRequired = false
	default:
		ps.add(base+".auth", "want required or none, got %q", rc.Auth)
	}
	r.EncryptRequest = p.compileFields(ps, base+".encrypt_request", rc.EncryptRequest, false)
	r.SearchRequest = p.compileFields(ps, base+".search_request", rc.SearchRequest, true)
	r.DecryptResponse = p.compileSelectors(ps, base+".decrypt_response", rc.DecryptResponse)
	for _, s := range r.DecryptResponse {
		if s.Form {
			ps.add(s.at, "form selectors apply to request bodies; responses are JSON")
		}
	}
	if rc.VerifySignature != nil {
		r.Signature = compileSignature(ps, base+".verify_signature", *rc.VerifySignature, len(r.EncryptRequest) > 0)
	}
	if rc.Record != nil {
		r.RecordRequest, r.RecordRequestNames = compileRecord(ps, base+".record.request", rc.Record.Request)
		r.RecordResponse, r.RecordResponseNames = compileRecord(ps, base+".record.response", rc.Record.Response)
	}
	if len(rc.Readers) == 1 && rc.Readers[0] == AnyRole {
		// Every role, said on purpose.
	} else {
		r.Readers = roleSet(ps, base+".readers", rc.Readers)
		if len(rc.Readers) == 0 && len(r.DecryptResponse) > 0 && r.AuthRequired && rc.Deny == "" {
			ps.warn(base+".decrypt_response", "no readers: every caller of the org reads plaintext, whatever its role; list the roles that may (readers: [agent]), or write readers: [\"*\"] to mean every role")
		}
	}
	r.AllowRoles = roleSet(ps, base+".allow_roles", rc.AllowRoles)
	r.BreakGlass = roleSet(ps, base+".break_glass", rc.BreakGlass)
	if len(r.BreakGlass) > 0 && (len(r.DecryptResponse) == 0 || !r.AuthRequired) {
		ps.add(base+".break_glass", "break_glass lets roles read plaintext with a reason, but the route decrypts nothing or has no caller")
	}
	for role := range r.BreakGlass {
		if r.Readers == nil || r.Readers[role] {
			ps.add(base+".break_glass", "role %q already reads plaintext (readers): break_glass is for roles outside readers", role)
		}
	}
	if len(r.AllowRoles) > 0 && !r.AuthRequired {
		ps.add(base+".allow_roles", "allow_roles needs a caller, and auth: none has none")
	}
	for role := range r.Readers {
		if len(r.AllowRoles) > 0 && !r.AllowRoles[role] {
			ps.add(base+".readers", "reader role %q is not in allow_roles: it could never reach the route", role)
		}
	}
	if rc.OrgFrom != nil {
		r.OrgFrom = compileOrgFrom(ps, base+".org_from", *rc.OrgFrom, r)
	}
	if rc.ConsentKeywords != nil {
		p.compileConsentKeywords(ps, base+".consent_keywords", *rc.ConsentKeywords, r)
	}
	// Impossible combinations.
	if rc.Deny != "" && (r.HasFieldActions() || len(rc.Readers) > 0 || len(rc.AllowRoles) > 0 || rc.OrgFrom != nil) {
		ps.add(base, "deny refuses every request of the route; field actions, readers and org_from would never apply")
	}
	if len(rc.Readers) > 0 && len(r.DecryptResponse) == 0 && len(r.SearchRequest) == 0 {
		ps.add(base+".readers", "readers limit who sees decrypted values and who may search, but the route decrypts nothing and takes no search term (add decrypt_response)")
	}
	if !r.AuthRequired && len(r.SearchRequest) > 0 {
		ps.add(base+".auth", "auth: none with search_request would let anyone search protected fields")
	}
	if !r.AuthRequired && len(r.DecryptResponse) > 0 {
		ps.add(base+".auth", "auth: none with decrypt_response would hand plaintext to anyone")
	}
	if !r.AuthRequired && r.HasFieldActions() && r.OrgFrom.Kind == OrgFromClaim {
		ps.add(base+".org_from", "auth: none leaves no token to read the org claim from; take the org from a path_param or header")
	}
	return r
}

// compileRecord compiles a route's record list.
func compileRecord(ps *problems, path string, fields []RecordField) ([]Selector, []string) {
	var sels []Selector
	var names []string
	seen := map[string]bool{}
	for j, f := range fields {
		p := fmt.Sprintf("%s[%d]", path, j)
		if f.Name == "" || strings.ContainsFunc(f.Name, func(r rune) bool {
			return !(r == '_' || r == '-' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r))
		}) {
			ps.add(p+".name", "want a name of letters, digits, '_', '-' or '.', got %q", f.Name)
			continue
		}
		if seen[f.Name] {
			ps.add(p+".name", "%q is recorded twice", f.Name)
			continue
		}
		s, err := ParseSelector(f.Field)
		if err != nil || s.Form {
			ps.add(p+".field", "want a JSON selector ($.user_id), got %q", f.Field)
			continue
		}
		seen[f.Name] = true
		sels = append(sels, s)
		names = append(names, f.Name)
	}
	return sels, names
}

// roleSet compiles a list of roles; nil for none.
// AnyRole, alone in readers, says on purpose that every role of the org
// reads plaintext.
const AnyRole = "*"

func roleSet(ps *problems, path string, roles []string) map[string]bool {
	var set map[string]bool
	for j, role := range roles {
		if role == "" {
			ps.add(fmt.Sprintf("%s[%d]", path, j), "empty role")
			continue
		}
		if role == AnyRole {
			ps.add(fmt.Sprintf("%s[%d]", path, j), "\"*\" means every role; it stands alone, in readers only")
			continue
		}
		if set == nil {
			set = map[string]bool{}
		}
		set[role] = true
	}
	return set
}

func compileOrgFrom(ps *problems, path string, of OrgFrom, r *Route) OrgSource {
	n := 0
	var src OrgSource
	if of.Claim {
		n++
		src = OrgSource{Kind: OrgFromClaim}
	}
	if of.PathParam != "" {
		n++
		src = OrgSource{Kind: OrgFromPathParam, Name: of.PathParam}
		if !r.Path.hasParam(of.PathParam) {
			ps.add(path+".path_param", "the route's path has no {%s} parameter", of.PathParam)
		}
	}
	if of.Header != "" {
		n++
		src = OrgSource{Kind: OrgFromHeader, Name: http.CanonicalHeaderKey(of.Header)}
		if strings.HasPrefix(strings.ToLower(of.Header), "x-phiguard-") {
			ps.add(path+".header", "X-Phiguard-* headers are phiguard's own and are stripped from requests")
		}
	}
	if n != 1 {
		ps.add(path, "name exactly one of claim, path_param or header")
	}
	return src
}

// MaxSelectors is the most selectors one list of a route may hold: each
// has its own bit in the exchange's record of which selectors found a
// value (coverage).
const MaxSelectors = 64

func (p *Policy) compileSelectors(ps *problems, path string, texts []string) []Selector {
	fields := make([]Field, len(texts))
	for j, text := range texts {
		fields[j] = Field{Field: text}
	}
	return p.compileFields(ps, path, fields, false)
}

// crossCheck validates what depends on more than one section.
func (p *Policy) crossCheck(ps *problems) {
	f := &p.File
	needJWT, needKeys, needGateway := false, false, false
	for _, r := range p.Routes {
		if r.AuthRequired && r.Deny == "" {
			needJWT = true
		}
		if r.HasFieldActions() {
			needKeys = true
			if len(f.Orgs) == 0 {
				ps.add(fmt.Sprintf("routes[%d]", r.Index), "the route has field actions but no organization is listed under orgs")
			}
		}
		if r.OrgFrom.Kind == OrgFromHeader {
			needGateway = true
		}
	}
	for _, r := range p.EgressRoutes {
		if len(r.Egress.Decrypt) > 0 || len(r.Egress.EncryptResponse) > 0 {
			needKeys = true
			if len(f.Orgs) == 0 {
				ps.add(fmt.Sprintf("egress_routes[%d]", r.Index), "the route opens or seals tokens but no organization is listed under orgs")
			}
		}
	}
	p.checkConsent(ps)
	p.warnUnusedFieldSets(ps)
	if needJWT && (f.Identity == nil || f.Identity.JWT == nil && f.Identity.Introspection == nil && f.Identity.AuthRequest == nil) {
		ps.add("identity", "routes need a caller (auth: required is the default) but none of identity.jwt, introspection or auth_request is set")
	}
	if needKeys && f.Keys == nil {
		ps.add("keys", "routes have field actions but keys is not set")
	}
	if needGateway && len(p.TrustedGateways) == 0 {
		ps.add("identity", "a route takes the organization from a header, but identity.trusted_gateways is empty")
	}
}

// checkShadow reports r when a route before it takes every request it
// would. The same path shape (parameter names aside) is an error: one of
// the two is a mistake. A broader path before it (a ** deny for a
// maintenance window) may be meant, and is a warning.
func checkShadow(ps *problems, path, list string, earlier []*Route, r *Route, caseSensitive bool) {
	if r.Path.text == "" {
		return
	}
	for _, e := range earlier {
		if e.Path.text == "" || e.Egress != nil && e.Egress.Host != r.Egress.Host || !e.shadows(r, caseSensitive) {
			continue
		}
		if r.Path.covers(e.Path, caseSensitive) {
			ps.add(path, "never matches: %s[%d] (%s) takes the same requests first (the same path, whatever its parameters are called)", list, e.Index, e.Name)
		} else {
			ps.warn(path, "never matches while %s[%d] (%s), whose path takes every request of this one, comes first", list, e.Index, e.Name)
		}
		return
	}
}

// shadows reports whether r, placed before later, takes every request
// later would: its path covers later's whatever the parameters are
// called, and it takes every method later takes.
func (r *Route) shadows(later *Route, caseSensitive bool) bool {
	if !r.Path.covers(later.Path, caseSensitive) {
		return false
	}
	if later.Methods == nil {
		return r.Methods == nil
	}
	for m := range later.Methods {
		if !r.takesMethod(m) {
			return false
		}
	}
	return true
}

func resolve(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// Digest is the hex SHA-256 of data: a policy text's SHA256.
func Digest(data []byte) string {
	sum, err := subtle.ComputeHash(subtle.GetHashFunc("SHA256"), data)
	if err != nil {
		panic(err) // SHA256 is always known
	}
	return hex.EncodeToString(sum)
}

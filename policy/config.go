package policy

import "time"

// The structs below mirror the policy file key for key; their comments are
// the reference for each key (configs/reference.yaml shows them all in use).

// File is a policy file as written.
type File struct {
	// Version of the policy format. Required; only 1 exists.
	Version int `yaml:"version"`
	// Ingress is the listener clients call and the app it forwards to.
	Ingress Ingress `yaml:"ingress"`
	// Identity says how callers are identified. Required when any route
	// needs a caller (auth: required, the default).
	Identity *Identity `yaml:"identity"`
	// Keys says where organization keys live. Required when any route has
	// field actions.
	Keys *Keys `yaml:"keys"`
	// Audit says where audit records go. Default: stdout, fail closed.
	Audit Audit `yaml:"audit"`
	// Admin is the operations listener (/healthz, /readyz, /metrics),
	// never the proxy's port. Default: on 127.0.0.1:9901.
	Admin *Admin `yaml:"admin"`
	// Reload says how a changed policy file is taken up without a restart.
	Reload Reload `yaml:"reload"`
	// Default is what happens to a request no route matches: deny
	// (default) or allow (forwarded untouched but for path normalization
	// and header hygiene).
	Default string `yaml:"default"`
	// Mask replaces a protected value a caller may not read. Default "[protected]".
	Mask string `yaml:"mask"`
	// CaseSensitivePaths makes route paths match case-sensitively. Default
	// false: a wider match only adds protection.
	CaseSensitivePaths bool `yaml:"case_sensitive_paths"`
	// Search tunes searchable fields (encrypt_request items with
	// searchable, and search_request).
	Search Search `yaml:"search"`
	// HIPAA sets the defaults of the orgs' HIPAA mode and what counts as
	// a second factor.
	HIPAA HIPAA `yaml:"hipaa"`
	// State is where phiguard keeps what its replicas must agree on:
	// sessions (last use, revocations). Default: this process's memory.
	State State `yaml:"state"`
	// Integrations are the third-party apps (OAuth clients) that may act
	// for HIPAA orgs: only under a BAA, only with the scopes granted, and
	// high-risk scopes only once approved.
	Integrations []Integration `yaml:"integrations"`
	// ScopeRisk overrides the risk level of scopes (by the part before
	// the first '.': messages.read is messages).
	ScopeRisk ScopeRisk `yaml:"scope_risk"`
	// Orgs lists the organizations whose PHI phiguard protects. A route
	// with field actions refuses callers of any other organization.
	Orgs []Org `yaml:"orgs"`
	// Fields names lists of selectors that routes reuse: a name written
	// where a selector goes (encrypt_request, decrypt_response,
	// decrypt_request, drop_request, encrypt_response, dlp.fields) stands
	// for the set's selectors. Each set is checked once, where it is
	// defined: fields: {message_fields: ["$.message", "$.props.attachments[*].text"]}.
	Fields FieldSets `yaml:"fields"`
	// Routes are matched in file order; the first match wins.
	Routes []RouteConfig `yaml:"routes"`
	// Consent configures the SMS consent registry (opt-out and opt-in
	// keywords).
	Consent Consent `yaml:"consent"`
	// Egress is the listener the app's outbound vendor calls go through.
	Egress Egress `yaml:"egress"`
	// EgressRoutes are the vendor endpoints the app may call through the
	// egress listener, matched in file order by host, method and path.
	// A call no route takes is refused (403 destination_not_allowed): the
	// vendor is never contacted.
	EgressRoutes []EgressRouteConfig `yaml:"egress_routes"`
}

// Ingress configures the client-facing listener.
type Ingress struct {
	// Listen is the address to listen on. Default ":8443".
	Listen string `yaml:"listen"`
	// Upstream is the app's base URL, http or https. Required.
	Upstream string `yaml:"upstream"`
	// UpstreamH2C speaks HTTP/2 without TLS (prior knowledge) to the app.
	UpstreamH2C bool `yaml:"upstream_h2c"`
	// UpstreamMaxIdleConns is how many idle connections to the app are
	// kept for reuse. Default: max_concurrent_requests, so a busy sidecar
	// does not open and close a connection per request.
	UpstreamMaxIdleConns int `yaml:"upstream_max_idle_conns"`
	// UpstreamProxy is an HTTP proxy URL to reach the app through. Default:
	// none. The app is reached directly; HTTP_PROXY and kin in the
	// environment are ignored, so bearer tokens and PHI never follow them.
	UpstreamProxy string `yaml:"upstream_proxy"`
	// MaxBodyBytes bounds a request body phiguard reads on a route with
	// field actions, after decompression. Default 10485760 (10 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxResponseBytes bounds a response body phiguard reads on a route
	// that decrypts, after decompression. Encryption makes values longer,
	// so a request whose encrypted body would exceed it is refused (413)
	// before the app stores what phiguard could not return. Default four
	// times max_body_bytes.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// MaxConcurrentRequests caps the requests in flight; past it, phiguard
	// answers 503 at once. Memory for bodies is bounded by about
	// max_concurrent_requests × 2 × (max_body_bytes + max_response_bytes).
	// Default 256.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// TLS serves HTTPS (and HTTP/2) with this certificate. Without it the
	// listener speaks plain HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
	TLS *TLS `yaml:"tls"`
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included, so a slow
	// client cannot pin a body buffer. Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// UpstreamTimeout bounds waiting for the app's response headers. Default 60s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// WriteTimeout bounds a whole exchange from the end of the request's
	// headers to the last byte of the response (uploads and downloads
	// included), so a client that stops reading cannot hold one of
	// max_concurrent_requests for ever. It must exceed read_timeout +
	// upstream_timeout. Default 2m.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// DrainDelay is how long phiguard, told to stop (SIGTERM, SIGINT),
	// keeps serving after /readyz turns false, so that load balancers
	// stop sending before the listener closes. Default 0.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// DrainTimeout bounds waiting for requests in flight once the
	// listener is closed; then the audit sinks are flushed and phiguard
	// exits 0, or 1 if requests were still in flight. Default 20s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// TLS names a certificate and its key, PEM files.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Identity configures caller identification.
type Identity struct {
	// JWT verifies bearer tokens in the Authorization header.
	JWT *JWT `yaml:"jwt"`
	// Claims names the token claims that carry org, user and role.
	Claims Claims `yaml:"claims"`
	// Introspection identifies callers whose bearer token is not a JWT
	// (an opaque session token) by asking the authorization server (OAuth
	// 2.0 token introspection, RFC 7662); its answer is read with the
	// claim names of claims.
	Introspection *Introspection `yaml:"introspection"`
	// AuthRequest identifies callers whose bearer token is not a JWT by
	// asking the app's own "who am I" endpoint (as nginx auth_request
	// does): a GET carrying the token; 200 with the caller's JSON (read
	// with the claim names of claims) is a session, 401 or 403 none.
	// Instead of introspection.
	AuthRequest *AuthRequest `yaml:"auth_request"`
	// TrustedGateways lists the peer addresses (CIDRs or single IPs)
	// allowed to name the organization in a header (org_from: {header: …}).
	TrustedGateways []string `yaml:"trusted_gateways"`
	// TrustedProxies lists the peers (CIDRs or single IPs: an ingress, a
	// load balancer) whose X-Forwarded-For or Forwarded header names the
	// client: audit records then show the client's address, not the
	// proxy's. The rightmost address that is not a trusted proxy is the
	// client. Default none: the peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// PATs describes personal access tokens and API keys, which HIPAA
	// orgs may not use (403 pat_disabled) wherever they appear.
	PATs PATs `yaml:"pats"`
}

// JWT configures bearer-token verification.
type JWT struct {
	// JWKS is a JSON Web Key Set file with the issuer's public keys
	// (RS256/384/512, PS256/384/512, ES256/384/512). It, or JWKSURL, is
	// required.
	JWKS string `yaml:"jwks"`
	// JWKSURL is where the issuer publishes its key set (https, or http
	// on loopback): fetched at start (which fails without it), every
	// JWKSRefresh, and at once when a token names a kid the set lacks
	// (a rotation), at most every 30s. A failed fetch keeps the last good
	// set and is logged, never shown to clients.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefresh is how often JWKSURL is fetched. Default 10m.
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// Cookie names a cookie that carries the token when the request has
	// no Authorization header (a browser session, as a web app sets it).
	// The cookie is forwarded to the app as it is. Default none.
	Cookie string `yaml:"cookie"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be among the token's aud claim.
	Audience string `yaml:"audience"`
	// ClockSkew tolerated on exp, nbf and iat. Default 30s, at most 10m.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// MaxTokenLifetime, when set, refuses tokens that are valid for longer:
	// exp more than this after iat, or after now. Default 0: no limit
	// (a token whose iat lies in the future is refused either way).
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// CacheSize bounds the verified-token cache, in tokens: a token seen
	// again is not verified again until its exp or CacheTTL, whichever
	// comes first, and its exp is checked on every use. Default 10000;
	// -1 disables the cache.
	CacheSize int `yaml:"cache_size"`
	// CacheTTL is the longest a verified token stays cached. Default 5m.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// Introspection configures RFC 7662 token introspection.
type Introspection struct {
	// URL of the introspection endpoint: https, or http on loopback.
	URL string `yaml:"url"`
	// ClientID and the file holding ClientSecret authenticate phiguard
	// to it (HTTP Basic). Optional.
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// CacheTTL is how long an answer is reused for one token, never past
	// its exp: a revoked session ends at most this late. Default 1m.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// AuthRequest configures the auth subrequest.
type AuthRequest struct {
	// URL of the app's endpoint: https, or http on loopback (the app
	// beside phiguard).
	URL string `yaml:"url"`
	// Cookie, when set, also carries the token, under this name, for an
	// app that reads its session from a cookie.
	Cookie string `yaml:"cookie"`
	// CacheTTL is how long an answer is reused for one token. Default 1m.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// Claims names the JWT claims that carry the caller's attributes.
type Claims struct {
	// Org is the organization claim. Default "org_id". It must be one
	// string naming a valid organization id; a token without it, or with a
	// number or a list there, is refused on every route that needs a
	// caller (403). One token acts for one organization.
	Org string `yaml:"org"`
	// User is the user claim. Default "sub". It must be a non-empty
	// string: no unique user id, no access (403).
	User string `yaml:"user"`
	// Role is the role claim, matched against a route's readers. Default "role".
	Role string `yaml:"role"`
	// MFA names a boolean claim that, true, says the login used a second
	// factor, for identity providers that do not fill amr. Optional.
	MFA string `yaml:"mfa"`
	// Client names the claim that carries an integration's OAuth client
	// id (azp, client_id): a token with it acts for that integration,
	// which integrations must list. Optional; without it no token is an
	// integration's.
	Client string `yaml:"client"`
}

// Keys configures where organization keys come from.
type Keys struct {
	// Provider of key-encryption keys: local (one master key, a file) or
	// aws-kms (each org's keyset wrapped by AWS KMS). Default local.
	Provider string `yaml:"provider"`
	// Keyring is the folder holding the wrapped organization keysets.
	Keyring string `yaml:"keyring"`
	// MasterKey is the local provider's master key file. Default
	// KEYRING/master.json. Keep it apart from the keyring (another
	// Secret, another volume) so that a copy of the keyring alone opens
	// nothing. The environment variable PHIGUARD_MASTER_KEY, holding the
	// file's content, takes precedence.
	MasterKey string `yaml:"master_key"`
	// AWS configures the aws-kms provider.
	AWS *AWSKMS `yaml:"aws"`
	// LoadTimeout bounds unwrapping every keyset at start and on reload.
	// Default 30s.
	LoadTimeout time.Duration `yaml:"load_timeout"`
	// ReverifyEvery unwraps every keyset again this often, so that a KMS
	// key disabled or deleted (revoking an org) takes the org's keys away
	// from running sidecars too; an unreachable KMS takes nothing away.
	// Default 1h; at least 1m.
	ReverifyEvery time.Duration `yaml:"reverify_every"`
	// AcceptLocal lets the aws-kms provider also read keysets wrapped by
	// the local master key, while a keyring moves to KMS (keys rewrap);
	// never for an org with its own kms_key. Default false: a keyset file
	// wrapped by the master key is refused, so that an old file restored
	// from a backup cannot take an org off KMS.
	AcceptLocal bool `yaml:"accept_local"`
}

// AWSKMS configures the aws-kms provider. Credentials come from the AWS
// SDK's standard chain: environment, shared config, web identity (IRSA).
type AWSKMS struct {
	// Region of the KMS keys. Default: the SDK's (AWS_REGION, shared config).
	Region string `yaml:"region"`
	// Endpoint overrides the KMS endpoint, for a VPC endpoint. Default:
	// the region's.
	Endpoint string `yaml:"endpoint"`
	// KMSKey wraps the keyset of every org that names no kms_key of its
	// own: a key ARN, key id or alias/NAME.
	KMSKey string `yaml:"kms_key"`
	// PreviousKeys may still wrap keysets while they are rewrapped to
	// their new key. A keyset file naming any other key is refused.
	PreviousKeys []string `yaml:"previous_keys"`
	// MaxAttempts bounds the tries of one KMS call (throttling, 5xx),
	// with backoff. Default 5.
	MaxAttempts int `yaml:"max_attempts"`
	// CallTimeout bounds one KMS call, retries included. Default 10s.
	CallTimeout time.Duration `yaml:"call_timeout"`
}

// Admin configures the operations listener.
type Admin struct {
	// Listen is the admin address. Default "127.0.0.1:9901"; "off" serves
	// no admin listener. Keep it on loopback or a pod-internal address:
	// metrics name routes and counts.
	Listen string `yaml:"listen"`
	// CheckUpstream makes /readyz also need a TCP connection to the app
	// to succeed. Default false.
	CheckUpstream bool `yaml:"check_upstream"`
	// Pprof serves Go's profiler at /debug/pprof/ on the admin listener,
	// to see where a busy sidecar spends its CPU. Default false. Profiles
	// hold no request data, but a CPU profile costs CPU while it runs.
	Pprof bool `yaml:"pprof"`
}

// Reload configures taking up a changed policy file.
type Reload struct {
	// Watch reads the policy file every Interval and reloads it when its
	// content changed (a Kubernetes ConfigMap update swaps a symlink; the
	// file's content is what counts). SIGHUP reloads either way. Default
	// true.
	Watch *bool `yaml:"watch"`
	// Interval between reads of the policy file. Default 5s.
	Interval time.Duration `yaml:"interval"`
}

// Audit configures the audit trail.
type Audit struct {
	// Sinks receive every record. Default: one stdout sink.
	Sinks []Sink `yaml:"sinks"`
	// FailClosed refuses a request that touches PHI when its audit record
	// cannot be written. Default true.
	FailClosed *bool `yaml:"fail_closed"`
	// SigningKey is the Tink keyset (Ed25519) that signs the hash chain's
	// checkpoints, written by `phiguard audit keygen`; auditors verify
	// with its public half (`phiguard audit verify -pub`). Without it,
	// records are still chained, but nothing proves them unaltered.
	SigningKey string `yaml:"signing_key"`
	// HashKey is the Tink keyset (HMAC-SHA256) that keyed-hashes path
	// parameters and unmatched paths in records, written by `phiguard
	// audit keygen` (hash.json); `phiguard audit hash` finds a known
	// value's records with it. Without it, parameter values are left out.
	HashKey string `yaml:"hash_key"`
	// CheckpointEvery signs the chain head after this many lines. Default 1000.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// CheckpointInterval signs it at least this often, idle or not, so a
	// deleted tail shows as a gap. Default 1m.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Instance names this phiguard in its chains. Default $POD_NAME, else
	// the host name.
	Instance string `yaml:"instance"`
	// Timeout bounds the wait for a record to be written; past it the
	// record counts as not written (503 on a PHI route). Default 5s.
	Timeout time.Duration `yaml:"timeout"`
}

// Sink is one audit destination.
type Sink struct {
	// Type is stdout, stderr, file or http (a SIEM's collector).
	Type string `yaml:"type"`
	// URL of the collector, for type http: lines are POSTed to it as
	// newline-delimited JSON (https; http only to loopback).
	URL string `yaml:"url"`
	// TokenEnv names the environment variable holding a bearer token for
	// the collector (type http). Optional.
	TokenEnv string `yaml:"token_env"`
	// SpoolDir holds lines the collector has not accepted yet (type
	// http). Required: a slow collector never holds requests up; only a
	// full spool refuses them.
	SpoolDir string `yaml:"spool_dir"`
	// SpoolBytes bounds the spool (type http). Default 268435456 (256 MiB).
	SpoolBytes int64 `yaml:"spool_bytes"`
	// BatchLines bounds the lines of one POST (type http). Default 500.
	BatchLines int `yaml:"batch_lines"`
	// Path of the file, for type file. Records are appended.
	Path string `yaml:"path"`
	// MaxBytes starts a new file (the old one renamed PATH.TIME) before a
	// write would take it past this size. File sinks only; default 0: no
	// limit (an outside logrotate and SIGHUP may rotate it).
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxAge starts a new file once the current one is this old. File
	// sinks only; default 0: no limit.
	MaxAge time.Duration `yaml:"max_age"`
	// Retention deletes rotated files (PATH.TIME) last written longer ago
	// than this, at each rotation. File sinks only. Default 2190d (six
	// years, HIPAA's documentation retention).
	Retention time.Duration `yaml:"retention"`
}

// Org is an organization whose PHI is protected.
type Org struct {
	// ID as it appears in the org claim, path or header, and in tokens.
	ID string `yaml:"id"`
	// KMSKey is the org's own KMS key (aws-kms provider): its keyset is
	// wrapped under it, so disabling or deleting it revokes the org alone.
	// Default keys.aws.kms_key.
	KMSKey string `yaml:"kms_key"`
	// RotateEvery makes `phiguard keys expire` give the org a new primary
	// key once the primary is this old. Default: never.
	RotateEvery time.Duration `yaml:"rotate_every"`
	// Retain makes `phiguard keys expire` destroy the org's keys this long
	// after they stopped sealing: the values they sealed become unreadable everywhere
	// (database, backups, replicas) while the rest of each record stays.
	// Default: keep forever. It must exceed rotate_every.
	Retain time.Duration `yaml:"retain"`
	// HIPAA puts the org in HIPAA mode: its callers need a login with a
	// second factor (403 mfa_required), and, with enabled_at, a login
	// made after it (401 session_terminated). Default hipaa.default.
	HIPAA *bool `yaml:"hipaa"`
	// EnabledAt is when HIPAA mode was switched on (RFC 3339): every
	// token issued before it, or without iat, is refused, so switching it
	// on ends every session at once. Optional.
	EnabledAt time.Time `yaml:"enabled_at"`
	// IdleTimeout and AbsoluteTimeout override hipaa.idle_timeout and
	// hipaa.absolute_timeout for this org. Set on an org outside HIPAA
	// mode, they turn session limits (and revocation) on for it.
	IdleTimeout     *time.Duration `yaml:"idle_timeout"`
	AbsoluteTimeout *time.Duration `yaml:"absolute_timeout"`
}

// RouteConfig is one route as written.
type RouteConfig struct {
	// Name identifies the route in audit records and errors. Required, unique.
	Name string `yaml:"name"`
	// Match says which requests the route takes.
	Match Match `yaml:"match"`
	// Auth is required (default: a valid bearer token is needed) or none.
	Auth string `yaml:"auth"`
	// OrgFrom says where the request's organization comes from. Default:
	// the token's org claim.
	OrgFrom *OrgFrom `yaml:"org_from"`
	// EncryptRequest selects request body values to replace with tokens:
	// each a selector, or {field: SELECTOR, searchable: exact|words, …}
	// for a value the app must still find (see Field).
	EncryptRequest []Field `yaml:"encrypt_request"`
	// SearchRequest selects where the route's search terms arrive: query
	// parameters (query:NAME), JSON body fields, form fields. Each term is
	// replaced, before the app sees it, by what its encrypt_request twin
	// stores: the exact-match token, or the index words. Each item needs
	// searchable.
	SearchRequest []Field `yaml:"search_request"`
	// DecryptResponse selects response body values to turn back into
	// plaintext for readers, or into the mask for everyone else.
	DecryptResponse []string `yaml:"decrypt_response"`
	// Readers are the roles that see plaintext. Empty: every caller of the
	// token's organization.
	Readers []string `yaml:"readers"`
	// AllowRoles are the only roles the route takes at all (403
	// role_not_allowed for the others), whatever it touches. Empty: every
	// role.
	AllowRoles []string `yaml:"allow_roles"`
	// Record names non-PHI fields whose values go into the route's audit
	// records (a permission change: the user whose role changed, the old
	// and the new role; the caller is who changed it). Every request of
	// the route is then audited.
	Record *Record `yaml:"record"`
	// Scope is what an integration needs to use the route (messages.read).
	// An integration may use only routes with a scope it was granted.
	Scope string `yaml:"scope"`
	// BreakGlass are roles, outside readers, that may read plaintext in
	// an emergency by giving a reason in the hipaa.break_glass_header
	// header: each such request is audited as break_glass with the
	// reason. Without a reason they see the mask, as any non-reader.
	BreakGlass []string `yaml:"break_glass"`
	// Deny refuses the route with this reason (403); the app is never called.
	Deny string `yaml:"deny"`
	// VerifySignature checks a webhook's signature (a carrier's) before
	// anything is rewritten: an unsigned, forged or stale request is
	// refused (401). Since the app can no longer check the original
	// signature once fields are encrypted, phiguard signs what it
	// forwards (Resign).
	VerifySignature *SignatureCheck `yaml:"verify_signature"`
	// ConsentKeywords reads patients' opt-out and opt-in replies (STOP,
	// START) on a route that receives their SMS, and records them in the
	// consent registry under the request's org, by the keyed hash of the
	// sender's number. The request goes on to the app either way. Needs
	// verify_signature or a caller, and audit.hash_key.
	ConsentKeywords *ConsentKeywords `yaml:"consent_keywords"`
}

// SignatureCheck says how a webhook is signed, and how phiguard signs it
// again for the app.
type SignatureCheck struct {
	// Scheme is twilio (X-Twilio-Signature: base64 HMAC-SHA1 of the URL
	// and the sorted form parameters; for a JSON body, of the URL alone,
	// whose bodySHA256 query parameter is the body's SHA-256 in hex) or
	// hmac-sha256 (an HMAC-SHA256 of the raw body, or of TIMESTAMP.BODY
	// with timestamp_header).
	Scheme string `yaml:"scheme"`
	// SecretEnv names the environment variable holding the shared secret
	// (the carrier's auth token). Required; at least 16 bytes.
	SecretEnv string `yaml:"secret_env"`
	// PublicURL is the scheme and host the carrier calls
	// (https://hooks.example.com), and the path prefix an ingress strips
	// before phiguard if one does (https://example.com/sms): the URL it
	// signed is that, then the path and the query as received. Required
	// for twilio.
	PublicURL string `yaml:"public_url"`
	// Header carries the signature (hmac-sha256). Default X-Signature.
	Header string `yaml:"header"`
	// Encoding of the signature: hex (default) or base64 (hmac-sha256).
	Encoding string `yaml:"encoding"`
	// TimestampHeader carries the Unix time the sender signed at
	// (hmac-sha256): it is signed with the body, and a request older than
	// MaxAge is refused as stale.
	TimestampHeader string `yaml:"timestamp_header"`
	// MaxAge bounds a signed timestamp's age. Default 5m.
	MaxAge time.Duration `yaml:"max_age"`
	// Resign is the shared secret (an environment variable's name) with
	// which phiguard signs the rewritten request for the app, in
	// X-Phiguard-Signature: t=UNIX,v1=HEX, where HEX is the HMAC-SHA256 of
	// "UNIX.METHOD PATH?QUERY.BODY". Required: without it the app would
	// take an unsigned webhook.
	ResignSecretEnv string `yaml:"resign_secret_env"`
}

// Field is one item of encrypt_request or search_request. Written as a
// plain selector string, it is Field alone.
type Field struct {
	// Field is the selector: $.json.path, form:Name, or (search_request
	// only) query:Name.
	Field string `yaml:"field"`
	// Searchable keeps the value findable by the app: exact (equal values
	// of one org seal to equal tokens, so the app can look up, filter and
	// join on them) or words (the token is followed by one index word per
	// distinct word of the text, which the app's full-text search
	// indexes). Default: neither, a randomized token that reveals nothing.
	Searchable string `yaml:"searchable"`
	// Normalize is what an exact value is turned into before sealing, so
	// that variants of it match: none (default), trim, fold, phone
	// (E.164) or email. Readers then see the normalized value.
	Normalize string `yaml:"normalize"`
	// Join goes between the index words a search term becomes
	// (search_request, searchable: words). Default " ", which most
	// full-text searches read as AND; " OR " for any word (SQLite FTS5,
	// Elasticsearch query_string), " & " or " | " for PostgreSQL
	// to_tsquery.
	Join string `yaml:"join"`
}

// Record lists the fields of the request and of the response whose values
// the audit record shows. Only strings, numbers, booleans and null are
// recorded, at most 128 characters each: name only fields that hold no
// PHI.
type Record struct {
	Request  []RecordField `yaml:"request"`
	Response []RecordField `yaml:"response"`
}

// RecordField is one recorded value: its name in the audit record, and
// the JSON selector that finds it.
type RecordField struct {
	Name  string `yaml:"name"`
	Field string `yaml:"field"`
}

// Integration is one third-party app.
type Integration struct {
	// ID is its OAuth client id, as identity.claims.client carries it.
	ID string `yaml:"id"`
	// BAA: a Business Associate Agreement covers it. Without one it may
	// not act for a HIPAA org at all (403 integration_not_covered).
	BAA bool `yaml:"baa"`
	// Scopes it was granted (the routes' scope values).
	Scopes []string `yaml:"scopes"`
	// ApprovedBy and ApprovedAt record the admin approval its high-risk
	// scopes need (403 scope_not_approved without both).
	ApprovedBy string    `yaml:"approved_by"`
	ApprovedAt time.Time `yaml:"approved_at"`
}

// ScopeRisk lists scopes (by their part before the first '.') by risk.
// Default high: conversations, messages, calls, recordings,
// contact_notes; medium: contacts, users, teams, templates; low:
// profile, settings. A scope in no list is high.
type ScopeRisk struct {
	High   []string `yaml:"high"`
	Medium []string `yaml:"medium"`
	Low    []string `yaml:"low"`
}

// PATs describes where personal access tokens and API keys appear.
// Names and prefixes match in any letter case.
type PATs struct {
	// Prefixes of opaque tokens (glpat-, ghp_, mmpat_…) in the
	// Authorization header, a PAT header or a PAT query parameter.
	Prefixes []string `yaml:"prefixes"`
	// Headers whose presence is a PAT. Default X-Api-Key, Api-Key,
	// Private-Token, X-Access-Token, X-Auth-Token.
	Headers []string `yaml:"headers"`
	// QueryParams whose presence is a PAT. Default access_token,
	// api_key, apikey, private_token, token.
	QueryParams []string `yaml:"query_params"`
	// Claim of a verified token whose value in Values makes it a PAT.
	// Default token_type, values pat and personal_access_token.
	Claim  string   `yaml:"claim"`
	Values []string `yaml:"values"`
}

// HIPAA is the policy-wide part of HIPAA mode.
type HIPAA struct {
	// Default is the hipaa of every org that does not set its own.
	// Default false.
	Default bool `yaml:"default"`
	// MFAMethods are the amr values (RFC 8176) of which a token must carry
	// one to count as a login with a second factor. Default: mfa, otp,
	// hwk, swk, sc, sms, tel, fpt, face, iris, retina, vbm.
	MFAMethods []string `yaml:"mfa_methods"`
	// BreakGlassHeader carries a break-glass reason (routes'
	// break_glass). Default X-Break-Glass-Reason. It never reaches the app.
	BreakGlassHeader string `yaml:"break_glass_header"`
	// IdleTimeout ends the session of a HIPAA org's caller that made no
	// request for this long (401 session_idle_timeout): automatic logoff.
	// A session is its token's sid, else its jti, else the token itself.
	// Default 15m; 0s turns it off. orgs[].idle_timeout overrides it.
	IdleTimeout *time.Duration `yaml:"idle_timeout"`
	// AbsoluteTimeout ends a HIPAA org's session this long after it
	// began (its first request, or the token's auth_time or iat when
	// earlier), however active (401 session_expired). Default 12h; 0s
	// turns it off. orgs[].absolute_timeout overrides it.
	AbsoluteTimeout *time.Duration `yaml:"absolute_timeout"`
}

// State is where session state lives.
type State struct {
	// Store is memory (default: this process alone; lost on restart) or
	// redis (every replica sees each other's logoffs and revocations).
	// Whichever it is, a store that does not answer refuses the request
	// (503 state_unavailable): never let through unchecked.
	Store string `yaml:"store"`
	// Redis is the server of store: redis.
	Redis *RedisState `yaml:"redis"`
	// MaxSessions bounds the memory store; past it, new sessions are
	// refused (503) until old ones expire. Default 1048576.
	MaxSessions int `yaml:"max_sessions"`
}

// RedisState is a Redis server for the state store.
type RedisState struct {
	// URL is redis://[user@]host:port[/db], or rediss:// for TLS checked
	// against the system's roots. Required. A password does not belong
	// here: the policy is a ConfigMap. Use password_env.
	URL string `yaml:"url"`
	// PasswordEnv names the environment variable holding the password
	// (from a Kubernetes Secret). Optional.
	PasswordEnv string `yaml:"password_env"`
	// KeyPrefix starts every key phiguard writes. Default "phiguard:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each command, connecting included; past it the
	// request is refused. Default 250ms.
	Timeout time.Duration `yaml:"timeout"`
}

// Search tunes searchable fields for the whole policy.
type Search struct {
	// IndexChars is the length of an index word after its "w9" prefix, in
	// base32 characters of 5 bits each (2 to 16). Default 8 (40 bits).
	// Fewer bits make distinct words share index words: less is learned
	// from the index, and searches find more messages that do not hold
	// the word.
	IndexChars int `yaml:"index_chars"`
	// MinWordLength leaves shorter words (in characters) out of the index.
	// Default 2.
	MinWordLength int `yaml:"min_word_length"`
	// StopWords: english (default, Lucene's list) or none.
	StopWords string `yaml:"stop_words"`
	// ExtraStopWords are left out of the index as well.
	ExtraStopWords []string `yaml:"extra_stop_words"`
	// MaxWords bounds the index words of one value (the first distinct
	// words). Default 256.
	MaxWords int `yaml:"max_words"`
	// PhoneRegion is the ISO 3166 country whose numbering reads a phone
	// number written without a country code (normalize: phone). Default US.
	PhoneRegion string `yaml:"phone_region"`
}

// Match selects requests by method and path.
type Match struct {
	// Methods the route takes; empty means every method. GET also takes
	// HEAD. A request's method is matched and forwarded upper-cased
	// ("post" is judged and sent as POST); a method other than GET, HEAD,
	// POST, PUT, PATCH, DELETE and OPTIONS is refused (405) on every route.
	Methods []string `yaml:"methods"`
	// Path template: literal segments, {param} segments, and a trailing ** for
	// any rest. Required.
	Path string `yaml:"path"`
}

// OrgFrom names exactly one source for the request's organization.
type OrgFrom struct {
	// Claim: the caller's organization claim (identity.claims.org).
	Claim bool `yaml:"claim"`
	// PathParam: a {param} of the route's path.
	PathParam string `yaml:"path_param"`
	// Header: a request header, honoured only from identity.trusted_gateways.
	Header string `yaml:"header"`
}

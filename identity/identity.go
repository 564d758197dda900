// Package identity verifies bearer JWTs against a JSON Web Key Set (Tink's
// jwt package: RS, PS and ES algorithms, never "none") and reads the
// caller's organization, user and role from configured claims.
//
// A token is accepted only when all of these hold:
//
//   - the signature verifies with a key of the set that the token's header
//     chooses (see below), and the token has an exp claim that has not
//     passed (nbf, when present, has come), both within Config.ClockSkew;
//     iss and aud match Config.Issuer and Config.Audience when those are
//     set;
//   - iat, when present, is not later than now + ClockSkew (a token issued
//     in the future is refused; a token without iat is accepted);
//   - when Config.MaxTokenLifetime is set, exp is no later than now +
//     MaxTokenLifetime + ClockSkew and, when iat is present, exp - iat is at
//     most MaxTokenLifetime;
//   - the org claim (Config.OrgClaim) is a single string that is a valid
//     organization id (see internal/orgid); a list, a number, an empty
//     string or a missing claim is refused, never read as "no organization";
//   - the user claim (Config.UserClaim) is a non-empty string of at most
//     MaxUserLen bytes without control characters.
//
// The role claim (Config.RoleClaim) is optional: when it is missing or not
// a string the caller has no role. The amr claim (RFC 8176) is optional
// too: Caller.AMR holds it when it is an array of strings, and is nil
// otherwise.
//
// Each key of the set has a Tink verifier of its own, and the token's
// protected header chooses which verify it: a kid that names keys of the
// set chooses those keys only; a kid that names none chooses the keys
// without a kid (a token is refused without any signature check when there
// are none); a token without kid is tried with every key. Keys whose
// algorithm is not the header's alg are skipped. Keys that share a kid (RFC
// 7517 allows it for alternatives of different types) are all tried, in
// set order. The header is written by whoever sends the token: it only
// narrows the keys tried, and Tink checks alg and kid again against the key
// whose signature verifies, so no token Tink's verifier of the whole set
// would refuse is accepted. (A token whose kid names a key but that a key
// without kid signed is refused, where Tink's whole-set verifier would
// accept it.) A header that is not base64url JSON with string alg and kid
// makes the token invalid.
//
// A token that passed every check is remembered (Config.CacheSize,
// Config.CacheTTL) under the SHA-256 of the token, with its *Caller: when
// it is presented again, Verify returns that *Caller without checking the
// signature or the claims again, which hold as long as exp has not passed.
// exp is checked on every presentation, as Tink checks it (the token is
// refused from exp + ClockSkew on); once CacheTTL has passed the token is
// verified again. A refused token is never remembered, so forged tokens
// cannot evict good ones; each costs the signature checks of the keys its
// header chooses, one for a set of distinct kids. Verifier.SetKeySet
// replaces the key set and forgets every remembered token.
//
// Every error of Verify is safe to show a client: a refused token yields
// ErrNoToken, ErrMalformed, ErrInvalidToken, or a *ClaimError (which wraps
// ErrClaims) naming the claim and the problem. Error text never holds a
// claim's value, which may be PHI or chosen by an attacker.
package identity

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/phiguard/phiguard/internal/orgid"
	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/subtle"
)

// Config says how to verify tokens and where the caller's attributes are.
// Its field comments are the reference for what Verify accepts.
type Config struct {
	// JWKSFile holds the issuer's public keys (a JSON Web Key Set).
	JWKSFile string
	// Issuer and Audience, when set, must match the token's iss and aud;
	// when empty, those claims are not checked.
	Issuer   string
	Audience string
	// ClockSkew is tolerated on exp, nbf and iat, and added to
	// MaxTokenLifetime when exp is compared with now. At most 10m.
	ClockSkew time.Duration
	// MaxTokenLifetime, when positive, bounds how long a token may live: exp
	// must be at most MaxTokenLifetime + ClockSkew from now, and, when the
	// token has iat, exp - iat must be at most MaxTokenLifetime. 0 means no
	// limit; negative is a configuration error.
	MaxTokenLifetime time.Duration
	// OrgClaim names the claim that carries the caller's organization; it
	// is required, and every token must carry it as one string that is a
	// valid organization id.
	OrgClaim string
	// UserClaim names the claim that carries the caller's user id; it is
	// required, and every token must carry it as a non-empty string of at
	// most MaxUserLen bytes without control characters. The registered
	// claims sub, iss and jti may be named.
	UserClaim string
	// RoleClaim names the claim that carries the caller's role; optional.
	// A token whose role claim is missing or not a string has no role.
	RoleClaim string
	// MFAClaim names a boolean claim that, true, says the login used a
	// second factor (besides the amr claim); optional.
	MFAClaim string
	// PATClaim names a string claim that, holding one of PATValues (in
	// any letter case), marks a personal access token; optional.
	PATClaim  string
	PATValues []string
	// ClientClaim names the string claim that carries an integration's
	// OAuth client id; optional.
	ClientClaim string
	// CacheSize bounds how many verified tokens are remembered, so that a
	// token presented again costs no signature check and no claim check. 0
	// means DefaultCacheSize; negative means no cache. Only tokens that
	// passed every check are remembered, under the SHA-256 of the token
	// (never the token), with the caller they yield; a full cache evicts an
	// entry that expired or was not used lately. An entry takes a few
	// hundred bytes and the caller's claim values.
	CacheSize int
	// CacheTTL bounds how long a token is remembered: it is verified again
	// once CacheTTL has passed since it was. 0 means DefaultCacheTTL;
	// negative is a configuration error. A remembered token is also
	// forgotten, and refused, once its exp has passed (within ClockSkew,
	// as for a token that is verified).
	CacheTTL time.Duration
	// Stats receives the verifier's counts; nil gives it its own.
	Stats *Stats
	// JWKSURL, for NewVerifierFromURL, is where the key set is fetched
	// (https, or http on loopback). JWKSRefresh is how often (default
	// 10m); JWKSMinInterval the least time between two fetches for
	// unknown kids (default 30s). JWKSClient fetches (nil: a client with
	// a 5s timeout). OnJWKSError hears of a fetch that failed; the last
	// good set stays in force.
	JWKSURL         string
	JWKSRefresh     time.Duration
	JWKSMinInterval time.Duration
	JWKSClient      *http.Client
	OnJWKSError     func(error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultCacheSize = 10000
	DefaultCacheTTL  = 5 * time.Minute
)

// MaxUserLen is the longest user claim accepted, in bytes.
const MaxUserLen = 256

// Caller is what a verified token says about its bearer. Verify may return
// the same *Caller for repeated presentations of one token: callers must
// not modify it.
type Caller struct {
	Org, User, Role string
	// AMR lists the authentication methods of the token's "amr" claim
	// (RFC 8176) when it is an array of strings; nil otherwise.
	AMR []string
	// Expires is the token's exp.
	Expires time.Time
	// IssuedAt is the token's iat; zero when it has none.
	IssuedAt time.Time
	// AuthTime is when the user authenticated (OpenID Connect's
	// auth_time), where the token says; zero otherwise. Session limits
	// count from it.
	AuthTime time.Time
	// MFA: the token's MFA claim (Config.MFAClaim) is true.
	MFA bool
	// Session is the reference (SessionRef) of the login the token
	// belongs to: its sid claim, else its jti, else the token.
	Session string
	// PAT: the token says it is a personal access token
	// (Config.PATClaim holds one of Config.PATValues).
	PAT bool
	// Client is the integration the token acts for (Config.ClientClaim);
	// "" for a person's own login.
	Client string
}

// Errors of Verify. Their text is safe to show a client.
var (
	ErrNoToken      = errors.New("a bearer token is required")
	ErrMalformed    = errors.New("the Authorization header is not a single bearer token")
	ErrInvalidToken = errors.New("the bearer token is invalid or expired")
	// ErrClaims is wrapped by every *ClaimError.
	ErrClaims = errors.New("the token does not identify a single organization and user")
)

// ClaimError says which caller claim of a verified token is unusable and
// why. It unwraps to ErrClaims. It never holds the claim's value.
type ClaimError struct {
	// Claim is the claim's name, e.g. "org_id".
	Claim string
	// Problem is one of "is missing", "is empty", "is not a string",
	// "is a list: a token must name exactly one organization",
	// "is not a valid organization id", "is too long",
	// "holds control characters".
	Problem string
}

func (e *ClaimError) Error() string {
	return "the token's " + e.Claim + " claim " + e.Problem
}

// Unwrap returns ErrClaims.
func (e *ClaimError) Unwrap() error { return ErrClaims }

// Problems of a ClaimError.
const (
	problemMissing   = "is missing"
	problemEmpty     = "is empty"
	problemNotString = "is not a string"
	problemList      = "is a list: a token must name exactly one organization"
	problemBadOrg    = "is not a valid organization id"
	problemTooLong   = "is too long"
	problemControl   = "holds control characters"
)

// Verifier verifies bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg Config
	// state is swapped whole by SetKeySet: a verification that loaded
	// the old one caches into the old cache, which no later one reads.
	state atomic.Pointer[verifierState]
	stats *Stats
	src   *jwksSource // nil: the key set came from a file
}

// Stats counts what verifiers did. One Stats may be shared by the
// verifiers that follow one another across policy reloads, so that the
// counts only grow.
type Stats struct {
	// hits are striped by digest so that hits on different tokens do not
	// write one cache line.
	hits    [maxShards]counter
	valid   atomic.Uint64 // tokens verified and accepted
	invalid atomic.Uint64 // bearer tokens refused, from the cache or not
}

// Load returns the cache hits, the tokens verified and accepted, and the
// bearer tokens refused (a missing or malformed header is not a token).
func (s *Stats) Load() (hits, valid, invalid uint64) {
	for i := range s.hits {
		hits += s.hits[i].n.Load()
	}
	return hits, s.valid.Load(), s.invalid.Load()
}

// verifierState is a key set and the cache of the tokens it verified.
type verifierState struct {
	keys  *keySet
	cache *cache // nil: no cache
}

type counter struct {
	n atomic.Uint64
	_ [56]byte // one counter per cache line
}

// NewVerifier reads the key set in cfg.JWKSFile.
func NewVerifier(cfg Config) (*Verifier, error) {
	raw, err := os.ReadFile(cfg.JWKSFile)
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	return NewVerifierFromJWKS(cfg, raw)
}

// NewVerifierFromJWKS uses the key set jwks (JSON).
func NewVerifierFromJWKS(cfg Config, jwks []byte) (*Verifier, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	keys, err := newKeySet(jwks)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", cfg.JWKSFile, err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	// Fail now, not on the first request, if the options are unusable.
	if _, err := validator(cfg, cfg.Now()); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, stats: cfg.Stats}
	if v.stats == nil {
		v.stats = new(Stats)
	}
	v.setKeys(keys)
	return v, nil
}

// SetKeySet replaces the key set with jwks (JSON) and forgets every
// remembered token, so that the tokens of a key no longer in the set are
// refused at once: every Verify that starts after SetKeySet returns uses
// the new set and an empty cache. It is safe to call during Verify. An
// invalid set is refused with the error and the old one stays.
func (v *Verifier) SetKeySet(jwks []byte) error {
	keys, err := newKeySet(jwks)
	if err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}
	v.setKeys(keys)
	return nil
}

func (v *Verifier) setKeys(keys *keySet) {
	v.state.Store(&verifierState{keys: keys, cache: newCache(v.cfg.CacheSize, v.cfg.CacheTTL, v.cfg.ClockSkew)})
}

// CacheStats returns how many accepted tokens were answered from the cache
// (hits) and how many were verified (misses), since the Verifier was made.
// Refused tokens count in neither.
func (v *Verifier) CacheStats() (hits, misses uint64) {
	hits, misses, _ = v.stats.Load()
	return hits, misses
}

// checkConfig refuses claim names and limits Verify could not apply.
func checkConfig(cfg Config) error {
	if cfg.OrgClaim == "" {
		return errors.New("identity: the org claim name is empty")
	}
	if cfg.UserClaim == "" {
		return errors.New("identity: the user claim name is empty")
	}
	for _, name := range []string{cfg.OrgClaim, cfg.UserClaim, cfg.RoleClaim} {
		switch name {
		case "aud", "exp", "nbf", "iat":
			return fmt.Errorf("identity: claim %q cannot carry the caller's org, user or role", name)
		}
	}
	if cfg.MaxTokenLifetime < 0 {
		return fmt.Errorf("identity: max token lifetime %s is negative", cfg.MaxTokenLifetime)
	}
	if cfg.CacheTTL < 0 {
		return fmt.Errorf("identity: cache TTL %s is negative", cfg.CacheTTL)
	}
	return nil
}

func validator(cfg Config, now time.Time) (*jwt.Validator, error) {
	opts := &jwt.ValidatorOpts{ClockSkew: cfg.ClockSkew, FixedNow: now, IgnoreTypeHeader: true}
	if cfg.Issuer != "" {
		opts.ExpectedIssuer = &cfg.Issuer
	} else {
		opts.IgnoreIssuer = true
	}
	if cfg.Audience != "" {
		opts.ExpectedAudience = &cfg.Audience
	} else {
		opts.IgnoreAudiences = true
	}
	return jwt.NewValidator(opts)
}

// Verify checks the Authorization header values of a request and returns
// the caller. ctx is for the key fetches of a JWKS URL; a key set read from
// a file or given as bytes does no I/O.
func (v *Verifier) Verify(ctx context.Context, authorization []string) (*Caller, error) {
	token, err := bearerToken(authorization)
	if err != nil {
		return nil, err
	}
	st := v.state.Load()
	now := v.cfg.Now()
	d, cacheable := st.cache.digestOf(token)
	if cacheable {
		c, isExpired := st.cache.get(d, now)
		if isExpired {
			v.stats.invalid.Add(1)
			return nil, ErrInvalidToken
		}
		if c != nil {
			v.stats.hits[int(d[0])%len(v.stats.hits)].n.Add(1)
			return c, nil
		}
	}
	c, err := v.verify(st.keys, token, now)
	if err != nil && v.src != nil && st.keys.unknownKID(token) {
		// A kid the set does not have: the issuer may have rotated. Fetch
		// (rate-limited) and try once more with what is then in force.
		v.fetch(ctx, false)
		if next := v.state.Load(); next != st {
			st = next
			c, err = v.verify(st.keys, token, now)
		}
	}
	if err != nil {
		v.stats.invalid.Add(1)
		return nil, err
	}
	v.stats.valid.Add(1)
	if cacheable {
		st.cache.put(d, c, now)
	}
	return c, nil
}

// bearerToken returns the token of the one Authorization header value.
func bearerToken(authorization []string) (string, error) {
	if len(authorization) == 0 {
		return "", ErrNoToken
	}
	if len(authorization) > 1 {
		return "", ErrMalformed
	}
	scheme, token, ok := strings.Cut(authorization[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" ||
		strings.IndexByte(token, ' ') >= 0 || strings.IndexByte(token, '\t') >= 0 {
		return "", ErrMalformed
	}
	return token, nil
}

// verify checks the signature of token with keys and every claim.
func (v *Verifier) verify(keys *keySet, token string, now time.Time) (*Caller, error) {
	val, err := validator(v.cfg, now)
	if err != nil {
		return nil, err
	}
	vj, err := keys.verify(token, val)
	if err != nil {
		return nil, ErrInvalidToken
	}
	if err := v.checkLifetime(vj, now); err != nil {
		return nil, err
	}
	c, err := v.caller(vj)
	if err == nil && c.Session == "" {
		c.Session = SessionRef("token:" + tokenDigest(token))
	}
	return c, err
}

// checkLifetime refuses a token issued in the future or, with
// MaxTokenLifetime set, one that lives longer than allowed. Tink has
// already checked exp and nbf. (Tink's ExpectIssuedInThePast is not used:
// it refuses tokens without iat.)
func (v *Verifier) checkLifetime(vj *jwt.VerifiedJWT, now time.Time) error {
	skew, limit := v.cfg.ClockSkew, v.cfg.MaxTokenLifetime
	var iat time.Time
	hasIAT := vj.HasIssuedAt()
	if hasIAT {
		var err error
		if iat, err = vj.IssuedAt(); err != nil {
			return ErrInvalidToken
		}
		if iat.After(now.Add(skew)) {
			return ErrInvalidToken
		}
	}
	if limit == 0 {
		return nil
	}
	exp, err := vj.ExpiresAt()
	if err != nil {
		return ErrInvalidToken
	}
	// exp.Sub saturates instead of overflowing; subtracting the skew
	// rather than adding it to limit keeps a huge limit from wrapping.
	if exp.Sub(now)-skew > limit {
		return ErrInvalidToken
	}
	if hasIAT && exp.Sub(iat) > limit {
		return ErrInvalidToken
	}
	return nil
}

// caller reads the org, then the user, then the role claim.
func (v *Verifier) caller(vj *jwt.VerifiedJWT) (*Caller, error) {
	org, err := orgClaim(vj, v.cfg.OrgClaim)
	if err != nil {
		return nil, err
	}
	user, err := userClaim(vj, v.cfg.UserClaim)
	if err != nil {
		return nil, err
	}
	role, _ := optionalClaim(vj, v.cfg.RoleClaim)
	// Tink has refused a token without exp.
	exp, err := vj.ExpiresAt()
	if err != nil {
		return nil, ErrInvalidToken
	}
	c := &Caller{Org: org, User: user, Role: role, AMR: amrClaim(vj), Expires: exp}
	if vj.HasIssuedAt() {
		c.IssuedAt, _ = vj.IssuedAt() // checkLifetime has read it
	}
	if at, err := vj.NumberClaim("auth_time"); err == nil && at > 0 && at < 1<<40 {
		c.AuthTime = time.Unix(int64(at), 0)
	}
	if v.cfg.MFAClaim != "" {
		c.MFA, _ = vj.BooleanClaim(v.cfg.MFAClaim)
	}
	if v.cfg.ClientClaim != "" {
		c.Client, _ = vj.StringClaim(v.cfg.ClientClaim)
	}
	if v.cfg.PATClaim != "" {
		if typ, err := vj.StringClaim(v.cfg.PATClaim); err == nil {
			typ = strings.TrimSpace(typ)
			c.PAT = slices.ContainsFunc(v.cfg.PATValues, func(p string) bool { return strings.EqualFold(p, typ) })
		}
	}
	if sid, err := vj.StringClaim("sid"); err == nil && sid != "" {
		c.Session = SessionRef("sid:" + sid)
	} else if jti, err := vj.JWTID(); err == nil && jti != "" {
		c.Session = SessionRef("jti:" + jti)
	}
	return c, nil
}

// amrClaim reads the amr claim: an array of strings, or nil when the claim
// is missing, empty or anything else.
func amrClaim(vj *jwt.VerifiedJWT) []string {
	list, err := vj.ArrayClaim("amr")
	if err != nil {
		return nil
	}
	var amr []string
	for _, m := range list {
		s, ok := m.(string)
		if !ok {
			return nil
		}
		amr = append(amr, s)
	}
	return amr
}

// orgClaim reads the org claim: one string that is a valid org id.
func orgClaim(vj *jwt.VerifiedJWT, name string) (string, error) {
	s, problem := stringClaim(vj, name)
	switch {
	case problem == problemNotString && vj.HasArrayClaim(name):
		problem = problemList
	case problem == "" && orgid.Check(s) != nil:
		problem = problemBadOrg
	}
	if problem != "" {
		return "", &ClaimError{Claim: name, Problem: problem}
	}
	return s, nil
}

// userClaim reads the user claim: a short string without control characters.
func userClaim(vj *jwt.VerifiedJWT, name string) (string, error) {
	s, problem := stringClaim(vj, name)
	switch {
	case problem != "":
	case len(s) > MaxUserLen:
		problem = problemTooLong
	case strings.ContainsFunc(s, unicode.IsControl):
		problem = problemControl
	}
	if problem != "" {
		return "", &ClaimError{Claim: name, Problem: problem}
	}
	return s, nil
}

// stringClaim reads a non-empty string claim, registered (sub, iss, jti)
// or custom, or says what is wrong with it.
func stringClaim(vj *jwt.VerifiedJWT, name string) (string, string) {
	var present bool
	switch name {
	case "sub":
		present = vj.HasSubject()
	case "iss":
		present = vj.HasIssuer()
	case "jti":
		present = vj.HasJWTID()
	default:
		present = slices.Contains(vj.CustomClaimNames(), name)
	}
	if !present {
		return "", problemMissing
	}
	s, err := optionalClaim(vj, name)
	if err != nil {
		return "", problemNotString
	}
	if s == "" {
		return "", problemEmpty
	}
	return s, ""
}

// optionalClaim reads a string claim, registered (sub, iss, jti) or
// custom; it returns "" and an error when the claim is missing or not a
// string, and "" and no error when name is empty.
func optionalClaim(vj *jwt.VerifiedJWT, name string) (string, error) {
	switch name {
	case "":
		return "", nil
	case "sub":
		return vj.Subject()
	case "iss":
		return vj.Issuer()
	case "jti":
		return vj.JWTID()
	}
	return vj.StringClaim(name)
}

// tokenDigest names a token without its text: the hex of the first 16
// bytes of its SHA-256.
func tokenDigest(token string) string {
	sum, err := subtle.ComputeHash(subtle.GetHashFunc("SHA256"), []byte(token))
	if err != nil {
		return ""
	}
	return hex.EncodeToString(sum[:16])
}

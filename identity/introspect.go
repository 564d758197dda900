package identity

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/phiguard/phiguard/internal/orgid"
	"github.com/phiguard/phiguard/refusal"
)

// IntrospectConfig configures OAuth 2.0 token introspection (RFC 7662)
// of opaque session tokens.
type IntrospectConfig struct {
	// URL of the introspection endpoint (https, or http on loopback).
	URL string
	// ClientID and ClientSecret authenticate phiguard to it (HTTP Basic).
	ClientID, ClientSecret string
	// CacheTTL bounds how long an answer is reused for one token (never
	// past its exp). Default 1m.
	CacheTTL time.Duration
	// Claim names in the answer, as for JWTs: OrgClaim and UserClaim are
	// required; RoleClaim, MFAClaim and ClientClaim are optional.
	OrgClaim, UserClaim, RoleClaim, MFAClaim, ClientClaim string
	// Subrequest asks the app's own "who am I" endpoint instead (as nginx
	// auth_request does): a GET carrying the caller's token as a bearer
	// token (and, with Cookie, as that cookie); 200 with the caller's JSON
	// is a live session, 401 or 403 is none.
	Subrequest bool
	Cookie     string
	// Client asks (nil: a client with a 5s timeout).
	Client *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultIntrospectTTL is how long an introspection answer is reused.
const DefaultIntrospectTTL = time.Minute

// maxIntrospectEntries bounds the answers remembered.
const maxIntrospectEntries = 10000

// ErrIdentityUnavailable: the introspection endpoint did not answer; the
// request is refused (503), never let through.
var ErrIdentityUnavailable = &refusal.Error{Kind: refusal.IdentityUnavailable, Reason: "the identity provider did not answer; retry shortly"}

// Introspector identifies callers by asking the authorization server
// about their opaque tokens, and remembers each answer for a while.
type Introspector struct {
	cfg IntrospectConfig
	mu  sync.Mutex
	// answers are by token digest: the caller, or nil for a token the
	// server called inactive, until a time.
	answers map[string]introspected
	asked   int // requests made to the endpoint, for tests
}

type introspected struct {
	caller *Caller
	until  time.Time
}

// NewIntrospector checks cfg.
func NewIntrospector(cfg IntrospectConfig) (*Introspector, error) {
	if cfg.URL == "" || cfg.OrgClaim == "" || cfg.UserClaim == "" {
		return nil, errors.New("introspection needs a URL and the org and user claims")
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultIntrospectTTL
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Introspector{cfg: cfg, answers: map[string]introspected{}}, nil
}

// Verify identifies the caller of the bearer token in authorization.
func (in *Introspector) Verify(ctx context.Context, authorization []string) (*Caller, error) {
	token, err := bearerToken(authorization)
	if err != nil {
		return nil, err
	}
	return in.verifyToken(ctx, token)
}

func (in *Introspector) verifyToken(ctx context.Context, token string) (*Caller, error) {
	now := in.cfg.Now()
	d := tokenDigest(token)
	in.mu.Lock()
	if a, ok := in.answers[d]; ok && now.Before(a.until) {
		in.mu.Unlock()
		if a.caller == nil || !now.Before(a.caller.Expires) {
			return nil, ErrInvalidToken
		}
		return a.caller, nil
	}
	in.asked++
	in.mu.Unlock()
	c, err := in.ask(ctx, token, now)
	if errors.Is(err, ErrIdentityUnavailable) {
		return nil, err
	}
	if c != nil && c.Session == "" {
		c.Session = SessionRef("token:" + d)
	}
	until := now.Add(in.cfg.CacheTTL)
	if c != nil && c.Expires.Before(until) {
		until = c.Expires
	}
	in.mu.Lock()
	if len(in.answers) >= maxIntrospectEntries {
		for k, a := range in.answers { // drop what expired, else anything
			if !now.Before(a.until) || len(in.answers) >= maxIntrospectEntries {
				delete(in.answers, k)
			}
			if len(in.answers) < maxIntrospectEntries/2 {
				break
			}
		}
	}
	if errors.Is(err, ErrInvalidToken) || c != nil {
		in.answers[d] = introspected{caller: c, until: until}
	}
	in.mu.Unlock()
	return c, err
}

// ask posts token to the endpoint and maps its answer.
func (in *Introspector) ask(ctx context.Context, token string, now time.Time) (*Caller, error) {
	if in.cfg.Subrequest {
		return in.askApp(ctx, token, now)
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, ErrIdentityUnavailable
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if in.cfg.ClientID != "" {
		req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	}
	resp, err := in.cfg.Client.Do(req)
	if err != nil {
		return nil, ErrIdentityUnavailable
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, ErrIdentityUnavailable
	}
	var answer map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil {
		return nil, ErrIdentityUnavailable
	}
	return in.caller(answer, now)
}

// askApp asks the app's "who am I" endpoint with the caller's token.
func (in *Introspector) askApp(ctx context.Context, token string, now time.Time) (*Caller, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.cfg.URL, nil)
	if err != nil {
		return nil, ErrIdentityUnavailable
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if in.cfg.Cookie != "" {
		req.AddCookie(&http.Cookie{Name: in.cfg.Cookie, Value: token})
	}
	resp, err := in.cfg.Client.Do(req)
	if err != nil {
		return nil, ErrIdentityUnavailable
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, ErrInvalidToken
	default:
		return nil, ErrIdentityUnavailable
	}
	var answer map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil {
		return nil, ErrIdentityUnavailable
	}
	answer["active"] = true // the app said who the caller is
	return in.caller(answer, now)
}

// caller maps an introspection answer: active, not expired, one valid
// org and a user, as for JWTs.
func (in *Introspector) caller(a map[string]any, now time.Time) (*Caller, error) {
	if active, _ := a["active"].(bool); !active {
		return nil, ErrInvalidToken
	}
	str := func(name string) (string, bool) {
		if name == "" {
			return "", false
		}
		s, ok := a[name].(string)
		return s, ok
	}
	c := &Caller{}
	if exp, ok := a["exp"].(float64); ok {
		c.Expires = time.Unix(int64(exp), 0)
		if !now.Before(c.Expires) {
			return nil, ErrInvalidToken
		}
	} else {
		c.Expires = now.Add(in.cfg.CacheTTL) // no exp: good for the cache's while
	}
	if iat, ok := a["iat"].(float64); ok {
		c.IssuedAt = time.Unix(int64(iat), 0)
	}
	if at, ok := a["auth_time"].(float64); ok && at > 0 && at < 1<<40 {
		c.AuthTime = time.Unix(int64(at), 0)
	}
	org, ok := str(in.cfg.OrgClaim)
	if !ok || orgid.Check(org) != nil {
		return nil, &ClaimError{Claim: in.cfg.OrgClaim, Problem: "is not a valid organization id"}
	}
	user, ok := str(in.cfg.UserClaim)
	if !ok || user == "" || len(user) > MaxUserLen || strings.ContainsFunc(user, unicode.IsControl) {
		return nil, &ClaimError{Claim: in.cfg.UserClaim, Problem: "is missing or empty"}
	}
	c.Org, c.User = org, user
	c.Role, _ = str(in.cfg.RoleClaim)
	c.Client, _ = str(in.cfg.ClientClaim)
	if in.cfg.MFAClaim != "" {
		c.MFA, _ = a[in.cfg.MFAClaim].(bool)
	}
	if list, ok := a["amr"].([]any); ok {
		for _, m := range list {
			if s, ok := m.(string); ok {
				c.AMR = append(c.AMR, s)
			}
		}
	}
	if sid, ok := str("sid"); ok && sid != "" {
		c.Session = SessionRef("sid:" + sid)
	} else if jti, ok := str("jti"); ok && jti != "" {
		c.Session = SessionRef("jti:" + jti)
	}
	return c, nil
}

// Asked says how many times the endpoint was asked.
func (in *Introspector) Asked() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.asked
}

// Chain verifies a JWT with JWT and any other bearer token (an opaque
// session token) with Opaque; either may be nil.
type Chain struct {
	JWT    *Verifier
	Opaque *Introspector
}

// Verify picks by the token's shape: three dot-separated parts is a JWT.
func (ch Chain) Verify(ctx context.Context, authorization []string) (*Caller, error) {
	token, err := bearerToken(authorization)
	if err != nil {
		return nil, err
	}
	isJWT := strings.Count(token, ".") == 2
	switch {
	case isJWT && ch.JWT != nil:
		return ch.JWT.Verify(ctx, authorization)
	case ch.Opaque != nil:
		return ch.Opaque.verifyToken(ctx, token)
	}
	return nil, ErrInvalidToken
}

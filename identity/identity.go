// Package identity verifies bearer JWTs against a JSON Web Key Set (Tink's
// jwt package: RS, PS and ES algorithms, never "none") and reads the
// caller's organization, user and role from configured claims.
package identity

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
)

// Config says how to verify tokens and where the caller's attributes are.
type Config struct {
	// JWKSFile holds the issuer's public keys.
	JWKSFile string
	// Issuer and Audience, when set, must match the token.
	Issuer   string
	Audience string
	// ClockSkew tolerated on exp and nbf.
	ClockSkew time.Duration
	// Claim names for org, user and role.
	OrgClaim, UserClaim, RoleClaim string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Caller is what a verified token says about its bearer.
type Caller struct {
	Org, User, Role string
}

// Errors of Verify. Their text is safe to show a client.
var (
	ErrNoToken      = errors.New("a bearer token is required")
	ErrMalformed    = errors.New("the Authorization header is not a single bearer token")
	ErrInvalidToken = errors.New("the bearer token is invalid or expired")
)

// Verifier verifies bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg      Config
	verifier jwt.Verifier
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
	h, err := jwt.JWKSetToPublicKeysetHandle(jwks)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", cfg.JWKSFile, err)
	}
	v, err := jwt.NewVerifier(h)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", cfg.JWKSFile, err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Fail now, not on the first request, if the options are unusable.
	if _, err := validator(cfg); err != nil {
		return nil, err
	}
	return &Verifier{cfg: cfg, verifier: v}, nil
}

func validator(cfg Config) (*jwt.Validator, error) {
	opts := &jwt.ValidatorOpts{ClockSkew: cfg.ClockSkew, FixedNow: cfg.Now(), IgnoreTypeHeader: true}
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

// Verify checks the Authorization header values of a request and returns the caller.
func (v *Verifier) Verify(authorization []string) (*Caller, error) {
	if len(authorization) == 0 {
		return nil, ErrNoToken
	}
	if len(authorization) > 1 {
		return nil, ErrMalformed
	}
	scheme, token, ok := strings.Cut(authorization[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return nil, ErrMalformed
	}
	val, err := validator(v.cfg)
	if err != nil {
		return nil, err
	}
	vj, err := v.verifier.VerifyAndDecode(token, val)
	if err != nil {
		return nil, ErrInvalidToken
	}
	c := &Caller{}
	c.Org, _ = claim(vj, v.cfg.OrgClaim)
	c.User, _ = claim(vj, v.cfg.UserClaim)
	c.Role, _ = claim(vj, v.cfg.RoleClaim)
	return c, nil
}

// claim reads a string claim, registered (sub, iss, jti) or custom.
func claim(vj *jwt.VerifiedJWT, name string) (string, error) {
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
	if !vj.HasStringClaim(name) {
		return "", nil
	}
	return vj.StringClaim(name)
}

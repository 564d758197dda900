package identity

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type issuer struct {
	signer jwt.Signer
	jwks   []byte
}

func newIssuer(t *testing.T, tmpl func() *keyset.Handle) issuer {
	t.Helper()
	h := tmpl()
	s, err := jwt.NewSigner(h)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := h.Public()
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := jwt.JWKSetFromPublicKeysetHandle(pub)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{s, jwks}
}

func es256(t *testing.T) func() *keyset.Handle {
	return func() *keyset.Handle {
		h, err := keyset.NewHandle(jwt.ES256Template())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
}

func rs256(t *testing.T) func() *keyset.Handle {
	return func() *keyset.Handle {
		h, err := keyset.NewHandle(jwt.RS256_2048_F4_Key_Template())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
}

func (is issuer) sign(t *testing.T, opts *jwt.RawJWTOptions) string {
	t.Helper()
	raw, err := jwt.NewRawJWT(opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := is.signer.SignAndEncode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claims(exp time.Time, custom map[string]any) *jwt.RawJWTOptions {
	iss, aud, sub := "https://auth.example", "app", "user-1"
	return &jwt.RawJWTOptions{Issuer: &iss, Audience: &aud, Subject: &sub, ExpiresAt: &exp, CustomClaims: custom}
}

func cfg() Config {
	return Config{Issuer: "https://auth.example", Audience: "app", ClockSkew: 30 * time.Second,
		OrgClaim: "org_id", UserClaim: "sub", RoleClaim: "role", Now: func() time.Time { return now }}
}

func TestVerify(t *testing.T) {
	for name, tmpl := range map[string]func() *keyset.Handle{"ES256": es256(t), "RS256": rs256(t)} {
		t.Run(name, func(t *testing.T) {
			is := newIssuer(t, tmpl)
			v, err := NewVerifierFromJWKS(cfg(), is.jwks)
			if err != nil {
				t.Fatal(err)
			}
			tok := is.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a", "role": "agent"}))
			c, err := v.Verify([]string{"Bearer " + tok})
			if err != nil {
				t.Fatal(err)
			}
			if *c != (Caller{Org: "org_a", User: "user-1", Role: "agent"}) {
				t.Errorf("caller = %+v", c)
			}
			if _, err := v.Verify([]string{"bearer " + tok}); err != nil {
				t.Errorf("lower-case scheme refused: %v", err)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	is := newIssuer(t, es256(t))
	other := newIssuer(t, es256(t))
	v, err := NewVerifierFromJWKS(cfg(), is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	good := is.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"}))
	iss2, aud2 := "https://evil.example", "other"
	exp := now.Add(time.Hour)
	for _, tc := range []struct {
		name   string
		header []string
		want   error
	}{
		{"none", nil, ErrNoToken},
		{"two headers", []string{"Bearer " + good, "Bearer " + good}, ErrMalformed},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, ErrMalformed},
		{"no token", []string{"Bearer "}, ErrMalformed},
		{"garbage", []string{"Bearer abc.def.ghi"}, ErrInvalidToken},
		{"expired", []string{"Bearer " + is.sign(t, claims(now.Add(-time.Minute), nil))}, ErrInvalidToken},
		{"other signer", []string{"Bearer " + other.sign(t, claims(exp, nil))}, ErrInvalidToken},
		{"wrong issuer", []string{"Bearer " + is.sign(t, &jwt.RawJWTOptions{Issuer: &iss2, Audience: &aud2, ExpiresAt: &exp})}, ErrInvalidToken},
		{"no expiry", []string{"Bearer " + is.sign(t, &jwt.RawJWTOptions{WithoutExpiration: true})}, ErrInvalidToken},
		{"tampered payload", []string{"Bearer " + tamper(good)}, ErrInvalidToken},
		{"alg none", []string{"Bearer " + unsigned(good)}, ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := v.Verify(tc.header); !errors.Is(err, tc.want) {
				t.Errorf("got %+v, %v; want %v", c, err, tc.want)
			}
		})
	}
}

func TestClockSkew(t *testing.T) {
	is := newIssuer(t, es256(t))
	v, _ := NewVerifierFromJWKS(cfg(), is.jwks)
	tok := is.sign(t, claims(now.Add(-10*time.Second), nil))
	if _, err := v.Verify([]string{"Bearer " + tok}); err != nil {
		t.Errorf("token 10s past expiry refused within 30s skew: %v", err)
	}
}

func TestBadJWKS(t *testing.T) {
	if _, err := NewVerifierFromJWKS(cfg(), []byte(`{"keys":[]}`)); err == nil {
		t.Error("empty key set accepted")
	}
	if _, err := NewVerifier(Config{JWKSFile: "/nonexistent/jwks.json"}); err == nil {
		t.Error("missing JWKS file accepted")
	}
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[1])
	b[len(b)/2] ^= 1
	parts[1] = string(b)
	return strings.Join(parts, ".")
}

// unsigned rewrites the header to alg none and drops the signature.
func unsigned(tok string) string {
	parts := strings.Split(tok, ".")
	return "eyJhbGciOiJub25lIn0." + parts[1] + "."
}

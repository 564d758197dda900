package identity

import (
	"errors"
	"reflect"
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
			c, err := v.Verify(t.Context(), []string{"Bearer " + tok})
			if err != nil {
				t.Fatal(err)
			}
			if c.Org != "org_a" || c.User != "user-1" || c.Role != "agent" || c.AMR != nil {
				t.Errorf("got %+v, want org org_a, user user-1, role agent, no amr", *c)
			}
			if want := now.Add(time.Hour); !c.Expires.Equal(want) {
				t.Errorf("got expires %v, want %v", c.Expires, want)
			}
			if _, err := v.Verify(t.Context(), []string{"bearer " + tok}); err != nil {
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
			if c, err := v.Verify(t.Context(), tc.header); !errors.Is(err, tc.want) {
				t.Errorf("got %+v, %v; want %v", c, err, tc.want)
			}
		})
	}
}

func TestClockSkew(t *testing.T) {
	is := newIssuer(t, es256(t))
	v, _ := NewVerifierFromJWKS(cfg(), is.jwks)
	tok := is.sign(t, claims(now.Add(-10*time.Second), map[string]any{"org_id": "org_a"}))
	if _, err := v.Verify(t.Context(), []string{"Bearer " + tok}); err != nil {
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

// canary stands for a claim value that may be PHI: it must never appear in
// an error.
const canary = "CANARY-PHI-claim"

// wantClaimError checks that err is a *ClaimError for claim with problem,
// wrapping ErrClaims, whose text holds none of the values.
func wantClaimError(t *testing.T, err error, claim, problem string, values ...string) {
	t.Helper()
	if !errors.Is(err, ErrClaims) {
		t.Fatalf("got %v, want an error wrapping ErrClaims", err)
	}
	var ce *ClaimError
	if !errors.As(err, &ce) {
		t.Fatalf("got %T, want *ClaimError", err)
	}
	if ce.Claim != claim || ce.Problem != problem {
		t.Errorf("got claim %q problem %q, want %q %q", ce.Claim, ce.Problem, claim, problem)
	}
	if want := "the token's " + claim + " claim " + problem; err.Error() != want {
		t.Errorf("got %q, want %q", err.Error(), want)
	}
	for _, v := range append(values, canary) {
		if v != "" && strings.Contains(err.Error(), v) {
			t.Errorf("error %q holds the claim value %q", err, v)
		}
	}
}

func TestOrgClaim(t *testing.T) {
	is := newIssuer(t, es256(t))
	v, err := NewVerifierFromJWKS(cfg(), is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	const list = "is a list: a token must name exactly one organization"
	for _, tc := range []struct {
		name    string
		custom  map[string]any
		problem string // "" means accepted
	}{
		{"valid", map[string]any{"org_id": "org_a"}, ""},
		{"valid with dots and dashes", map[string]any{"org_id": "A1-b.c_d"}, ""},
		{"missing", map[string]any{"role": "agent"}, "is missing"},
		{"missing, other claims present", map[string]any{"org": "org_a", "orgs": []any{"org_a"}}, "is missing"},
		{"empty", map[string]any{"org_id": ""}, "is empty"},
		{"number", map[string]any{"org_id": 42}, "is not a string"},
		{"bool", map[string]any{"org_id": true}, "is not a string"},
		{"null", map[string]any{"org_id": nil}, "is not a string"},
		{"object", map[string]any{"org_id": map[string]any{"id": canary}}, "is not a string"},
		{"list of one", map[string]any{"org_id": []any{canary}}, list},
		{"list of two", map[string]any{"org_id": []any{"org_a", "org_b"}}, list},
		{"empty list", map[string]any{"org_id": []any{}}, list},
		{"space", map[string]any{"org_id": "org a"}, "is not a valid organization id"},
		{"path", map[string]any{"org_id": "../x"}, "is not a valid organization id"},
		{"canary path", map[string]any{"org_id": "../" + canary}, "is not a valid organization id"},
		{"colon", map[string]any{"org_id": "org:" + canary}, "is not a valid organization id"},
		{"too long for an org id", map[string]any{"org_id": strings.Repeat("a", 65)}, "is not a valid organization id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), []string{"Bearer " + is.sign(t, claims(now.Add(time.Hour), tc.custom))})
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				if c.Org != tc.custom["org_id"] || c.User != "user-1" {
					t.Errorf("got %+v, want org %v user user-1", c, tc.custom["org_id"])
				}
				return
			}
			if c != nil {
				t.Errorf("got caller %+v, want none", c)
			}
			s, _ := tc.custom["org_id"].(string)
			wantClaimError(t, err, "org_id", tc.problem, s)
		})
	}
}

func TestUserClaim(t *testing.T) {
	is := newIssuer(t, es256(t))
	exp := now.Add(time.Hour)
	// sub is a registered claim (read through Subject), uid a custom one.
	withSub := func(sub *string) *jwt.RawJWTOptions {
		o := claims(exp, map[string]any{"org_id": "org_a"})
		o.Subject = sub
		return o
	}
	withUID := func(uid any) *jwt.RawJWTOptions {
		return claims(exp, map[string]any{"org_id": "org_a", "uid": uid})
	}
	withoutSub := func(o *jwt.RawJWTOptions) *jwt.RawJWTOptions {
		o.Subject = nil
		return o
	}
	str := func(s string) *string { return &s }
	long := canary + strings.Repeat("x", MaxUserLen)
	longest := strings.Repeat("u", MaxUserLen)
	for _, tc := range []struct {
		name    string
		claim   string
		token   *jwt.RawJWTOptions
		value   string // the user claim's value, when a string
		problem string // "" means accepted
	}{
		{"sub valid", "sub", withSub(str("user-1")), "user-1", ""},
		{"sub of MaxUserLen bytes", "sub", withSub(str(longest)), longest, ""},
		{"sub with spaces and unicode", "sub", withSub(str("Dr. Ana Núñez")), "Dr. Ana Núñez", ""},
		{"sub missing", "sub", withSub(nil), "", "is missing"},
		{"sub missing, uid present", "sub", withoutSub(withUID("u")), "", "is missing"},
		{"sub empty", "sub", withSub(str("")), "", "is empty"},
		{"sub too long", "sub", withSub(str(long)), long, "is too long"},
		{"sub newline", "sub", withSub(str(canary + "\n")), canary + "\n", "holds control characters"},
		{"sub NUL", "sub", withSub(str("user\x00" + canary)), "user\x00" + canary, "holds control characters"},
		{"sub DEL", "sub", withSub(str(canary + "\x7f")), canary + "\x7f", "holds control characters"},
		{"sub C1 control", "sub", withSub(str(canary + "\u0085")), canary + "\u0085", "holds control characters"},
		{"uid valid", "uid", withUID("user-7"), "user-7", ""},
		{"uid missing, sub present", "uid", withSub(str("user-1")), "", "is missing"},
		{"uid empty", "uid", withUID(""), "", "is empty"},
		{"uid number", "uid", withUID(7), "", "is not a string"},
		{"uid bool", "uid", withUID(false), "", "is not a string"},
		{"uid list", "uid", withUID([]any{canary}), "", "is not a string"},
		{"uid object", "uid", withUID(map[string]any{"id": canary}), "", "is not a string"},
		{"uid too long", "uid", withUID(long), long, "is too long"},
		{"uid tab", "uid", withUID(canary + "\t"), canary + "\t", "holds control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg()
			c.UserClaim = tc.claim
			v, err := NewVerifierFromJWKS(c, is.jwks)
			if err != nil {
				t.Fatal(err)
			}
			caller, err := v.Verify(t.Context(), []string{"Bearer " + is.sign(t, tc.token)})
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				if caller.User != tc.value || caller.Org != "org_a" {
					t.Errorf("got %+v, want org org_a user %q", caller, tc.value)
				}
				return
			}
			if caller != nil {
				t.Errorf("got caller %+v, want none", caller)
			}
			wantClaimError(t, err, tc.claim, tc.problem, tc.value)
		})
	}
}

// TestClaimOrder: the org claim is checked before the user claim.
func TestClaimOrder(t *testing.T) {
	is := newIssuer(t, es256(t))
	v, err := NewVerifierFromJWKS(cfg(), is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	o := claims(now.Add(time.Hour), map[string]any{"org_id": 1})
	o.Subject = nil
	_, err = v.Verify(t.Context(), []string{"Bearer " + is.sign(t, o)})
	wantClaimError(t, err, "org_id", "is not a string")
}

func TestRoleClaimOptional(t *testing.T) {
	is := newIssuer(t, es256(t))
	v, err := NewVerifierFromJWKS(cfg(), is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		role any // nil: no role claim
		want string
	}{
		{"string", "agent", "agent"},
		{"missing", nil, ""},
		{"number", 3, ""},
		{"list", []any{"agent", "admin"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			custom := map[string]any{"org_id": "org_a"}
			if tc.role != nil {
				custom["role"] = tc.role
			}
			c, err := v.Verify(t.Context(), []string{"Bearer " + is.sign(t, claims(now.Add(time.Hour), custom))})
			if err != nil {
				t.Fatalf("got %v, want accepted", err)
			}
			if c.Role != tc.want {
				t.Errorf("got role %q, want %q", c.Role, tc.want)
			}
		})
	}
}

func TestAMR(t *testing.T) {
	is := newIssuer(t, es256(t))
	v, err := NewVerifierFromJWKS(cfg(), is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		amr  any // nil: no amr claim
		want []string
	}{
		{"array", []any{"pwd", "otp"}, []string{"pwd", "otp"}},
		{"array of one", []any{"hwk"}, []string{"hwk"}},
		{"missing", nil, nil},
		{"empty array", []any{}, nil},
		{"string", "pwd", nil},
		{"number", 1, nil},
		{"object", map[string]any{"pwd": true}, nil},
		{"array with a number", []any{"pwd", 2}, nil},
		{"array with an array", []any{"pwd", []any{"otp"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			custom := map[string]any{"org_id": "org_a"}
			if tc.amr != nil {
				custom["amr"] = tc.amr
			}
			c, err := v.Verify(t.Context(), []string{"Bearer " + is.sign(t, claims(now.Add(time.Hour), custom))})
			if err != nil {
				t.Fatalf("got %v, want accepted", err)
			}
			if !reflect.DeepEqual(c.AMR, tc.want) {
				t.Errorf("got amr %#v, want %#v", c.AMR, tc.want)
			}
		})
	}
}

func TestTokenLifetime(t *testing.T) {
	is := newIssuer(t, es256(t))
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name   string
		limit  time.Duration // MaxTokenLifetime
		iat    *time.Duration
		exp    time.Duration
		refuse bool
	}{
		{"1h token, limit 12h", 12 * time.Hour, ago(0), time.Hour, false},
		{"1h token without iat, limit 12h", 12 * time.Hour, nil, time.Hour, false},
		{"exp 200 years away, limit 12h", 12 * time.Hour, ago(0), 200 * 365 * day, true},
		{"exp 200 years away without iat, limit 12h", 12 * time.Hour, nil, 200 * 365 * day, true},
		{"exp 200 years away, no limit", 0, ago(0), 200 * 365 * day, false},
		{"exp at limit plus skew", 12 * time.Hour, nil, 12*time.Hour + 30*time.Second, false},
		{"exp past limit plus skew", 12 * time.Hour, nil, 12*time.Hour + 31*time.Second, true},
		{"exp-iat at limit", 12 * time.Hour, ago(11 * time.Hour), time.Hour, false},
		{"exp-iat past limit", 12 * time.Hour, ago(11 * time.Hour), 2 * time.Hour, true},
		{"exp-iat far past limit, no limit", 0, ago(30 * day), time.Hour, false},
		{"iat in the future past skew, limit 12h", 12 * time.Hour, ago(-31 * time.Second), time.Hour, true},
		{"iat in the future past skew, no limit", 0, ago(-31 * time.Second), time.Hour, true},
		{"iat a day ahead, no limit", 0, ago(-day), 2 * day, true},
		{"iat at the skew", 0, ago(-30 * time.Second), time.Hour, false},
		{"iat within the skew, limit 12h", 12 * time.Hour, ago(-10 * time.Second), time.Hour, false},
		{"no iat, no limit", 0, nil, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg()
			c.MaxTokenLifetime = tc.limit
			v, err := NewVerifierFromJWKS(c, is.jwks)
			if err != nil {
				t.Fatal(err)
			}
			o := claims(now.Add(tc.exp), map[string]any{"org_id": "org_a"})
			if tc.iat != nil {
				iat := now.Add(-*tc.iat)
				o.IssuedAt = &iat
			}
			caller, err := v.Verify(t.Context(), []string{"Bearer " + is.sign(t, o)})
			switch {
			case tc.refuse && !errors.Is(err, ErrInvalidToken):
				t.Errorf("got %+v, %v; want %v", caller, err, ErrInvalidToken)
			case !tc.refuse && err != nil:
				t.Errorf("got %v, want accepted", err)
			}
		})
	}
}

// ago returns a pointer to d, how long before now a token was issued.
func ago(d time.Duration) *time.Duration { return &d }

func TestConfigRefused(t *testing.T) {
	is := newIssuer(t, es256(t))
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no org claim", func(c *Config) { c.OrgClaim = "" }},
		{"no user claim", func(c *Config) { c.UserClaim = "" }},
		{"org from aud", func(c *Config) { c.OrgClaim = "aud" }},
		{"user from exp", func(c *Config) { c.UserClaim = "exp" }},
		{"role from iat", func(c *Config) { c.RoleClaim = "iat" }},
		{"negative lifetime", func(c *Config) { c.MaxTokenLifetime = -time.Hour }},
		{"skew over 10m", func(c *Config) { c.ClockSkew = 11 * time.Minute }},
		{"negative cache ttl", func(c *Config) { c.CacheTTL = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg()
			tc.edit(&c)
			if _, err := NewVerifierFromJWKS(c, is.jwks); err == nil {
				t.Errorf("got no error for %+v, want one", c)
			}
		})
	}
	c := cfg()
	c.RoleClaim = ""
	if _, err := NewVerifierFromJWKS(c, is.jwks); err != nil {
		t.Errorf("got %v for no role claim, want accepted", err)
	}
}

// TestLoginClaims: the caller carries the token's iat, the MFA claim
// when configured and true, and a session id: sid, else jti, else a
// digest of the token (never the token).
func TestLoginClaims(t *testing.T) {
	is := newIssuer(t, es256(t))
	c := cfg()
	c.MFAClaim = "mfa"
	v, err := NewVerifierFromJWKS(c, is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	iat := now.Add(-time.Minute).Truncate(time.Second)
	for _, tc := range []struct {
		name    string
		custom  map[string]any
		jti     string
		iat     bool
		mfa     bool
		session string // the id referred to
	}{
		{"sid", map[string]any{"sid": "s-1", "mfa": true}, "j-1", true, true, "sid:s-1"},
		{"jti", map[string]any{"mfa": false}, "j-1", true, false, "jti:j-1"},
		{"neither", map[string]any{"mfa": "yes"}, "", false, false, "token:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := claims(now.Add(time.Hour), tc.custom)
			opts.CustomClaims["org_id"] = "org_a"
			if tc.jti != "" {
				opts.JWTID = &tc.jti
			}
			if tc.iat {
				opts.IssuedAt = &iat
			}
			tok := is.sign(t, opts)
			got, err := v.Verify(t.Context(), []string{"Bearer " + tok})
			if err != nil {
				t.Fatal(err)
			}
			if got.MFA != tc.mfa || tc.iat != got.IssuedAt.Equal(iat) || tc.iat == got.IssuedAt.IsZero() {
				t.Errorf("mfa %v iat %v; want %v, iat %v", got.MFA, got.IssuedAt, tc.mfa, tc.iat)
			}
			want := SessionRef(tc.session)
			if tc.session == "token:" {
				want = SessionRef("token:" + tokenDigest(tok))
			}
			if got.Session != want || !ValidSessionRef(got.Session) {
				t.Errorf("session %q, want %s…", got.Session, tc.session)
			}
		})
	}
}

// TestPATClaim: a token whose PAT claim holds one of the values, in any
// letter case, is a PAT; any other value, type or no claim is not.
func TestPATClaim(t *testing.T) {
	is := newIssuer(t, es256(t))
	c := cfg()
	c.PATClaim, c.PATValues = "token_type", []string{"pat", "personal_access_token"}
	v, err := NewVerifierFromJWKS(c, is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[any]bool{"pat": true, "PAT": true, " Personal_Access_Token ": true, "session": false, 1: false, nil: false} {
		custom := map[string]any{"org_id": "org_a"}
		if typ != nil {
			custom["token_type"] = typ
		}
		got, err := v.Verify(t.Context(), []string{"Bearer " + is.sign(t, claims(now.Add(time.Hour), custom))})
		if err != nil || got.PAT != want {
			t.Errorf("token_type %#v: PAT %v (%v), want %v", typ, got != nil && got.PAT, err, want)
		}
	}
}

// TestClientClaim: the configured client claim names the integration a
// token acts for; without it, or with no such claim, there is none.
func TestClientClaim(t *testing.T) {
	is := newIssuer(t, es256(t))
	for _, tc := range []struct {
		claim  string
		custom map[string]any
		want   string
	}{
		{"azp", map[string]any{"org_id": "org_a", "azp": "ehr-sync"}, "ehr-sync"},
		{"azp", map[string]any{"org_id": "org_a"}, ""},
		{"azp", map[string]any{"org_id": "org_a", "azp": 7}, ""},
		{"", map[string]any{"org_id": "org_a", "azp": "ehr-sync"}, ""},
	} {
		c := cfg()
		c.ClientClaim = tc.claim
		v, err := NewVerifierFromJWKS(c, is.jwks)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(t.Context(), []string{"Bearer " + is.sign(t, claims(now.Add(time.Hour), tc.custom))})
		if err != nil || got.Client != tc.want {
			t.Errorf("claim %q, %v: client %q (%v), want %q", tc.claim, tc.custom, got.Client, err, tc.want)
		}
	}
}

package identity

import (
	"encoding/base64"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/jwt/jwtecdsa"
	"github.com/tink-crypto/tink-go/v2/key"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// testKey is an ES256 key pair whose JWK and tokens carry kid, or no kid
// when kid is "".
type testKey struct {
	priv *jwtecdsa.PrivateKey
	kid  string
}

// newTestKey makes an ES256 key with Tink.
func newTestKey(t testing.TB, kid string) testKey {
	t.Helper()
	h, err := keyset.NewHandle(jwt.RawES256Template())
	if err != nil {
		t.Fatal(err)
	}
	e, err := h.Entry(0)
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := e.Key().(*jwtecdsa.PrivateKey)
	if !ok {
		t.Fatalf("got %T, want *jwtecdsa.PrivateKey", e.Key())
	}
	return testKey{priv: priv}.withKID(t, kid)
}

// withKID returns the same key pair under another kid ("" for none): its
// tokens carry that kid.
func (k testKey) withKID(t testing.TB, kid string) testKey {
	t.Helper()
	strategy := jwtecdsa.IgnoredKID
	if kid != "" {
		strategy = jwtecdsa.CustomKID
	}
	params, err := jwtecdsa.NewParameters(strategy, jwtecdsa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	newPub, err := jwtecdsa.NewPublicKey(jwtecdsa.PublicKeyOpts{
		PublicPoint: pub.(*jwtecdsa.PublicKey).PublicPoint(), CustomKID: kid, HasCustomKID: kid != "", Parameters: params,
	})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwtecdsa.NewPrivateKeyFromPublicKey(k.priv.PrivateKeyValue(), newPub)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, kid: kid}
}

func handleOf(t testing.TB, keys ...key.Key) *keyset.Handle {
	t.Helper()
	m := keyset.NewManager()
	var id uint32
	for _, k := range keys {
		var err error
		if id, err = m.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SetPrimary(id); err != nil {
		t.Fatal(err)
	}
	h, err := m.Handle()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sign signs o with k.
func (k testKey) sign(t testing.TB, o *jwt.RawJWTOptions) string {
	t.Helper()
	s, err := jwt.NewSigner(handleOf(t, k.priv))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.NewRawJWT(o)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.SignAndEncode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// jwksOf returns the JWK set of the public keys, in order.
func jwksOf(t testing.TB, keys ...testKey) []byte {
	t.Helper()
	var pubs []key.Key
	for _, k := range keys {
		pub, err := k.priv.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, pub)
	}
	jwks, err := jwt.JWKSetFromPublicKeysetHandle(handleOf(t, pubs...))
	if err != nil {
		t.Fatal(err)
	}
	return jwks
}

// countingVerifier counts the tokens a key is asked to verify.
type countingVerifier struct {
	jwt.Verifier
	n *atomic.Int64
}

func (c countingVerifier) VerifyAndDecode(tok string, val *jwt.Validator) (*jwt.VerifiedJWT, error) {
	c.n.Add(1)
	return c.Verifier.VerifyAndDecode(tok, val)
}

// countChecks makes every key of v's set count its signature checks. Call
// it before v is used.
func countChecks(v *Verifier) *atomic.Int64 {
	n := new(atomic.Int64)
	for _, k := range v.state.Load().keys.all {
		k.verifier = countingVerifier{k.verifier, n}
	}
	return n
}

// withHeader replaces the protected header of tok with the JSON h; the
// signature no longer matches.
func withHeader(tok, h string) string {
	_, rest, _ := strings.Cut(tok, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(h)) + "." + rest
}

func TestKIDSelection(t *testing.T) {
	k1, k2, k0 := newTestKey(t, "one"), newTestKey(t, "two"), newTestKey(t, "")
	d1, d2 := newTestKey(t, "dup"), newTestKey(t, "dup")
	stranger := newTestKey(t, "dup")
	setTwo := jwksOf(t, k1, k2)   // two keys, each with a kid
	setMixed := jwksOf(t, k1, k0) // a key with a kid, one without
	setDup := jwksOf(t, d1, d2)   // two keys sharing a kid
	setNoKID := jwksOf(t, k0, k0.withKID(t, ""), newTestKey(t, ""))
	good := claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"})
	for _, tc := range []struct {
		name   string
		jwks   []byte
		token  string
		ok     bool
		checks int64 // signature checks
	}{
		{"kid of key 2", setTwo, k2.sign(t, good), true, 1},
		{"kid of key 1", setTwo, k1.sign(t, good), true, 1},
		{"kid of key 1, signed by key 2", setTwo, k2.withKID(t, "one").sign(t, good), false, 1},
		{"unknown kid, no kid-less key", setTwo, k2.withKID(t, "three").sign(t, good), false, 0},
		{"no kid, signed by key 1", setTwo, k1.withKID(t, "").sign(t, good), true, 1},
		{"no kid, signed by key 2", setTwo, k2.withKID(t, "").sign(t, good), true, 2},
		{"no kid, signed by no key", setTwo, stranger.withKID(t, "").sign(t, good), false, 2},
		{"unknown kid, signed by the kid-less key", setMixed, k0.withKID(t, "zzz").sign(t, good), true, 1},
		{"unknown kid, signed by the key with a kid", setMixed, k1.withKID(t, "zzz").sign(t, good), false, 1},
		{"kid of key 1, signed by the kid-less key", setMixed, k0.withKID(t, "one").sign(t, good), false, 1},
		{"no kid, signed by the kid-less key", setMixed, k0.sign(t, good), true, 2},
		{"shared kid, signed by the first", setDup, d1.sign(t, good), true, 1},
		{"shared kid, signed by the second", setDup, d2.sign(t, good), true, 2},
		{"shared kid, signed by neither", setDup, stranger.sign(t, good), false, 2},
		{"kid-less set, any kid", setNoKID, k0.withKID(t, "x").sign(t, good), true, 1},
		{"kid of key 2, alg RS256", setTwo, withHeader(k2.sign(t, good), `{"alg":"RS256","kid":"two"}`), false, 0},
		{"kid of key 2, no alg", setTwo, withHeader(k2.sign(t, good), `{"kid":"two"}`), false, 0},
		{"kid a number", setTwo, withHeader(k2.sign(t, good), `{"alg":"ES256","kid":2}`), false, 0},
		{"kid twice", setTwo, withHeader(k2.sign(t, good), `{"alg":"ES256","kid":"two","kid":"one"}`), false, 0},
		{"header an array", setTwo, withHeader(k2.sign(t, good), `["ES256"]`), false, 0},
		{"header not JSON", setTwo, withHeader(k2.sign(t, good), `{"alg":"ES256"`), false, 0},
		{"header padded", setTwo, "eyJ9=." + strings.SplitN(k2.sign(t, good), ".", 2)[1], false, 0},
		{"two segments", setTwo, strings.Join(strings.Split(k2.sign(t, good), ".")[:2], "."), false, 0},
		{"four segments", setTwo, k2.sign(t, good) + ".x", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg()
			v, err := NewVerifierFromJWKS(c, tc.jwks)
			if err != nil {
				t.Fatal(err)
			}
			n := countChecks(v)
			caller, err := v.Verify(t.Context(), []string{"Bearer " + tc.token})
			switch {
			case tc.ok && err != nil:
				t.Errorf("got %v, want accepted", err)
			case !tc.ok && !errors.Is(err, ErrInvalidToken):
				t.Errorf("got %+v, %v; want %v", caller, err, ErrInvalidToken)
			}
			if got := n.Load(); got != tc.checks {
				t.Errorf("got %d signature checks, want %d", got, tc.checks)
			}
			// Choosing keys by kid only narrows Tink's own verdict.
			if err == nil && !tinkAccepts(t, tc.jwks, tc.token) {
				t.Error("accepted a token Tink's verifier of the whole set refuses")
			}
		})
	}
}

// tinkAccepts verifies tok with one Tink verifier holding the whole set.
func tinkAccepts(t *testing.T, jwks []byte, tok string) bool {
	t.Helper()
	h, err := jwt.JWKSetToPublicKeysetHandle(jwks)
	if err != nil {
		t.Fatal(err)
	}
	tv, err := jwt.NewVerifier(h)
	if err != nil {
		t.Fatal(err)
	}
	val, err := validator(cfg(), now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tv.VerifyAndDecode(tok, val)
	return err == nil
}

func TestKeySetKIDs(t *testing.T) {
	k1, k0 := newTestKey(t, "one"), newTestKey(t, "")
	ks, err := newKeySet(jwksOf(t, k1, k0, k1.withKID(t, "one")))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ks.all); got != 3 {
		t.Errorf("got %d keys, want 3", got)
	}
	if got := len(ks.noKID); got != 1 {
		t.Errorf("got %d keys without kid, want 1", got)
	}
	if got := len(ks.byKID["one"]); got != 2 {
		t.Errorf("got %d keys with kid one, want 2", got)
	}
	for _, k := range ks.all {
		if k.alg != "ES256" {
			t.Errorf("got alg %q, want ES256", k.alg)
		}
	}
}

// FuzzReadHeader: readHeader never panics, and a header it reads holds
// the alg and kid that were encoded.
func FuzzReadHeader(f *testing.F) {
	for _, h := range []string{`{"alg":"ES256","kid":"k1"}`, `{"alg":"ES256"}`, `{"kid":null}`, `{"alg":1}`, `[]`, `{"KID":"x"}`} {
		f.Add(base64.RawURLEncoding.EncodeToString([]byte(h)) + ".e30.c2ln")
	}
	f.Fuzz(func(t *testing.T, tok string) {
		h, err := readHeader(tok)
		if err != nil {
			return
		}
		seg, _, _ := strings.Cut(tok, ".")
		raw, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil {
			t.Fatalf("read a header that does not decode: %v", err)
		}
		if h.Alg != "" && !strings.Contains(string(raw), "alg") {
			t.Errorf("got alg %q from %q", h.Alg, raw)
		}
		if h.KID != nil && !strings.Contains(string(raw), "kid") {
			t.Errorf("got kid %q from %q", *h.KID, raw)
		}
	})
}

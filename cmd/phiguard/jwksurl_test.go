package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// rotatingIssuer signs ES256 tokens and publishes its public keys; rotate
// adds a new signing key.
type rotatingIssuer struct {
	mu     sync.Mutex
	keys   []*keyset.Handle
	down   bool
	server *httptest.Server
}

func newRotatingIssuer(t *testing.T) *rotatingIssuer {
	is := &rotatingIssuer{}
	is.rotate(t)
	is.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		if is.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var all struct {
			Keys []json.RawMessage `json:"keys"`
		}
		for _, h := range is.keys {
			pub, _ := h.Public()
			set, _ := jwt.JWKSetFromPublicKeysetHandle(pub)
			var one struct {
				Keys []json.RawMessage `json:"keys"`
			}
			json.Unmarshal(set, &one)
			all.Keys = append(all.Keys, one.Keys...)
		}
		json.NewEncoder(w).Encode(all)
	}))
	t.Cleanup(is.server.Close)
	return is
}

func (is *rotatingIssuer) rotate(t *testing.T) {
	h, err := keyset.NewHandle(jwt.ES256Template())
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	is.keys = append(is.keys, h)
	is.mu.Unlock()
}

// token signs a token of org_a's alice with the newest key.
func (is *rotatingIssuer) token(t *testing.T) string {
	is.mu.Lock()
	h := is.keys[len(is.keys)-1]
	is.mu.Unlock()
	signer, _ := jwt.NewSigner(h)
	iss, aud, sub := "https://auth.example", "app", "alice"
	exp := time.Now().Add(time.Hour)
	raw, _ := jwt.NewRawJWT(&jwt.RawJWTOptions{Issuer: &iss, Audience: &aud, Subject: &sub, ExpiresAt: &exp, CustomClaims: map[string]any{"org_id": "org_a"}})
	tok, err := signer.SignAndEncode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestJWKSURLServe: phiguard takes its key set from the issuer's URL; a
// token of a key the issuer rotated in is accepted at once; while the URL
// is down (or within the 30s between fetches for unknown keys), the last
// good set stays in force and the client sees a plain 401 for an unknown
// key. (identity's TestJWKSURL covers the rate limit and the fetch errors.)
func TestJWKSURLServe(t *testing.T) {
	is := newRotatingIssuer(t)
	app := newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }))
	s := startOps(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "`+app+`"}
admin: {listen: "127.0.0.1:0"}
identity: {jwt: {jwks_url: "`+is.server.URL+`", issuer: "https://auth.example", audience: app}}
routes:
  - {name: me, match: {path: /me}}
`)
	get := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+s.proxy+"/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Error struct{ Message string } }
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error.Message
	}
	first := is.token(t)
	if code, msg := get(first); code != 200 {
		t.Fatalf("a token of the published key: %d %s", code, msg)
	}
	is.rotate(t)
	if code, msg := get(is.token(t)); code != 200 {
		t.Errorf("a token of a key rotated in after start: %d %s", code, msg)
	}
	is.mu.Lock()
	is.down = true
	is.mu.Unlock()
	is.rotate(t) // a key phiguard cannot learn while the URL is down
	code, msg := get(is.token(t))
	if code != 401 || msg != "the bearer token is invalid or expired" {
		t.Errorf("an unknown key while the URL is down: %d %q", code, msg)
	}
	if code, _ := get(first); code != 200 {
		t.Errorf("the last good set while the URL is down: %d", code)
	}
}

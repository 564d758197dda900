package identity

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phiguard/phiguard/refusal"
)

// TestIntrospection: opaque tokens are identified by asking the
// authorization server (RFC 7662) with phiguard's client credentials;
// answers are reused for the cache's while, never past the token's exp;
// an inactive token is refused; the server down refuses (503) without
// remembering it; claims map as for JWTs.
func TestIntrospection(t *testing.T) {
	var mu sync.Mutex
	answers := map[string]map[string]any{
		"tok-alice": {"active": true, "sub": "alice", "org_id": "org_a", "role": "agent", "amr": []any{"pwd", "otp"}, "azp": "ehr", "sid": "s1", "iat": float64(now.Add(-time.Hour).Unix()), "exp": float64(now.Add(90 * time.Second).Unix())},
		"tok-old":   {"active": false},
		"tok-bad":   {"active": true, "sub": "bob", "org_id": []any{"a", "b"}},
		"tok-noexp": {"active": true, "sub": "carl", "org_id": "org_a", "mfa": true},
	}
	down := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		id, secret, ok := r.BasicAuth()
		if down || !ok || id != "phiguard" || secret != "s3cret" || r.FormValue("token_type_hint") != "access_token" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		a, ok := answers[r.FormValue("token")]
		if !ok {
			a = map[string]any{"active": false}
		}
		json.NewEncoder(w).Encode(a)
	}))
	defer srv.Close()
	clock := now
	in, err := NewIntrospector(IntrospectConfig{URL: srv.URL, ClientID: "phiguard", ClientSecret: "s3cret", CacheTTL: time.Minute,
		OrgClaim: "org_id", UserClaim: "sub", RoleClaim: "role", MFAClaim: "mfa", ClientClaim: "azp", Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(tok string) (*Caller, error) { return in.Verify(t.Context(), []string{"Bearer " + tok}) }

	c, err := verify("tok-alice")
	if err != nil || c.Org != "org_a" || c.User != "alice" || c.Role != "agent" || c.Client != "ehr" || c.Session != SessionRef("sid:s1") ||
		len(c.AMR) != 2 || !c.IssuedAt.Equal(now.Add(-time.Hour).Truncate(time.Second)) {
		t.Fatalf("alice: %+v %v", c, err)
	}
	verify("tok-alice")
	if in.Asked() != 1 {
		t.Errorf("asked %d times for one token within the cache's while", in.Asked())
	}
	clock = clock.Add(61 * time.Second)
	verify("tok-alice")
	if in.Asked() != 2 {
		t.Errorf("after the cache's while: asked %d times, want 2", in.Asked())
	}
	clock = clock.Add(30 * time.Second) // past the token's exp, within the cache's while
	if _, err := verify("tok-alice"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("past exp: %v", err)
	}
	if _, err := verify("tok-old"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("inactive: %v", err)
	}
	if _, err := verify("tok-bad"); !errors.Is(err, ErrClaims) {
		t.Errorf("two orgs: %v", err)
	}
	if c, err := verify("tok-noexp"); err != nil || !c.MFA || c.Session != SessionRef("token:"+tokenDigest("tok-noexp")) {
		t.Errorf("no exp, mfa claim: %+v %v", c, err)
	}
	mu.Lock()
	down = true
	mu.Unlock()
	asked := in.Asked()
	for range 2 {
		_, err := verify("tok-new")
		if ref, ok := refusal.As(err); !ok || ref.Kind != refusal.IdentityUnavailable {
			t.Errorf("server down: %v, want identity_unavailable", err)
		}
	}
	if in.Asked() != asked+2 {
		t.Error("a failed answer was remembered")
	}
	if _, err := verify("tok-old"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a remembered inactive token while the server is down: %v", err)
	}
}

// TestChain: a JWT goes to the JWT verifier, anything else to
// introspection.
func TestChain(t *testing.T) {
	is := newIssuer(t, es256(t))
	v, err := NewVerifierFromJWKS(cfg(), is.jwks)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"active": r.FormValue("token") == "opaque-1", "sub": "o", "org_id": "org_b"})
	}))
	defer srv.Close()
	in, _ := NewIntrospector(IntrospectConfig{URL: srv.URL, OrgClaim: "org_id", UserClaim: "sub", Now: func() time.Time { return now }})
	ch := Chain{JWT: v, Opaque: in}
	if c, err := ch.Verify(t.Context(), []string{"Bearer " + is.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"}))}); err != nil || c.Org != "org_a" || in.Asked() != 0 {
		t.Errorf("JWT: %+v %v, asked %d", c, err, in.Asked())
	}
	if c, err := ch.Verify(t.Context(), []string{"Bearer opaque-1"}); err != nil || c.Org != "org_b" {
		t.Errorf("opaque: %+v %v", c, err)
	}
	if _, err := (Chain{JWT: v}).Verify(t.Context(), []string{"Bearer opaque-1"}); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("opaque without introspection: %v", err)
	}
}

// TestAuthSubrequest: the app's own "who am I" endpoint identifies an
// opaque session token, sent as a bearer token and as the app's cookie;
// 401 from it is no session; a 5xx is 503.
func TestAuthSubrequest(t *testing.T) {
	var status atomic.Int64
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("MMAUTHTOKEN")
		if r.Method != "GET" || err != nil || r.Header.Get("Authorization") != "Bearer "+c.Value {
			http.Error(w, "bad subrequest", 400)
			return
		}
		if s := int(status.Load()); s != 200 {
			w.WriteHeader(s)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"id": "u1", "team_id": "org_a", "roles": "system_user"})
	}))
	defer srv.Close()
	in, err := NewIntrospector(IntrospectConfig{URL: srv.URL, Subrequest: true, Cookie: "MMAUTHTOKEN", CacheTTL: time.Minute,
		OrgClaim: "team_id", UserClaim: "id", RoleClaim: "roles", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := in.Verify(t.Context(), []string{"Bearer sess1"}); err != nil || c.Org != "org_a" || c.User != "u1" || c.Role != "system_user" {
		t.Errorf("a live session: %+v %v", c, err)
	}
	status.Store(401)
	if _, err := in.Verify(t.Context(), []string{"Bearer sess2"}); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("no session: %v", err)
	}
	status.Store(500)
	if _, err := in.Verify(t.Context(), []string{"Bearer sess3"}); !errors.Is(err, refusal.IdentityUnavailable) {
		t.Errorf("the app failing: %v", err)
	}
}

package identity

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer serves a key set that the test changes, or fails.
type jwksServer struct {
	mu   sync.Mutex
	body []byte
	fail bool
	hits atomic.Int64
	srv  *httptest.Server
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail {
			http.Error(w, "upstream down: internal detail", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) set(body []byte, fail bool) {
	s.mu.Lock()
	s.body, s.fail = body, fail
	s.mu.Unlock()
}

// mergeJWKS joins key sets.
func mergeJWKS(t *testing.T, sets ...[]byte) []byte {
	var all struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, s := range sets {
		var one struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(s, &one); err != nil {
			t.Fatal(err)
		}
		all.Keys = append(all.Keys, one.Keys...)
	}
	out, _ := json.Marshal(all)
	return out
}

// TestJWKSURL: the key set comes from a URL; a token of a rotated-in key
// (a kid the set lacks) makes one fetch and is accepted; a flood of
// unknown kids fetches at most once per interval; a failing fetch keeps
// the last good set and is never shown to the client; a scheduled
// refresh drops a key the issuer removed.
func TestJWKSURL(t *testing.T) {
	k1, k2, stranger := newIssuer(t, es256(t)), newIssuer(t, es256(t)), newIssuer(t, es256(t))
	srv := newJWKSServer(t, k1.jwks)
	clock := now
	var clockMu sync.Mutex
	var errs []error
	c := cfg()
	c.JWKSURL = srv.srv.URL
	c.JWKSMinInterval = time.Minute
	c.Now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	c.OnJWKSError = func(err error) { errs = append(errs, err) }
	advance := func(d time.Duration) { clockMu.Lock(); clock = clock.Add(d); clockMu.Unlock() }
	v, err := NewVerifierFromURL(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	tok := func(is issuer) []string {
		return []string{"Bearer " + is.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"}))}
	}
	if _, err := v.Verify(t.Context(), tok(k1)); err != nil || v.Fetches() != 0 || srv.hits.Load() != 1 {
		t.Fatalf("k1: %v; fetches %d, hits %d", err, v.Fetches(), srv.hits.Load())
	}

	// The issuer adds k2: its first token fetches, and is accepted.
	srv.set(mergeJWKS(t, k1.jwks, k2.jwks), false)
	advance(2 * time.Minute)
	if _, err := v.Verify(t.Context(), tok(k2)); err != nil || srv.hits.Load() != 2 {
		t.Fatalf("k2 after rotation: %v; hits %d", err, srv.hits.Load())
	}

	// A flood of tokens of a key nobody published: one fetch per interval.
	for i := range 20 {
		if _, err := v.Verify(t.Context(), tok(stranger)); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("stranger %d: %v", i, err)
		}
	}
	if srv.hits.Load() != 2 {
		t.Errorf("a flood of unknown kids within the interval fetched %d times", srv.hits.Load()-2)
	}
	advance(2 * time.Minute)
	v.Verify(t.Context(), tok(stranger))
	v.Verify(t.Context(), tok(stranger))
	if srv.hits.Load() != 3 {
		t.Errorf("after the interval: %d fetches in all, want 3", srv.hits.Load())
	}

	// The URL fails: the last good set stays, and the client sees only
	// the usual refusal.
	srv.set(nil, true)
	advance(2 * time.Minute)
	_, err = v.Verify(t.Context(), tok(stranger))
	if !errors.Is(err, ErrInvalidToken) || strings.Contains(err.Error(), "internal detail") || len(errs) == 0 {
		t.Errorf("while the URL fails: %v (errors reported %v)", err, errs)
	}
	if _, err := v.Verify(t.Context(), tok(k2)); err != nil {
		t.Errorf("k2 while the URL fails: %v", err)
	}

	// A scheduled refresh takes k1 away.
	srv.set(k2.jwks, false)
	v.fetch(t.Context(), true)
	if _, err := v.Verify(t.Context(), tok(k1)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("k1 after the issuer removed it: %v", err)
	}
	if _, err := v.Verify(t.Context(), tok(k2)); err != nil {
		t.Errorf("k2 after refresh: %v", err)
	}
}

// TestJWKSURLAtStart: a verifier cannot start without a first good set.
func TestJWKSURLAtStart(t *testing.T) {
	srv := newJWKSServer(t, []byte(`{"keys":[]}`))
	c := cfg()
	c.JWKSURL = srv.srv.URL
	if _, err := NewVerifierFromURL(t.Context(), c); err == nil {
		t.Error("an empty key set accepted")
	}
	srv.set(nil, true)
	if _, err := NewVerifierFromURL(t.Context(), c); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("a failing URL: %v", err)
	}
	srv.set([]byte(strings.Repeat(" ", maxJWKSBytes+1)), false)
	if _, err := NewVerifierFromURL(t.Context(), c); err == nil {
		t.Error("a huge answer accepted")
	}
}

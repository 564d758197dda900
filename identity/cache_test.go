package identity

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable Config.Now.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// forge changes one character in the middle of tok's signature: the
// header and kid stay valid, the signature does not verify.
func forge(tok string) string {
	i := strings.LastIndex(tok, ".") + (len(tok)-strings.LastIndex(tok, "."))/2
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func bearer(tok string) []string { return []string{"Bearer " + tok} }

// cachedVerifier returns a verifier of the set of keys on the clock clk, with
// size and ttl for the cache, and the counter of its signature checks.
func cachedVerifier(t *testing.T, clk *clock, size int, ttl time.Duration, keys ...testKey) (*Verifier, *atomic.Int64) {
	t.Helper()
	c := cfg()
	c.Now, c.CacheSize, c.CacheTTL = clk.now, size, ttl
	v, err := NewVerifierFromJWKS(c, jwksOf(t, keys...))
	if err != nil {
		t.Fatal(err)
	}
	return v, countChecks(v)
}

func wantStats(t *testing.T, v *Verifier, hits, misses uint64) {
	t.Helper()
	if h, m := v.CacheStats(); h != hits || m != misses {
		t.Errorf("got %d hits %d misses, want %d %d", h, m, hits, misses)
	}
}

func TestCacheHit(t *testing.T) {
	k := newTestKey(t, "k1")
	v, checks := cachedVerifier(t, newClock(now), 0, 0, k)
	tok := k.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a", "amr": []any{"pwd"}}))
	first, err := v.Verify(t.Context(), bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := v.Verify(t.Context(), []string{"bearer " + tok})
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Errorf("got caller %p, want the cached %p", again, first)
		}
	}
	if got := checks.Load(); got != 1 {
		t.Errorf("got %d signature checks, want 1", got)
	}
	wantStats(t, v, 3, 1)
}

func TestCacheDisabled(t *testing.T) {
	k := newTestKey(t, "k1")
	v, checks := cachedVerifier(t, newClock(now), -1, 0, k)
	tok := k.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"}))
	for range 3 {
		if _, err := v.Verify(t.Context(), bearer(tok)); err != nil {
			t.Fatal(err)
		}
	}
	if got := checks.Load(); got != 3 {
		t.Errorf("got %d signature checks, want 3", got)
	}
	wantStats(t, v, 0, 3)
}

func TestCacheExpiry(t *testing.T) {
	k := newTestKey(t, "k1")
	exp := now.Add(time.Hour)
	tok := k.sign(t, claims(exp, map[string]any{"org_id": "org_a"}))
	// cfg().ClockSkew is 30s: Tink refuses the token from exp + 30s on.
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		at     time.Duration // after now, of the second presentation
		ok     bool
		checks int64 // in all, with the first presentation
		size   int   // cache entries after
	}{
		{"hit within ttl", 5 * time.Minute, 4*time.Minute + 59*time.Second, true, 1, 1},
		{"ttl passed, verified again", 5 * time.Minute, 5 * time.Minute, true, 2, 1},
		{"ttl passed long ago, verified again", 5 * time.Minute, 50 * time.Minute, true, 2, 1},
		{"at exp, within skew", 2 * time.Hour, time.Hour, true, 1, 1},
		{"a second before exp + skew", 2 * time.Hour, time.Hour + 29*time.Second, true, 1, 1},
		{"at exp + skew", 2 * time.Hour, time.Hour + 30*time.Second, false, 1, 0},
		{"past exp + skew", 2 * time.Hour, 3 * time.Hour, false, 1, 0},
		{"past exp + skew and ttl", 5 * time.Minute, 3 * time.Hour, false, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock(now)
			v, checks := cachedVerifier(t, clk, 0, tc.ttl, k)
			first, err := v.Verify(t.Context(), bearer(tok))
			if err != nil {
				t.Fatal(err)
			}
			clk.add(tc.at)
			c, err := v.Verify(t.Context(), bearer(tok))
			switch {
			case tc.ok && err != nil:
				t.Errorf("got %v, want accepted", err)
			case !tc.ok && !errors.Is(err, ErrInvalidToken):
				t.Errorf("got %+v, %v; want %v", c, err, ErrInvalidToken)
			case tc.ok && tc.checks == 1 && c != first:
				t.Errorf("got caller %p, want the cached %p", c, first)
			}
			if got := checks.Load(); got != tc.checks {
				t.Errorf("got %d signature checks, want %d", got, tc.checks)
			}
			if got := v.state.Load().cache.len(); got != tc.size {
				t.Errorf("got %d cache entries, want %d", got, tc.size)
			}
			// The cache judges exp as Tink does without it.
			uncached, _ := cachedVerifier(t, clk, -1, 0, k)
			if _, err := uncached.Verify(t.Context(), bearer(tok)); (err == nil) != tc.ok {
				t.Errorf("got %v without cache, want accepted %v", err, tc.ok)
			}
		})
	}
}

func TestSetKeySet(t *testing.T) {
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	clk := newClock(now)
	v, _ := cachedVerifier(t, clk, 0, 0, k1, k2)
	good := claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"})
	tok1, tok2 := k1.sign(t, good), k2.sign(t, good)
	for _, tok := range []string{tok1, tok2} {
		if _, err := v.Verify(t.Context(), bearer(tok)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.SetKeySet(jwksOf(t, k2)); err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(t.Context(), bearer(tok1)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token of the removed key: got %+v, %v; want %v", c, err, ErrInvalidToken)
	}
	if _, err := v.Verify(t.Context(), bearer(tok2)); err != nil {
		t.Errorf("token of the kept key: got %v, want accepted", err)
	}
	wantStats(t, v, 0, 3)
	for _, bad := range []string{`{"keys":[]}`, `not json`, `{"keys":[{"kty":"EC"}]}`} {
		if err := v.SetKeySet([]byte(bad)); err == nil {
			t.Errorf("SetKeySet(%s): got no error, want one", bad)
		}
	}
	if _, err := v.Verify(t.Context(), bearer(tok2)); err != nil {
		t.Errorf("after an invalid set: got %v, want the old set kept", err)
	}
	if _, err := v.Verify(t.Context(), bearer(tok1)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("after an invalid set: got %v for the removed key, want %v", err, ErrInvalidToken)
	}
	wantStats(t, v, 1, 3)
}

func TestForgedNotCached(t *testing.T) {
	k1, k2, k3 := newTestKey(t, "k1"), newTestKey(t, "k2"), newTestKey(t, "k3")
	v, checks := cachedVerifier(t, newClock(now), 1, 0, k1, k2, k3)
	good := k3.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"}))
	cached, err := v.Verify(t.Context(), bearer(good))
	if err != nil {
		t.Fatal(err)
	}
	const flood = 200
	for i := range flood {
		forged := forge(k3.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": fmt.Sprintf("org_%d", i)})))
		if c, err := v.Verify(t.Context(), bearer(forged)); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("forged token: got %+v, %v; want %v", c, err, ErrInvalidToken)
		}
	}
	if got, want := checks.Load(), int64(1+flood); got != want {
		t.Errorf("got %d signature checks, want %d: one per forged token", got, want)
	}
	wantStats(t, v, 0, 1)
	if got := v.state.Load().cache.len(); got != 1 {
		t.Errorf("got %d cache entries, want 1", got)
	}
	if c, err := v.Verify(t.Context(), bearer(good)); err != nil || c != cached {
		t.Errorf("good token after the flood: got %p, %v; want the cached %p", c, err, cached)
	}
	wantStats(t, v, 1, 1)
}

func TestCacheBounded(t *testing.T) {
	k := newTestKey(t, "k1")
	var toks []string
	for i := range 150 {
		toks = append(toks, k.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": fmt.Sprintf("org_%d", i)})))
	}
	for _, size := range []int{1, 2, 3, 10, 64, 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			v, _ := cachedVerifier(t, newClock(now), size, 0, k)
			for _, tok := range toks {
				if _, err := v.Verify(t.Context(), bearer(tok)); err != nil {
					t.Fatal(err)
				}
				if got := v.state.Load().cache.len(); got > size {
					t.Fatalf("got %d cache entries, want at most %d", got, size)
				}
			}
			capacity := 0
			for i := range v.state.Load().cache.shards {
				capacity += v.state.Load().cache.shards[i].max
			}
			if capacity != size {
				t.Errorf("got shards holding %d in all, want %d", capacity, size)
			}
		})
	}
}

// TestCacheClock: a full shard evicts a stale entry first, then one not
// used since the hand last passed, sparing the entries that were.
func TestCacheClock(t *testing.T) {
	// Size 3 makes two shards; digests starting with 0 share the first,
	// which holds 2.
	key := func(b byte) digest { return digest{0, b} }
	caller := &Caller{Expires: now.Add(time.Hour)}
	present := func(t *testing.T, c *cache, at time.Time, b byte, want bool) {
		t.Helper()
		if got, _ := c.get(key(b), at); (got != nil) != want {
			t.Errorf("entry %d: got present %v, want %v", b, got != nil, want)
		}
	}
	t.Run("unused first", func(t *testing.T) {
		c := newCache(3, time.Minute, 0)
		c.put(key(1), caller, now)
		c.put(key(2), caller, now)
		present(t, c, now, 1, true) // 1 is used
		c.put(key(3), caller, now)  // the hand spares 1, evicts 2
		present(t, c, now, 2, false)
		present(t, c, now, 1, true) // 1 is used again, 3 is not
		c.put(key(4), caller, now)  // the hand spares 1, evicts 3
		present(t, c, now, 3, false)
		present(t, c, now, 1, true)
		present(t, c, now, 4, true)
		if got := c.len(); got != 2 {
			t.Errorf("got %d entries, want 2", got)
		}
	})
	t.Run("stale first", func(t *testing.T) {
		c := newCache(3, time.Minute, 0)
		c.put(key(1), caller, now.Add(30*time.Second)) // fresh until now+1m30s
		c.put(key(2), caller, now)                     // stale from now+1m
		present(t, c, now, 1, true)
		present(t, c, now, 2, true)
		// Both are used; without the stale rule the hand would clear
		// both marks and evict 1.
		later := now.Add(time.Minute)
		c.put(key(3), caller, later)
		present(t, c, later, 1, true)
		present(t, c, later, 3, true)
		present(t, c, later, 2, false)
	})
	t.Run("expired token first", func(t *testing.T) {
		c := newCache(3, time.Hour, 0)
		c.put(key(1), caller, now)
		c.put(key(2), &Caller{Expires: now.Add(time.Minute)}, now)
		present(t, c, now, 1, true)
		present(t, c, now, 2, true)
		later := now.Add(time.Minute)
		c.put(key(3), caller, later)
		present(t, c, later, 1, true)
		present(t, c, later, 3, true)
		if got := c.len(); got != 2 {
			t.Errorf("got %d entries, want 2", got)
		}
	})
}

func TestCacheDefaults(t *testing.T) {
	v, err := NewVerifierFromJWKS(cfg(), jwksOf(t, newTestKey(t, "k1")))
	if err != nil {
		t.Fatal(err)
	}
	if v.cfg.CacheSize != DefaultCacheSize || v.cfg.CacheTTL != DefaultCacheTTL {
		t.Errorf("got size %d ttl %s, want %d %s", v.cfg.CacheSize, v.cfg.CacheTTL, DefaultCacheSize, DefaultCacheTTL)
	}
}

// TestConcurrentVerify runs good, forged and expired tokens from many
// goroutines through a small cache while the key set is replaced; run it
// with -race.
func TestConcurrentVerify(t *testing.T) {
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	clk := newClock(now)
	v, _ := cachedVerifier(t, clk, 4, time.Minute, k1, k2)
	jwks := jwksOf(t, k1, k2)
	type presentation struct {
		tok string
		ok  bool
	}
	var mix []presentation
	for i := range 8 {
		k := []testKey{k1, k2}[i%2]
		good := k.sign(t, claims(now.Add(time.Hour), map[string]any{"org_id": fmt.Sprintf("org_%d", i)}))
		mix = append(mix, presentation{good, true}, presentation{forge(good), false})
	}
	mix = append(mix, presentation{k1.sign(t, claims(now.Add(-time.Hour), map[string]any{"org_id": "org_a"})), false},
		presentation{"abc.def.ghi", false})
	var wg sync.WaitGroup
	var accepted atomic.Uint64
	for g := range 8 {
		wg.Go(func() {
			for i := range 60 {
				p := mix[(g*7+i)%len(mix)]
				c, err := v.Verify(t.Context(), bearer(p.tok))
				if p.ok && (err != nil || c == nil || !strings.HasPrefix(c.Org, "org_")) {
					t.Errorf("got %+v, %v; want accepted", c, err)
				}
				if !p.ok && !errors.Is(err, ErrInvalidToken) {
					t.Errorf("got %+v, %v; want %v", c, err, ErrInvalidToken)
				}
				if err == nil {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if err := v.SetKeySet(jwks); err != nil {
				t.Error(err)
			}
			v.CacheStats()
			clk.add(time.Second)
		}
	})
	wg.Wait()
	if got := v.state.Load().cache.len(); got > 4 {
		t.Errorf("got %d cache entries, want at most 4", got)
	}
	if hits, misses := v.CacheStats(); hits+misses != accepted.Load() {
		t.Errorf("got %d hits + %d misses, want %d: one per accepted token", hits, misses, accepted.Load())
	}
}

// TestStatsSharedAndInvalidCounted: verifiers given one Stats add to the
// same counts, so they only grow across a policy reload; refused tokens
// (forged, expired in the cache) count as invalid, a missing header not.
func TestStatsSharedAndInvalidCounted(t *testing.T) {
	k := newTestKey(t, "k1")
	clk := newClock(now)
	stats := new(Stats)
	c := cfg()
	c.Now, c.Stats = clk.now, stats
	first, err := NewVerifierFromJWKS(c, jwksOf(t, k))
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewVerifierFromJWKS(c, jwksOf(t, k))
	if err != nil {
		t.Fatal(err)
	}
	tok := k.sign(t, claims(now.Add(time.Minute), map[string]any{"org_id": "org_a"}))
	for _, v := range []*Verifier{first, first, second} {
		if _, err := v.Verify(t.Context(), bearer(tok)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := second.Verify(t.Context(), bearer(forge(tok))); err == nil {
		t.Fatal("a forged token was accepted")
	}
	if _, err := second.Verify(t.Context(), nil); err == nil {
		t.Fatal("no token was accepted")
	}
	clk.add(time.Hour) // the cached token has expired
	if _, err := first.Verify(t.Context(), bearer(tok)); err == nil {
		t.Fatal("an expired cached token was accepted")
	}
	hits, valid, invalid := stats.Load()
	if hits != 1 || valid != 2 || invalid != 2 {
		t.Errorf("got %d hits, %d valid, %d invalid; want 1, 2 (one per verifier), 2 (forged, expired)", hits, valid, invalid)
	}
}

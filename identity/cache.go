package identity

import (
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/subtle"
)

// digest is a cache key: the SHA-256 of a token. A collision would let
// one token pass for another, so the hash must be collision resistant.
type digest [32]byte

// maxShards bounds the shards of a cache; a power of two of at most 256,
// since a shard is chosen by a digest byte.
const maxShards = 64

// cache maps the digest of verified tokens to their caller. It holds at
// most its size of entries, spread over shards by the digest's first byte
// so that requests for different tokens seldom wait for one lock. A full
// shard evicts with the CLOCK scheme: the hand passes over entries, evicts
// the first that is stale or was not used since the hand last passed, and
// clears the mark of those that were; an insert costs O(1) amortized.
//
// A nil *cache caches nothing.
type cache struct {
	shards []cacheShard
	ttl    time.Duration
	skew   time.Duration
	sha256 func() hash.Hash
}

type cacheShard struct {
	mu    sync.RWMutex
	max   int
	index map[digest]int // slot of each digest
	slots []cacheSlot
	hand  int
	_     [64]byte // keeps the locks of neighbouring shards off one cache line
}

type cacheSlot struct {
	key    digest
	caller *Caller
	// until is when the entry's CacheTTL passes.
	until time.Time
	// used is set by every hit, read and cleared by the CLOCK hand; hits
	// hold the read lock only, hence atomic.
	used atomic.Bool
}

// newCache returns a cache of size entries, or nil when size is not
// positive.
func newCache(size int, ttl, skew time.Duration) *cache {
	if size < 1 {
		return nil
	}
	n := maxShards
	for n > 1 && n > size {
		n /= 2
	}
	c := &cache{shards: make([]cacheShard, n), ttl: ttl, skew: skew, sha256: subtle.GetHashFunc("SHA256")}
	for i := range c.shards {
		c.shards[i].max = size / n
		if i < size%n {
			c.shards[i].max++
		}
		c.shards[i].index = map[digest]int{}
	}
	return c
}

// digestOf returns the cache key of token; ok is false when c is nil.
func (c *cache) digestOf(token string) (d digest, ok bool) {
	if c == nil {
		return d, false
	}
	sum, err := subtle.ComputeHash(c.sha256, []byte(token))
	if err != nil || len(sum) != len(d) {
		return d, false
	}
	return digest(sum), true
}

func (c *cache) shard(d digest) *cacheShard {
	return &c.shards[int(d[0])&(len(c.shards)-1)]
}

// expired reports whether exp has passed at now, as Tink's validator
// judges it: a token is valid while exp is after now - skew.
func expired(exp, now time.Time, skew time.Duration) bool {
	return !exp.After(now.Add(-skew))
}

// stale reports an entry whose token expired or whose CacheTTL passed.
func (c *cache) stale(s *cacheSlot, now time.Time) bool {
	return !now.Before(s.until) || expired(s.caller.Expires, now, c.skew)
}

// get returns the caller cached for d. An entry whose token has expired is
// removed and reported as expired: the token is refused. An entry whose
// CacheTTL has passed is removed and reported as absent: the token is
// verified again.
func (c *cache) get(d digest, now time.Time) (caller *Caller, isExpired bool) {
	sh := c.shard(d)
	sh.mu.RLock()
	i, ok := sh.index[d]
	var until time.Time
	if ok {
		s := &sh.slots[i]
		caller, until = s.caller, s.until
		if !s.used.Load() {
			s.used.Store(true)
		}
	}
	sh.mu.RUnlock()
	switch {
	case !ok:
		return nil, false
	case expired(caller.Expires, now, c.skew):
		sh.remove(d, caller)
		return nil, true
	case !now.Before(until):
		sh.remove(d, caller)
		return nil, false
	}
	return caller, false
}

// put caches caller for d until the CacheTTL passes, from now.
func (c *cache) put(d digest, caller *Caller, now time.Time) {
	sh := c.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[d]
	switch {
	case ok:
	case len(sh.slots) < sh.max:
		sh.slots = append(sh.slots, cacheSlot{})
		i = len(sh.slots) - 1
	default:
		i = sh.victim(c, now)
		delete(sh.index, sh.slots[i].key)
	}
	s := &sh.slots[i]
	s.key, s.caller, s.until = d, caller, now.Add(c.ttl)
	s.used.Store(false)
	sh.index[d] = i
}

// victim turns the CLOCK hand to the slot to evict. The hand stops within
// two turns: the first clears every mark. Called with the lock held.
func (sh *cacheShard) victim(c *cache, now time.Time) int {
	for {
		i := sh.hand
		sh.hand = (sh.hand + 1) % len(sh.slots)
		s := &sh.slots[i]
		if c.stale(s, now) || !s.used.Swap(false) {
			return i
		}
	}
}

// remove deletes the entry of d if it still holds caller (a concurrent
// put may have replaced it), moving the last slot into its place.
func (sh *cacheShard) remove(d digest, caller *Caller) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[d]
	if !ok || sh.slots[i].caller != caller {
		return
	}
	delete(sh.index, d)
	last := len(sh.slots) - 1
	if i != last {
		s, l := &sh.slots[i], &sh.slots[last]
		s.key, s.caller, s.until = l.key, l.caller, l.until
		s.used.Store(l.used.Load())
		sh.index[s.key] = i
	}
	sh.slots[last].caller = nil
	sh.slots = sh.slots[:last]
	if sh.hand >= len(sh.slots) {
		sh.hand = 0
	}
}

// len returns the number of entries.
func (c *cache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.index)
		sh.mu.RUnlock()
	}
	return n
}

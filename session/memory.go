package session

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxSessions bounds the sessions a Memory store holds.
const DefaultMaxSessions = 1 << 20

// Memory is a Store in this process's memory: the default, for one
// instance. Its state is lost on restart (a session then counts from its
// token's auth_time or iat); replicas need Redis.
type Memory struct {
	max int

	mu        sync.Mutex
	sessions  map[string]*memSession
	revoked   map[revKey]memMark
	lastSweep time.Time
}

type memSession struct {
	first, last time.Time
	revoked     bool
	expires     time.Time
}

type memMark struct{ at, expires time.Time }

// revKey names what a revocation reaches: an org (User ""), a user in
// every org (Org ""), or a user of an org.
type revKey struct{ Org, User string }

// NewMemory returns an empty store holding at most max sessions
// (DefaultMaxSessions when max <= 0): past that, a new session is
// refused with ErrFull until older ones expire.
func NewMemory(max int) *Memory {
	if max <= 0 {
		max = DefaultMaxSessions
	}
	return &Memory{max: max, sessions: map[string]*memSession{}, revoked: map[revKey]memMark{}}
}

// sweepEvery is how often the store drops what it no longer needs.
const sweepEvery = time.Minute

// Use implements Store.
func (m *Memory) Use(_ context.Context, u Use) (Verdict, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(u.Now, false)
	s := m.sessions[u.Ref]
	if s != nil && !u.Now.Before(s.expires) {
		delete(m.sessions, u.Ref)
		s = nil
	}
	var first, last time.Time
	revoked := false
	if s != nil {
		first, last, revoked = s.first, s.last, s.revoked
	}
	begun := start(u.Start, first, u.Now)
	var v Verdict
	if len(m.revoked) == 0 {
		v = judge(u, begun, last, revoked)
	} else {
		v = judge(u, begun, last, revoked, m.mark(revKey{Org: u.Org}, u.Now), m.mark(revKey{u.Org, u.User}, u.Now), m.mark(revKey{User: u.User}, u.Now))
	}
	if v != Live {
		return v, nil
	}
	if s == nil {
		if len(m.sessions) >= m.max {
			m.sweep(u.Now, true)
			if len(m.sessions) >= m.max {
				return 0, ErrFull
			}
		}
		s = &memSession{}
		m.sessions[u.Ref] = s
	}
	s.first = begun
	if u.Now.After(s.last) {
		s.last = u.Now
	}
	s.expires = u.Now.Add(u.Limits.Keep())
	return Live, nil
}

// mark is the time of the revocation under key, zero for none.
func (m *Memory) mark(key revKey, now time.Time) time.Time {
	r, ok := m.revoked[key]
	if !ok || !now.Before(r.expires) {
		return time.Time{}
	}
	return r.at
}

// Revoke implements Store.
func (m *Memory) Revoke(_ context.Context, r Revocation) error {
	if err := r.Check(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	expires := r.At.Add(r.Keep)
	if r.Ref != "" {
		s := m.sessions[r.Ref]
		if s == nil {
			s = &memSession{}
			m.sessions[r.Ref] = s // may pass max: a revocation is never refused
		}
		s.revoked = true
		s.expires = later(s.expires, expires)
		return nil
	}
	key := revKey{r.Org, r.User}
	old := m.revoked[key]
	if r.At.After(old.at) {
		m.revoked[key] = memMark{at: r.At, expires: later(old.expires, expires)}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sweep drops expired sessions and revocations, at most every sweepEvery
// unless forced.
func (m *Memory) sweep(now time.Time, force bool) {
	if !force && now.Sub(m.lastSweep) < sweepEvery {
		return
	}
	m.lastSweep = now
	for k, s := range m.sessions {
		if !now.Before(s.expires) {
			delete(m.sessions, k)
		}
	}
	for k, r := range m.revoked {
		if !now.Before(r.expires) {
			delete(m.revoked, k)
		}
	}
}

// Len is how many sessions the store holds, expired or not.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// Ping implements Store: memory always answers.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }

package policy

import (
	"fmt"
	"net/url"
	"time"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/refusal"
	"github.com/phiguard/phiguard/session"
)

// Defaults of the session limits of HIPAA orgs.
const (
	DefaultSessionIdle     = 15 * time.Minute
	DefaultSessionLifetime = 12 * time.Hour
)

// State stores.
const (
	StoreMemory = "memory"
	StoreRedis  = "redis"
)

// Refusal codes of session limits, as clients see them.
const (
	CodeSessionIdle    = "session_idle_timeout"
	CodeSessionExpired = "session_expired"
	CodeSessionRevoked = "session_revoked"
)

// compileSessionLimits gives orgs[i] its session limits when it is in
// HIPAA mode or sets one. Run after the org's HIPAA mode is known.
func (p *Policy) compileSessionLimits(ps *problems, i int) {
	o, h := &p.File.Orgs[i], &p.File.HIPAA
	_, hipaa := p.hipaa[o.ID]
	if !hipaa && o.IdleTimeout == nil && o.AbsoluteTimeout == nil {
		return
	}
	var l session.Limits
	if hipaa {
		l = session.Limits{Idle: DefaultSessionIdle, Absolute: DefaultSessionLifetime}
		if h.IdleTimeout != nil {
			l.Idle = *h.IdleTimeout
		}
		if h.AbsoluteTimeout != nil {
			l.Absolute = *h.AbsoluteTimeout
		}
	}
	if o.IdleTimeout != nil {
		l.Idle = *o.IdleTimeout
	}
	if o.AbsoluteTimeout != nil {
		l.Absolute = *o.AbsoluteTimeout
	}
	path := fmt.Sprintf("orgs[%d]", i)
	switch {
	case l.Idle < 0 || l.Absolute < 0:
		ps.add(path, "idle_timeout and absolute_timeout must not be negative")
	case l.Absolute > 0 && l.Idle >= l.Absolute:
		ps.add(path+".idle_timeout", "%s is not shorter than the absolute lifetime (%s): it would never end a session", l.Idle, l.Absolute)
	}
	p.sessions[o.ID] = l
}

func (p *Policy) compileState(ps *problems) {
	st := &p.File.State
	if st.Store == "" {
		st.Store = StoreMemory
	}
	if st.MaxSessions < 0 {
		ps.add("state.max_sessions", "must not be negative")
	}
	if st.MaxSessions == 0 {
		st.MaxSessions = session.DefaultMaxSessions
	}
	h := p.File.HIPAA
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{{"hipaa.idle_timeout", h.IdleTimeout}, {"hipaa.absolute_timeout", h.AbsoluteTimeout}} {
		if d.v != nil && *d.v < 0 {
			ps.add(d.name, "must not be negative")
		}
	}
	switch st.Store {
	case StoreMemory:
		if st.Redis != nil {
			ps.add("state.redis", "set, but state.store is memory: say store: redis to use it")
		}
	case StoreRedis:
		r := st.Redis
		if r == nil || r.URL == "" {
			ps.add("state.redis.url", "required with store: redis (redis://host:6379/0)")
			return
		}
		u, err := url.Parse(r.URL)
		switch {
		case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "":
			ps.add("state.redis.url", "want redis://host:port[/db] or rediss://…")
		case u.User != nil && func() bool { _, ok := u.User.Password(); return ok }():
			ps.add("state.redis.url", "holds a password: the policy is no place for it; name an environment variable in password_env")
		}
		if r.Timeout < 0 {
			ps.add("state.redis.timeout", "must not be negative")
		}
		if r.Timeout == 0 {
			r.Timeout = session.DefaultRedisTimeout
		}
		if r.KeyPrefix == "" {
			r.KeyPrefix = "phiguard:"
		}
	default:
		ps.add("state.store", "want memory or redis, got %q", st.Store)
	}
}

// SessionLimits returns the session limits of org, and whether its
// sessions are tracked at all (HIPAA mode, or limits set).
func (p *Policy) SessionLimits(org string) (session.Limits, bool) {
	l, ok := p.sessions[org]
	return l, ok
}

// TracksSessions reports whether any org's sessions are tracked.
func (p *Policy) TracksSessions() bool { return len(p.sessions) > 0 }

// SessionKeep is how long a revocation of org ("" for every org: a
// user's across orgs) must be kept: the longest any session it reaches
// can live.
func (p *Policy) SessionKeep(org string) time.Duration {
	if l, ok := p.sessions[org]; ok && org != "" {
		return l.Keep()
	}
	keep := session.Limits{}.Keep()
	for _, l := range p.sessions {
		keep = max(keep, l.Keep())
	}
	return keep
}

// SessionUse is the store's question about caller c's request at now.
func SessionUse(c *identity.Caller, l session.Limits, now time.Time) session.Use {
	start := c.AuthTime
	if start.IsZero() {
		start = c.IssuedAt
	}
	return session.Use{Org: c.Org, User: c.User, Ref: c.Session, Start: start, Now: now, Limits: l}
}

// SessionRefusal is the refusal of a session the store ended; nil for a
// live one.
func SessionRefusal(v session.Verdict) error {
	switch v {
	case session.Live:
		return nil
	case session.Idle:
		return &refusal.Error{Kind: refusal.Unauthenticated, Code: CodeSessionIdle,
			Reason: "the session was idle past this organization's limit and was logged off; sign in again"}
	case session.Expired:
		return &refusal.Error{Kind: refusal.Unauthenticated, Code: CodeSessionExpired,
			Reason: "the session reached this organization's maximum lifetime; sign in again"}
	}
	return &refusal.Error{Kind: refusal.Unauthenticated, Code: CodeSessionRevoked,
		Reason: "the session was revoked; sign in again"}
}

// Package session enforces automatic logoff on top of the identity
// provider's tokens: an idle limit and an absolute lifetime per session,
// and revocation of an org's, a user's or one session's logins now (the
// "remote wipe" of a lost device).
//
// What phiguard knows of sessions lives behind Store, with two
// implementations: Memory (one process) and Redis (replicas agree). A
// store that cannot answer is an error, and the caller refuses the
// request: a session is never let through because its state is unknown.
package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phiguard/phiguard/identity"
)

// Limits are an org's session limits. Zero turns a limit off.
type Limits struct {
	// Idle ends a session that made no request for this long.
	Idle time.Duration
	// Absolute ends a session this long after it began, however active.
	Absolute time.Duration
}

// Keep is how long a store must remember a session after its last use,
// and a revocation after it was made, for these limits: the longest a
// session can live. Past it, a session that began before a revocation
// has outlived its absolute lifetime anyway.
func (l Limits) Keep() time.Duration {
	switch {
	case l.Absolute > 0:
		return max(l.Absolute, l.Idle)
	default:
		return max(DefaultKeep, l.Idle)
	}
}

// DefaultKeep is how long a session is remembered when its org sets no
// absolute lifetime.
const DefaultKeep = 30 * 24 * time.Hour

// Use is one request of a session.
type Use struct {
	// Org and User are the caller's; revocations of either apply.
	Org, User string
	// Ref is the session's reference (identity.Caller.Session).
	Ref string
	// Start is the earliest time the credential itself shows the session
	// began (its auth_time, else its iat); zero when it does not tell.
	// The store takes the earlier of it and the first use it saw.
	Start time.Time
	// Now is the time of the request.
	Now    time.Time
	Limits Limits
}

// Verdict is what a store says of a session's use.
type Verdict uint8

// Verdicts. Every one but Live ends the session for good: later uses get
// the same answer (or, once the store has forgotten it, Expired).
const (
	Live Verdict = iota
	Idle
	Expired
	Revoked
)

func (v Verdict) String() string {
	switch v {
	case Live:
		return "live"
	case Idle:
		return "idle"
	case Expired:
		return "expired"
	case Revoked:
		return "revoked"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Revocation ends sessions that began at or before At: all of an org's
// (Org alone), a user's in one org (Org and User), a user's in every org
// (User alone), or one session (Ref, whatever its org).
type Revocation struct {
	Org, User, Ref string
	At             time.Time
	// Keep is how long the revocation must be remembered (Limits.Keep
	// of the orgs it reaches).
	Keep time.Duration
}

// Check reports what is wrong with r, if anything.
func (r Revocation) Check() error {
	switch {
	case r.Ref != "" && (r.Org != "" || r.User != ""):
		return errors.New("revoke one session, or an org's or a user's sessions, not both")
	case r.Ref == "" && r.Org == "" && r.User == "":
		return errors.New("say whose sessions to revoke: an org, a user, or one session")
	case r.Ref != "" && !identity.ValidSessionRef(r.Ref):
		return fmt.Errorf("%q is not a session reference (ses_… as audit records show it)", r.Ref)
	case r.At.IsZero():
		return errors.New("a revocation needs its time")
	case r.Keep <= 0:
		return errors.New("a revocation needs how long to be kept")
	}
	return nil
}

// Store keeps session state. Implementations are safe for concurrent use.
type Store interface {
	// Use decides u and, when the session is live, records u.Now as its
	// last use. An error means the store could not tell: the caller
	// refuses the request.
	Use(ctx context.Context, u Use) (Verdict, error)
	// Revoke records r: sessions it reaches are Revoked from then on.
	Revoke(ctx context.Context, r Revocation) error
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	Close() error
}

// ErrFull is the memory store refusing a new session it has no room for.
var ErrFull = errors.New("session store is full")

// start is the session's start: the earlier of what the credential says
// (zero: nothing) and what the store saw first (zero: never), else now.
func start(claimed, first, now time.Time) time.Time {
	s := now
	if !claimed.IsZero() && claimed.Before(s) {
		s = claimed
	}
	if !first.IsZero() && first.Before(s) {
		s = first
	}
	return s
}

// judge is the one rule both stores apply, in this order: a revoked
// session (revoked, or begun at or before a revocation of its org or
// user); one past its absolute lifetime; one idle for too long.
func judge(u Use, start, last time.Time, revoked bool, revocations ...time.Time) Verdict {
	if revoked {
		return Revoked
	}
	for _, at := range revocations {
		if !at.IsZero() && !start.After(at) {
			return Revoked
		}
	}
	if u.Limits.Absolute > 0 && u.Now.Sub(start) >= u.Limits.Absolute {
		return Expired
	}
	if u.Limits.Idle > 0 && !last.IsZero() && u.Now.Sub(last) >= u.Limits.Idle {
		return Idle
	}
	return Live
}

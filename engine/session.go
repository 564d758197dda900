package engine

import (
	"context"
	"errors"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
	"github.com/phiguard/phiguard/session"
)

var (
	errStateUnavailable = &refusal.Error{Kind: refusal.StateUnavailable, Reason: "session state could not be checked; retry shortly"}
	errStateFull        = &refusal.Error{Kind: refusal.StateUnavailable, Reason: "no room for another session; retry shortly"}
)

// checkSession applies the session limits and revocations of the
// caller's org, when the policy tracks its sessions, and records the use
// of a live session. A store that cannot answer refuses the request.
func (e *Engine) checkSession(ctx context.Context, c *identity.Caller) error {
	if c == nil {
		return nil
	}
	limits, ok := e.pol.SessionLimits(c.Org)
	if !ok {
		return nil
	}
	v, err := e.sessions.Use(ctx, policy.SessionUse(c, limits, e.now()))
	if err != nil {
		if errors.Is(err, session.ErrFull) {
			e.log.Error("session store full: new sessions refused", "max_sessions", e.pol.File.State.MaxSessions)
			return errStateFull
		}
		e.log.Error("session store did not answer: request refused", "err_kind", ErrorKind(err))
		return errStateUnavailable
	}
	return policy.SessionRefusal(v)
}

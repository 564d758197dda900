package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/redistest"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
	"github.com/phiguard/phiguard/session"
)

const sessionPolicy = `version: 1
ingress: {upstream: "http://app.invalid"}
identity: {jwt: {jwks: unused.json}}
orgs:
  - {id: org_a, hipaa: true}
  - {id: org_b}
  - {id: org_c, idle_timeout: 1h, absolute_timeout: 0s}
routes:
  - name: messages
    match: {path: "/m"}
`

// sessionCallers verifies "Bearer ORG:USER:SID" as a login with a second
// factor, issued at iat when the token ends in "@-DURATION" (before t0).
type sessionCallers struct{ t0 time.Time }

func (s sessionCallers) Verify(_ context.Context, auth []string) (*identity.Caller, error) {
	if len(auth) != 1 {
		return nil, identity.ErrNoToken
	}
	tok, ago, _ := strings.Cut(strings.TrimPrefix(auth[0], "Bearer "), "@")
	parts := strings.Split(tok, ":")
	if len(parts) != 3 {
		return nil, identity.ErrInvalidToken
	}
	c := &identity.Caller{Org: parts[0], User: parts[1], Role: "agent", MFA: true, Session: identity.SessionRef("sid:" + parts[2])}
	if ago != "" {
		d, err := time.ParseDuration(ago)
		if err != nil {
			return nil, identity.ErrInvalidToken
		}
		c.IssuedAt = s.t0.Add(-d)
	}
	return c, nil
}

// TestSessionLimits: automatic logoff and revocation through the engine,
// with an injected clock, over the memory store and the Redis store: each
// step's status, error code and audit record (with the session's
// reference, never its id).
func TestSessionLimits(t *testing.T) {
	t.Run("memory", func(t *testing.T) { sessionLimits(t, session.NewMemory(0)) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		st, err := session.NewRedis(session.RedisOptions{URL: srv.URL(0)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		sessionLimits(t, st)
	})
}

func sessionLimits(t *testing.T, st session.Store) {
	pol, err := policy.Parse("p.yaml", []byte(sessionPolicy))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	now := t0
	aud := &records{}
	eng, err := New(Options{Policy: pol, Verifier: sessionCallers{t0}, Auditor: aud, Sessions: st, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keep := pol.SessionKeep("org_a")
	min := time.Minute
	for i, c := range []struct {
		at     time.Duration
		token  string
		revoke *session.Revocation
		status int
		code   string
	}{
		{at: 0, token: "org_a:alice:s1", status: 200},
		{at: 14 * min, token: "org_a:alice:s1", status: 200},
		{at: 29 * min, token: "org_a:alice:s1", status: 401, code: "session_idle_timeout"},
		{at: 30 * min, token: "org_a:alice:s1", status: 401, code: "session_idle_timeout"},
		{at: 30 * min, token: "org_a:alice:s2", status: 200}, // signed in again
		{at: 30 * min, token: "org_a:alice:s3@12h", status: 401, code: "session_expired"},
		{at: 30 * min, token: "org_b:bob:s4@100h", status: 200}, // org_b tracks nothing
		{at: 31 * min, token: "org_a:carla:s5", status: 200},
		{at: 32 * min, revoke: &session.Revocation{Org: "org_a", User: "carla", At: t0.Add(32 * min), Keep: keep}},
		{at: 33 * min, token: "org_a:carla:s5", status: 401, code: "session_revoked"},
		{at: 33 * min, token: "org_a:alice:s2", status: 200},
		{at: 34 * min, revoke: &session.Revocation{Ref: identity.SessionRef("sid:s2"), At: t0.Add(34 * min), Keep: keep}},
		{at: 35 * min, token: "org_a:alice:s2", status: 401, code: "session_revoked"},
		{at: 35 * min, token: "org_a:alice:s6", status: 200},
		{at: 36 * min, revoke: &session.Revocation{Org: "org_a", At: t0.Add(36 * min), Keep: keep}},
		{at: 37 * min, token: "org_a:alice:s6", status: 401, code: "session_revoked"},
		{at: 37 * min, token: "org_a:alice:s7@2m", status: 401, code: "session_revoked"}, // a token from before the revocation
		{at: 37 * min, token: "org_a:alice:s8", status: 200},
		{at: 37 * min, token: "org_c:cy:s9", status: 200},
		{at: 37*min + 59*min, token: "org_c:cy:s9", status: 200},
		{at: 200 * time.Hour, token: "org_c:cy:s9", status: 401, code: "session_idle_timeout"},
	} {
		now = t0.Add(c.at)
		if c.revoke != nil {
			if err := st.Revoke(ctx, *c.revoke); err != nil {
				t.Fatal(err)
			}
			continue
		}
		req := request("GET", "/m", "")
		req.Header.Set("Authorization", "Bearer "+c.token)
		x, err := eng.Begin(ctx, req)
		if err == nil {
			if c.status != 200 {
				t.Errorf("step %d (%s at %v): allowed, want %d %s", i, c.token, c.at, c.status, c.code)
			}
			if err := x.Allow(ctx, 200); err != nil {
				t.Fatal(err)
			}
			x.Close()
			continue
		}
		ref := x.Refuse(ctx, err)
		x.Close()
		if status := Status(ref.Kind); status != c.status || ref.ClientCode() != c.code {
			t.Errorf("step %d (%s at %v): %d %s (%v), want %d %s", i, c.token, c.at, status, ref.ClientCode(), err, c.status, c.code)
			continue
		}
		rec := aud.last(t)
		org, user, _ := strings.Cut(c.token, ":")
		user, sid, _ := strings.Cut(user, ":")
		sid, _, _ = strings.Cut(sid, "@")
		if rec.Status != c.status || rec.Decision != audit.DecisionDeny || rec.Org != org || rec.User != user ||
			rec.Session != identity.SessionRef("sid:"+sid) || !strings.Contains(rec.Reason, "sign in again") || strings.Contains(string(rec.AppendJSON(nil)), sid+`"`) {
			t.Errorf("step %d: record %+v", i, rec)
		}
	}
}

// TestSessionStoreDown: when the store cannot answer, a tracked org's
// caller is refused with 503 state_unavailable (audited as an error);
// a full memory store, the same. An untracked org is not asked about.
func TestSessionStoreDown(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte(sessionPolicy))
	if err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	st, err := session.NewRedis(session.RedisOptions{URL: srv.URL(0), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv.Stop()
	ctx := context.Background()
	for name, store := range map[string]session.Store{"redis down": st, "memory full": fullMemory(t)} {
		aud := &records{}
		eng, err := New(Options{Policy: pol, Verifier: sessionCallers{time.Now()}, Auditor: aud, Sessions: store})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{"org_a:alice:s1", "org_b:bob:s2"} {
			req := request("GET", "/m", "")
			req.Header.Set("Authorization", "Bearer "+tok)
			x, err := eng.Begin(ctx, req)
			tracked := strings.HasPrefix(tok, "org_a")
			if !tracked {
				if err != nil {
					t.Errorf("%s: %s refused: %v", name, tok, err)
				}
				x.Close()
				continue
			}
			ref, _ := refusal.As(err)
			if ref == nil || Status(ref.Kind) != 503 || ref.ClientCode() != "state_unavailable" {
				t.Errorf("%s: %s: %v, want 503 state_unavailable", name, tok, err)
				x.Close()
				continue
			}
			x.Refuse(ctx, err)
			x.Close()
			if rec := aud.last(t); rec.Decision != audit.DecisionError || rec.Status != 503 {
				t.Errorf("%s: record %+v", name, rec)
			}
		}
	}
}

// fullMemory is a memory store with no room for another session.
func fullMemory(t *testing.T) session.Store {
	m := session.NewMemory(1)
	if _, err := m.Use(context.Background(), session.Use{Org: "org_x", User: "u", Ref: identity.SessionRef("sid:x"), Now: time.Now(), Limits: session.Limits{Idle: time.Hour, Absolute: 2 * time.Hour}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSessionStoreKeptAcrossReload: an engine built with no store keeps
// sessions in memory, and its successor (a policy reload) keeps the same
// store, so a reload logs no one off and forgets no idle session.
func TestSessionStoreKeptAcrossReload(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte(sessionPolicy))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	now := t0
	clock := func() time.Time { return now }
	first, err := New(Options{Policy: pol, Verifier: sessionCallers{t0}, Auditor: &records{}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	next, err := first.Successor(Options{Policy: pol, Verifier: sessionCallers{t0}, Auditor: &records{}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func(e *Engine) error {
		req := request("GET", "/m", "")
		req.Header.Set("Authorization", "Bearer org_a:alice:s1")
		x, err := e.Begin(ctx, req)
		x.Close()
		return err
	}
	if err := get(first); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(20 * time.Minute)
	if ref, _ := refusal.As(get(next)); ref == nil || ref.ClientCode() != "session_idle_timeout" {
		t.Fatalf("after the reload: %v, want session_idle_timeout", ref)
	}
}

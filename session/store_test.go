package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/redistest"
)

// The one suite every store passes: the in-memory store, and the Redis
// store against a real redis-server.
func TestMemoryStore(t *testing.T) {
	storeSuite(t, func(t *testing.T) Store { return NewMemory(0) })
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	storeSuite(t, func(t *testing.T) Store {
		r, err := NewRedis(RedisOptions{URL: srv.URL(0), Prefix: t.Name() + ":"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	})
}

var (
	t0     = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	limits = Limits{Idle: 15 * time.Minute, Absolute: 12 * time.Hour}
)

// use is a use of session id by org/user at t0+at.
func use(org, user, id string, at time.Duration) Use {
	return Use{Org: org, User: user, Ref: identity.SessionRef(id), Now: t0.Add(at), Limits: limits}
}

type step struct {
	u    Use
	rev  *Revocation // instead of u
	want Verdict
}

func revoke(org, user, id string, at time.Duration) step {
	r := &Revocation{Org: org, User: user, At: t0.Add(at), Keep: limits.Keep()}
	if id != "" {
		r.Ref = identity.SessionRef(id)
	}
	return step{rev: r}
}

func storeSuite(t *testing.T, open func(*testing.T) Store) {
	min := time.Minute
	withStart := func(u Use, start time.Duration) Use { u.Start = t0.Add(start); return u }
	withLimits := func(u Use, l Limits) Use { u.Limits = l; return u }
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"a new session is live, and so is its next use", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: use("org_a", "alice", "sid:1", 14*min), want: Live},
		}},
		{"idle for the limit ends it, for good", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: use("org_a", "alice", "sid:1", 15*min), want: Idle},
			{u: use("org_a", "alice", "sid:1", 15*min+time.Second), want: Idle},
		}},
		{"activity keeps it alive past the idle limit", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: use("org_a", "alice", "sid:1", 10*min), want: Live},
			{u: use("org_a", "alice", "sid:1", 20*min), want: Live},
			{u: use("org_a", "alice", "sid:1", 30*min), want: Live},
			{u: use("org_a", "alice", "sid:1", 44*min), want: Live},
		}},
		{"the absolute lifetime ends it however active", func() []step {
			var s []step
			for at := time.Duration(0); at < 12*time.Hour; at += 10 * min {
				s = append(s, step{u: use("org_a", "alice", "sid:1", at), want: Live})
			}
			return append(s, step{u: use("org_a", "alice", "sid:1", 12*time.Hour), want: Expired},
				step{u: use("org_a", "alice", "sid:1", 12*time.Hour+min), want: Expired})
		}()},
		{"a credential that shows an older start counts from it", []step{
			{u: withStart(use("org_a", "alice", "sid:1", 0), -12*time.Hour), want: Expired},
			{u: withStart(use("org_a", "alice", "sid:2", 0), -11*time.Hour-50*min), want: Live},
			{u: use("org_a", "alice", "sid:2", 10*min), want: Expired},
		}},
		{"a later credential start does not renew the session", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: withLimits(withStart(use("org_a", "alice", "sid:1", 11*time.Hour+50*min), 11*time.Hour+50*min), Limits{Absolute: 12 * time.Hour}), want: Live},
			{u: withLimits(withStart(use("org_a", "alice", "sid:1", 12*time.Hour), 12*time.Hour), Limits{Absolute: 12 * time.Hour}), want: Expired},
		}},
		{"limits off: never idle, never expired", []step{
			{u: withLimits(use("org_b", "bob", "sid:1", 0), Limits{}), want: Live},
			{u: withLimits(use("org_b", "bob", "sid:1", 100*time.Hour), Limits{}), want: Live},
		}},
		{"revoking an org ends its sessions that began by then, not later ones or other orgs'", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: use("org_a", "carla", "sid:2", min), want: Live},
			{u: use("org_b", "bob", "sid:3", min), want: Live},
			revoke("org_a", "", "", 2*min),
			{u: use("org_a", "alice", "sid:1", 3*min), want: Revoked},
			{u: use("org_a", "carla", "sid:2", 3*min), want: Revoked},
			{u: use("org_b", "bob", "sid:3", 3*min), want: Live},
			{u: use("org_a", "alice", "sid:4", 3*min), want: Live}, // signed in again
			{u: withStart(use("org_a", "carla", "sid:5", 3*min), min), want: Revoked},
		}},
		{"revoking a user of an org ends that user's sessions there only", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: use("org_a", "alice", "sid:2", 0), want: Live},
			{u: use("org_a", "carla", "sid:3", 0), want: Live},
			{u: use("org_b", "alice", "sid:4", 0), want: Live},
			revoke("org_a", "alice", "", min),
			{u: use("org_a", "alice", "sid:1", 2*min), want: Revoked},
			{u: use("org_a", "alice", "sid:2", 2*min), want: Revoked},
			{u: use("org_a", "carla", "sid:3", 2*min), want: Live},
			{u: use("org_b", "alice", "sid:4", 2*min), want: Live},
		}},
		{"revoking a user alone reaches every org", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: use("org_b", "alice", "sid:2", 0), want: Live},
			{u: use("org_b", "bob", "sid:3", 0), want: Live},
			revoke("", "alice", "", min),
			{u: use("org_a", "alice", "sid:1", 2*min), want: Revoked},
			{u: use("org_b", "alice", "sid:2", 2*min), want: Revoked},
			{u: use("org_b", "bob", "sid:3", 2*min), want: Live},
		}},
		{"revoking one session ends it alone, seen or not", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			{u: use("org_a", "alice", "sid:2", 0), want: Live},
			revoke("", "", "sid:1", min),
			revoke("", "", "sid:never-seen", min),
			{u: use("org_a", "alice", "sid:1", 2*min), want: Revoked},
			{u: use("org_a", "alice", "sid:2", 2*min), want: Live},
			{u: use("org_a", "alice", "sid:never-seen", 2*min), want: Revoked},
		}},
		{"an earlier revocation does not undo a later one", []step{
			{u: use("org_a", "alice", "sid:1", 5*min), want: Live},
			revoke("org_a", "", "", 6*min),
			revoke("org_a", "", "", 2*min),
			{u: use("org_a", "alice", "sid:1", 7*min), want: Revoked},
		}},
		{"a revoked session is not brought back by activity elsewhere", []step{
			{u: use("org_a", "alice", "sid:1", 0), want: Live},
			revoke("org_a", "alice", "", min),
			{u: use("org_a", "alice", "sid:2", 2*min), want: Live},
			{u: use("org_a", "alice", "sid:1", 3*min), want: Revoked},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			for i, st := range c.steps {
				if st.rev != nil {
					if err := s.Revoke(ctx, *st.rev); err != nil {
						t.Fatalf("step %d: revoke: %v", i, err)
					}
					continue
				}
				got, err := s.Use(ctx, st.u)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got != st.want {
					t.Fatalf("step %d (%s/%s at %v): %v, want %v", i, st.u.Org, st.u.User, st.u.Now.Sub(t0), got, st.want)
				}
			}
		})
	}
	t.Run("bad revocations are refused and change nothing", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		if v, err := s.Use(ctx, use("org_a", "alice", "sid:1", 0)); err != nil || v != Live {
			t.Fatal(v, err)
		}
		for _, r := range []Revocation{
			{At: t0, Keep: time.Hour},
			{Org: "org_a", Ref: identity.SessionRef("sid:1"), At: t0, Keep: time.Hour},
			{Ref: "sid:1", At: t0, Keep: time.Hour},
			{Org: "org_a", Keep: time.Hour},
			{Org: "org_a", At: t0},
		} {
			if err := s.Revoke(ctx, r); err == nil {
				t.Errorf("%+v accepted", r)
			}
		}
		if v, err := s.Use(ctx, use("org_a", "alice", "sid:1", time.Minute)); err != nil || v != Live {
			t.Fatal(v, err)
		}
	})
	t.Run("concurrent uses of one session", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Go(func() {
				v, err := s.Use(context.Background(), use("org_a", "alice", "sid:1", time.Duration(i)*time.Second))
				if err == nil && v != Live {
					err = fmt.Errorf("use %d: %v", i, v)
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// The last use counts whatever order the uses arrived in.
		if v, _ := s.Use(context.Background(), use("org_a", "alice", "sid:1", 39*time.Second+14*time.Minute)); v != Live {
			t.Errorf("after the last use: %v", v)
		}
	})
}

// TestRedisUnreachableFailsClosed: a store whose server is gone answers
// every call with an error, never with Live.
func TestRedisUnreachableFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	r, err := NewRedis(RedisOptions{URL: srv.URL(0), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if v, err := r.Use(ctx, use("org_a", "alice", "sid:1", 0)); err != nil || v != Live {
		t.Fatalf("with the server up: %v %v", v, err)
	}
	srv.Stop()
	if v, err := r.Use(ctx, use("org_a", "alice", "sid:1", time.Minute)); err == nil {
		t.Errorf("server down: Use answered %v with no error", v)
	}
	if err := r.Revoke(ctx, Revocation{Org: "org_a", At: t0, Keep: time.Hour}); err == nil {
		t.Error("server down: Revoke succeeded")
	}
	if err := r.Ping(ctx); err == nil {
		t.Error("server down: Ping succeeded")
	}
}

func TestNewRedisBadURL(t *testing.T) {
	for _, u := range []string{"", "http://127.0.0.1:6379", "redis://127.0.0.1:6379/notadb"} {
		if _, err := NewRedis(RedisOptions{URL: u}); err == nil || !strings.Contains(err.Error(), "redis url") {
			t.Errorf("%q: %v", u, err)
		}
	}
}

// TestMemoryFull: past its bound, the memory store refuses new sessions
// (the request fails closed) but still serves known ones and revocations.
func TestMemoryFull(t *testing.T) {
	m := NewMemory(2)
	ctx := context.Background()
	for _, id := range []string{"sid:1", "sid:2"} {
		if v, err := m.Use(ctx, use("org_a", "alice", id, 0)); err != nil || v != Live {
			t.Fatal(v, err)
		}
	}
	if _, err := m.Use(ctx, use("org_a", "alice", "sid:3", 0)); !errors.Is(err, ErrFull) {
		t.Fatalf("a third session: %v, want ErrFull", err)
	}
	if v, err := m.Use(ctx, use("org_a", "alice", "sid:1", time.Minute)); err != nil || v != Live {
		t.Fatalf("a known session: %v %v", v, err)
	}
	if err := m.Revoke(ctx, Revocation{Ref: identity.SessionRef("sid:9"), At: t0, Keep: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// Once the first two are forgotten there is room again.
	later := use("org_a", "alice", "sid:3", limits.Keep()+time.Hour)
	if v, err := m.Use(ctx, later); err != nil || v != Live {
		t.Fatalf("after expiry: %v %v", v, err)
	}
}

// TestMemoryForgets: a session unused for Limits.Keep is forgotten; it
// then counts from what its credential shows, so an old login stays
// expired.
func TestMemoryForgets(t *testing.T) {
	m := NewMemory(0)
	ctx := context.Background()
	if v, _ := m.Use(ctx, withStartAt(use("org_a", "alice", "sid:1", 0), t0)); v != Live {
		t.Fatal(v)
	}
	if m.Len() != 1 {
		t.Fatalf("%d sessions held", m.Len())
	}
	back := withStartAt(use("org_a", "alice", "sid:1", limits.Keep()+2*sweepEvery), t0)
	if v, _ := m.Use(ctx, back); v != Expired {
		t.Fatalf("an old login after it was forgotten: %v, want expired", v)
	}
	if m.Len() != 0 {
		t.Fatalf("%d sessions held after the sweep", m.Len())
	}
}

func withStartAt(u Use, s time.Time) Use { u.Start = s; return u }

package consent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phiguard/phiguard/internal/redistest"
	"github.com/redis/go-redis/v9"
)

var (
	t0  = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	now = func() time.Time { return t0.Add(24 * time.Hour) } // the stores' clock in tests
)

// The one suite every store passes: the in-memory store, and the Redis
// store against a real redis-server.
func TestMemoryStore(t *testing.T) {
	storeSuite(t, func(t *testing.T) Store {
		m := NewMemory(0)
		m.now = now
		return m
	})
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	storeSuite(t, func(t *testing.T) Store {
		r, err := NewRedis(RedisOptions{URL: srv.URL(0), Prefix: t.Name() + ":"})
		if err != nil {
			t.Fatal(err)
		}
		r.now = now
		t.Cleanup(func() { r.Close() })
		return r
	})
}

// entry is ref's event in org at t0+at.
func entry(org, ref string, s State, at time.Duration) Entry {
	return Entry{Org: org, Ref: ref, State: s, At: t0.Add(at), Source: "keyword"}
}

// step records e (applied: what Record must answer), or with get set,
// checks that (e.Org, e.Ref) reads as e (Unknown: no entry).
type step struct {
	e       Entry
	get     bool
	applied bool
}

func record(e Entry, applied bool) step { return step{e: e, applied: applied} }
func get(e Entry) step                  { return step{e: e, get: true} }

func storeSuite(t *testing.T, open func(*testing.T) Store) {
	const a, b = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "h1:BBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	min := time.Minute
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"a number never recorded is unknown", []step{
			get(Entry{Org: "org_a", Ref: a}),
		}},
		{"a grant is kept, to the millisecond, with its source", []step{
			record(Entry{Org: "org_a", Ref: a, State: Granted, At: t0.Add(1500 * time.Microsecond), Source: "cli"}, true),
			get(Entry{Org: "org_a", Ref: a, State: Granted, At: t0.Add(time.Millisecond), Source: "cli"}),
		}},
		{"a later revocation replaces a grant", []step{
			record(entry("org_a", a, Granted, 0), true),
			record(entry("org_a", a, Revoked, min), true),
			get(entry("org_a", a, Revoked, min)),
		}},
		{"a later grant replaces a revocation", []step{
			record(entry("org_a", a, Revoked, 0), true),
			record(entry("org_a", a, Granted, min), true),
			get(entry("org_a", a, Granted, min)),
		}},
		{"an earlier event arriving late does not undo a later one", []step{
			record(entry("org_a", a, Revoked, 2*min), true),
			record(entry("org_a", a, Granted, min), false),
			get(entry("org_a", a, Revoked, 2*min)),
			record(entry("org_a", b, Granted, 2*min), true),
			record(entry("org_a", b, Revoked, min), false),
			get(entry("org_a", b, Granted, 2*min)),
		}},
		{"at equal times the new event wins", []step{
			record(entry("org_a", a, Granted, min), true),
			record(entry("org_a", a, Revoked, min), true),
			get(entry("org_a", a, Revoked, min)),
			record(entry("org_a", a, Granted, min), true),
			get(entry("org_a", a, Granted, min)),
		}},
		{"times within one millisecond are equal", []step{
			record(entry("org_a", a, Revoked, 900*time.Microsecond), true),
			record(entry("org_a", a, Granted, 100*time.Microsecond), true),
			get(entry("org_a", a, Granted, 0)),
		}},
		{"orgs are kept apart", []step{
			record(entry("org_a", a, Revoked, 0), true),
			get(Entry{Org: "org_b", Ref: a}),
			record(entry("org_b", a, Granted, -min), true),
			get(entry("org_a", a, Revoked, 0)),
			get(entry("org_b", a, Granted, -min)),
		}},
		{"an event dated past the store's clock counts at the clock's time", []step{
			record(entry("org_a", a, Granted, 48*time.Hour), true),
			get(Entry{Org: "org_a", Ref: a, State: Granted, At: now(), Source: "keyword"}),
			record(entry("org_a", a, Revoked, 24*time.Hour), true),
			get(entry("org_a", a, Revoked, 24*time.Hour)),
			record(entry("org_a", a, Granted, 24*time.Hour+MaxAhead), true), // within the allowed skew: kept as is
			get(entry("org_a", a, Granted, 24*time.Hour+MaxAhead)),
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			for i, st := range c.steps {
				if st.get {
					got, err := s.Get(ctx, st.e.Org, st.e.Ref)
					if err != nil {
						t.Fatalf("step %d: get: %v", i, err)
					}
					if !same(got, st.e) {
						t.Fatalf("step %d: got %v, want %v", i, got, st.e)
					}
					continue
				}
				applied, err := s.Record(ctx, st.e)
				if err != nil {
					t.Fatalf("step %d: record: %v", i, err)
				}
				if applied != st.applied {
					t.Fatalf("step %d: record %v: applied %v, want %v", i, st.e, applied, st.applied)
				}
			}
		})
	}
	t.Run("list is sorted by ref and limited", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		refs := []string{"h1:d", "h1:a", "h1:c", "h1:e", "h1:b"}
		for i, ref := range refs {
			for _, org := range []string{"org_a", "org_b"} {
				if _, err := s.Record(ctx, entry(org, ref, Granted, time.Duration(i)*time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := s.Record(ctx, entry("org_a", "h1:c", Revoked, time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			org   string
			limit int
			want  []string
		}{
			{"org_a", 0, []string{"h1:a", "h1:b", "h1:c", "h1:d", "h1:e"}},
			{"org_a", -1, []string{"h1:a", "h1:b", "h1:c", "h1:d", "h1:e"}},
			{"org_a", 2, []string{"h1:a", "h1:b"}},
			{"org_a", 5, []string{"h1:a", "h1:b", "h1:c", "h1:d", "h1:e"}},
			{"org_a", 9, []string{"h1:a", "h1:b", "h1:c", "h1:d", "h1:e"}},
			{"org_c", 0, []string{}},
		} {
			list, err := s.List(ctx, c.org, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, e := range list {
				if e.Org != c.org {
					t.Errorf("%s: an entry of %s", c.org, e.Org)
				}
				got = append(got, e.Ref)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("List(%s, %d): got %v, want %v", c.org, c.limit, got, c.want)
			}
		}
		list, err := s.List(ctx, "org_a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := entry("org_a", "h1:c", Revoked, time.Hour); !same(list[2], want) {
			t.Errorf("listed: got %v, want %v", list[2], want)
		}
	})
	t.Run("bad entries are refused and change nothing", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		good := entry("org_a", a, Granted, 0)
		if _, err := s.Record(ctx, good); err != nil {
			t.Fatal(err)
		}
		for _, c := range badEntries(entry("org_a", a, Revoked, time.Minute)) {
			if applied, err := s.Record(ctx, c.e); err == nil || applied {
				t.Errorf("%s: applied %v, err %v", c.name, applied, err)
			}
		}
		if got, err := s.Get(ctx, "org_a", a); err != nil || !same(got, good) {
			t.Errorf("after bad entries: got %v %v, want %v", got, err, good)
		}
		for _, c := range []struct{ org, ref string }{{"", a}, {"org:a", a}, {"org_a", ""}, {"org_a", "h1:a b"}, {"org_a", "+12025550123"}} {
			if got, err := s.Get(ctx, c.org, c.ref); err == nil {
				t.Errorf("Get(%q, %q): got %v, want an error", c.org, c.ref, got)
			}
		}
		for _, org := range []string{"", "org:a", "-org"} {
			if _, err := s.List(ctx, org, 0); err == nil {
				t.Errorf("List(%q): no error", org)
			}
		}
	})
	t.Run("concurrent records: the latest wins", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 50 {
			state := Granted
			if i%2 == 1 {
				state = Revoked
			}
			at := time.Duration((i*37)%50) * time.Second // every time once, out of order
			wg.Go(func() {
				if _, err := s.Record(context.Background(), entry("org_a", a, state, at)); err != nil {
					errs <- err
				}
			})
			wg.Go(func() {
				if _, err := s.Get(context.Background(), "org_a", a); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// 49s is (i*37)%50 for i = 17: odd, a revocation.
		want := entry("org_a", a, Revoked, 49*time.Second)
		if got, err := s.Get(context.Background(), "org_a", a); err != nil || !same(got, want) {
			t.Errorf("got %v %v, want %v", got, err, want)
		}
	})
	t.Run("ping", func(t *testing.T) {
		if err := open(t).Ping(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// same reports whether a and b are one entry (times compared as instants).
func same(a, b Entry) bool {
	return a.Org == b.Org && a.Ref == b.Ref && a.State == b.State && a.At.Equal(b.At) && a.Source == b.Source
}

type badEntry struct {
	name string
	e    Entry
}

// badEntries are good with one thing wrong each.
func badEntries(good Entry) []badEntry {
	with := func(f func(*Entry)) Entry { e := good; f(&e); return e }
	return []badEntry{
		{"no org", with(func(e *Entry) { e.Org = "" })},
		{"an org with ':'", with(func(e *Entry) { e.Org = "org:a" })},
		{"an org too long", with(func(e *Entry) { e.Org = strings.Repeat("o", 65) })},
		{"no ref", with(func(e *Entry) { e.Ref = "" })},
		{"a ref with a space", with(func(e *Entry) { e.Ref = "h1:AB CD" })},
		{"a ref with a newline", with(func(e *Entry) { e.Ref = "h1:AB\n" })},
		{"a ref too long", with(func(e *Entry) { e.Ref = "h1:" + strings.Repeat("A", 200) })},
		{"a ref that is a number", with(func(e *Entry) { e.Ref = "+12025550123" })},
		{"a ref that is a number as dialed", with(func(e *Entry) { e.Ref = "(202)555-0123" })},
		{"state unknown", with(func(e *Entry) { e.State = Unknown })},
		{"state out of range", with(func(e *Entry) { e.State = 7 })},
		{"no time", with(func(e *Entry) { e.At = time.Time{} })},
		{"the epoch", with(func(e *Entry) { e.At = time.Unix(0, 0) })},
		{"before the epoch", with(func(e *Entry) { e.At = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"no source", with(func(e *Entry) { e.Source = "" })},
		{"a source too long", with(func(e *Entry) { e.Source = strings.Repeat("s", MaxSource+1) })},
		{"a source with a control character", with(func(e *Entry) { e.Source = "cli\x00" })},
		{"a source not ASCII", with(func(e *Entry) { e.Source = "clé" })},
	}
}

func TestEntryCheck(t *testing.T) {
	good := entry("org_a", "h1:AAAA", Granted, 0)
	if err := good.Check(); err != nil {
		t.Fatalf("a good entry: %v", err)
	}
	for _, src := range []string{"keyword", "admin: jane's request", strings.Repeat("s", MaxSource)} {
		if e := (Entry{Org: "org_a", Ref: "h1:AAAA", State: Revoked, At: t0, Source: src}); e.Check() != nil {
			t.Errorf("source %q: %v", src, e.Check())
		}
	}
	for _, c := range badEntries(good) {
		t.Run(c.name, func(t *testing.T) {
			err := c.e.Check()
			if err == nil {
				t.Fatal("got no error")
			}
			if c.e.Ref != "" && strings.Contains(err.Error(), c.e.Ref) {
				t.Errorf("the error names the ref: %v", err)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Unknown: "unknown", Granted: "granted", Revoked: "revoked", 9: "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("got %v, want %v", got, want)
		}
	}
}

// TestMemoryFull: past its bound, the memory store refuses new entries
// but still updates known ones.
func TestMemoryFull(t *testing.T) {
	m := NewMemory(2)
	m.now = now
	ctx := context.Background()
	for _, e := range []Entry{entry("org_a", "h1:a", Granted, 0), entry("org_b", "h1:a", Granted, 0)} {
		if _, err := m.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []Entry{entry("org_a", "h1:b", Revoked, 0), entry("org_c", "h1:a", Revoked, 0)} {
		if _, err := m.Record(ctx, e); !errors.Is(err, ErrFull) {
			t.Errorf("%s/%s: got %v, want ErrFull", e.Org, e.Ref, err)
		}
	}
	if applied, err := m.Record(ctx, entry("org_a", "h1:a", Revoked, time.Minute)); err != nil || !applied {
		t.Fatalf("a known entry: %v %v", applied, err)
	}
	if got, _ := m.Get(ctx, "org_a", "h1:a"); got.State != Revoked {
		t.Errorf("got %v, want %v", got.State, Revoked)
	}
	if m.Len() != 2 {
		t.Errorf("got %v entries, want 2", m.Len())
	}
}

// TestRedisUnreachableFailsClosed: a store whose server does not answer
// returns an error from every call, never Unknown or an entry.
func TestRedisUnreachableFailsClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	r, err := NewRedis(RedisOptions{URL: "redis://" + addr + "/0", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	failsClosed(t, r)
}

// TestRedisStoppedFailsClosed: the same once a server that answered is
// gone.
func TestRedisStoppedFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	r, err := NewRedis(RedisOptions{URL: srv.URL(0), Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Record(context.Background(), entry("org_a", "h1:a", Revoked, 0)); err != nil {
		t.Fatalf("with the server up: %v", err)
	}
	srv.Stop()
	failsClosed(t, r)
}

func failsClosed(t *testing.T, r *Redis) {
	t.Helper()
	ctx := context.Background()
	if e, err := r.Get(ctx, "org_a", "h1:a"); err == nil {
		t.Errorf("Get answered %v with no error", e)
	}
	if applied, err := r.Record(ctx, entry("org_a", "h1:a", Granted, time.Minute)); err == nil {
		t.Errorf("Record answered %v with no error", applied)
	}
	if l, err := r.List(ctx, "org_a", 0); err == nil {
		t.Errorf("List answered %v with no error", l)
	}
	if err := r.Ping(ctx); err == nil {
		t.Error("Ping succeeded")
	}
}

// TestRedisMalformedEntry: a stored value the store cannot read is an
// error for Get, Record and List, and Record leaves it alone.
func TestRedisMalformedEntry(t *testing.T) {
	srv := redistest.Start(t)
	r, err := NewRedis(RedisOptions{URL: srv.URL(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer raw.Close()
	ctx := context.Background()
	for _, v := range []string{"", "revoked", "2:abc:keyword", "3:1772441000000:keyword", "2:1772441000000:", "2:-5:keyword", "2:1772441000000"} {
		t.Run(fmt.Sprintf("%q", v), func(t *testing.T) {
			if err := raw.HSet(ctx, "phiguard:c:org_a", "h1:a", v).Err(); err != nil {
				t.Fatal(err)
			}
			if e, err := r.Get(ctx, "org_a", "h1:a"); err == nil {
				t.Errorf("Get: got %v, want an error", e)
			}
			if l, err := r.List(ctx, "org_a", 0); err == nil {
				t.Errorf("List: got %v, want an error", l)
			}
			if applied, err := r.Record(ctx, entry("org_a", "h1:a", Granted, 0)); err == nil {
				t.Errorf("Record: applied %v, want an error", applied)
			}
			if got, _ := raw.HGet(ctx, "phiguard:c:org_a", "h1:a").Result(); got != v {
				t.Errorf("Record changed the entry: got %q, want %q", got, v)
			}
		})
	}
}

func TestNewRedisBadURL(t *testing.T) {
	for _, u := range []string{"", "http://127.0.0.1:6379", "redis://127.0.0.1:6379/notadb"} {
		if _, err := NewRedis(RedisOptions{URL: u}); err == nil || !strings.Contains(err.Error(), "redis url") {
			t.Errorf("%q: got %v, want a redis url error", u, err)
		}
	}
}

// TestRedisNoTTL: consent is kept until replaced.
func TestRedisNoTTL(t *testing.T) {
	srv := redistest.Start(t)
	r, err := NewRedis(RedisOptions{URL: srv.URL(0), Prefix: "p:"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if _, err := r.Record(ctx, entry("org_a", "h1:a", Revoked, 0)); err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer raw.Close()
	if ttl, err := raw.PTTL(ctx, "p:c:org_a").Result(); err != nil || ttl != -1 {
		t.Errorf("got TTL %v %v, want none (-1)", ttl, err)
	}
}

package session

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/redistest"
)

// The cost a tracked org's request pays: one decision and its record,
// over 1000 live sessions.
func BenchmarkMemoryUse(b *testing.B) { benchUse(b, NewMemory(0)) }

func BenchmarkRedisUse(b *testing.B) {
	srv := redistest.Start(b)
	r, err := NewRedis(RedisOptions{URL: srv.URL(0)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	benchUse(b, r)
}

func benchUse(b *testing.B, s Store) {
	refs := make([]string, 1000)
	for i := range refs {
		refs[i] = identity.SessionRef("sid:" + strconv.Itoa(i))
	}
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			v, err := s.Use(ctx, Use{Org: "org_a", User: "u" + strconv.Itoa(i%50), Ref: refs[i%len(refs)], Now: now, Limits: Limits{Idle: 15 * time.Minute, Absolute: 12 * time.Hour}})
			if err != nil || v != Live {
				b.Fatal(v, err)
			}
		}
	})
}

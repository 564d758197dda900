package identity

import (
	"testing"
	"time"
)

// benchVerifier returns a verifier of keys with a cache of size entries
// (negative: none) and a token signed by the last key.
func benchVerifier(b *testing.B, size int, keys ...testKey) (*Verifier, string) {
	b.Helper()
	c := cfg()
	c.CacheSize = size
	v, err := NewVerifierFromJWKS(c, jwksOf(b, keys...))
	if err != nil {
		b.Fatal(err)
	}
	tok := keys[len(keys)-1].sign(b, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a", "role": "agent"}))
	return v, tok
}

func benchVerify(b *testing.B, v *Verifier, tok string, wantErr bool) {
	b.Helper()
	h := bearer(tok)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, h); (err != nil) != wantErr {
			b.Fatalf("got %v, want error %v", err, wantErr)
		}
	}
}

func BenchmarkVerifyES256Uncached(b *testing.B) {
	v, tok := benchVerifier(b, -1, newTestKey(b, "k1"))
	benchVerify(b, v, tok, false)
}

func BenchmarkVerifyES256Cached(b *testing.B) {
	v, tok := benchVerifier(b, 0, newTestKey(b, "k1"))
	benchVerify(b, v, tok, false)
}

func BenchmarkVerifyES256CachedParallel(b *testing.B) {
	k := newTestKey(b, "k1")
	v, _ := benchVerifier(b, 0, k)
	var headers [][]string
	for range 64 {
		headers = append(headers, bearer(k.sign(b, claims(now.Add(time.Hour), map[string]any{"org_id": "org_a"}))))
	}
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.Verify(ctx, headers[i%len(headers)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkVerifyForged: a token naming the third key of three by its kid,
// with a signature that does not verify: one signature check.
func BenchmarkVerifyForged(b *testing.B) {
	v, tok := benchVerifier(b, 0, newTestKey(b, "k1"), newTestKey(b, "k2"), newTestKey(b, "k3"))
	benchVerify(b, v, forge(tok), true)
}

// BenchmarkVerifyForgedNoKID: the same without kid, tried with each key.
func BenchmarkVerifyForgedNoKID(b *testing.B) {
	v, tok := benchVerifier(b, 0, newTestKey(b, ""), newTestKey(b, ""), newTestKey(b, ""))
	benchVerify(b, v, forge(tok), true)
}

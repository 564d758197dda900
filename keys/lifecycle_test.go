package keys

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// sealAll seals one value per label with the keyring now in force.
func sealAll(t *testing.T, k *Keyring, org string, labels ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range labels {
		tok, err := k.Encrypt(context.Background(), org, []byte(`"`+l+`"`))
		if err != nil {
			t.Fatal(err)
		}
		out[l] = tok
	}
	return out
}

func reopen(t *testing.T, dir string, p Provider) *Keyring {
	t.Helper()
	k, err := Open(context.Background(), dir, p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func opens(k *Keyring, org, tok, want string) error {
	pt, err := k.Decrypt(context.Background(), org, []byte(tok))
	if err != nil {
		return err
	}
	if string(pt) != `"`+want+`"` {
		return errors.New("opened to " + string(pt))
	}
	return nil
}

// TestRotateRetire: after a rotation, new tokens name the new key and the
// old ones still open; the primary cannot be retired; once the old key is
// retired its tokens never open, and the new ones still do.
func TestRotateRetire(t *testing.T) {
	dir, k := newTestKeyring(t, "org_a")
	p, _ := OpenLocal(dir)
	ctx := context.Background()
	before, _ := k.Info("org_a")
	old := sealAll(t, k, "org_a", "old")

	id, err := Rotate(ctx, dir, "org_a", p)
	if err != nil {
		t.Fatal(err)
	}
	k = reopen(t, dir, p)
	info, _ := k.Info("org_a")
	if info.Primary != id || len(info.Keys) != 2 || info.Keys[1].ID != id || info.Keys[1].Created.IsZero() {
		t.Errorf("after rotate: %+v, want %08x primary and two keys", info, id)
	}
	if err := opens(k, "org_a", old["old"], "old"); err != nil {
		t.Errorf("an old token after rotate: %v", err)
	}
	fresh := sealAll(t, k, "org_a", "new")
	if tk, _ := ParseToken(fresh["new"]); tk.KeyID != id {
		t.Errorf("a new token names key %08x, want the new primary %08x", tk.KeyID, id)
	}

	if err := Retire(ctx, dir, "org_a", p, id); err == nil || !strings.Contains(err.Error(), "primary") {
		t.Errorf("retiring the primary: %v", err)
	}
	if err := Retire(ctx, dir, "org_a", p, 0xdeadbeef); err == nil {
		t.Error("retiring a key the keyset does not hold succeeded")
	}
	if err := Retire(ctx, dir, "org_a", p, before.Primary); err != nil {
		t.Fatal(err)
	}
	k = reopen(t, dir, p)
	if err := opens(k, "org_a", old["old"], "old"); !errors.Is(err, ErrDecrypt) {
		t.Errorf("a token of the retired key: %v, want ErrDecrypt", err)
	}
	if err := opens(k, "org_a", fresh["new"], "new"); err != nil {
		t.Errorf("a token of the primary after retire: %v", err)
	}
	if info, _ := k.Info("org_a"); len(info.Keys) != 1 {
		t.Errorf("keys after retire: %+v", info.Keys)
	}
}

// TestExpire: on its schedule, an org rotates when its primary is older
// than rotate_every, and destroys the keys older than retain, whose tokens
// then never open; the primary and younger keys are kept.
func TestExpire(t *testing.T) {
	day := 24 * time.Hour
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := start
	defer func(old func() time.Time) { now = old }(now)
	now = func() time.Time { return clock }
	at := func(d int) { clock = start.Add(time.Duration(d) * day) }

	dir, p := newMasterOnly(t)
	ctx := context.Background()
	if _, err := CreateOrg(ctx, dir, "org_a", p); err != nil { // key A, day 0
		t.Fatal(err)
	}
	a := sealAll(t, reopen(t, dir, p), "org_a", "a")["a"]
	expire := func(rotateEvery, retain time.Duration) Expired {
		t.Helper()
		got, err := Expire(ctx, dir, "org_a", p, rotateEvery, retain)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	at(40)
	if got := expire(30*day, 0); got.Rotated == 0 || len(got.Retired) != 0 { // key B, day 40
		t.Fatalf("day 40: %+v, want a rotation", got)
	}
	b := sealAll(t, reopen(t, dir, p), "org_a", "b")["b"]
	at(50)
	if got := expire(30*day, 0); got.Rotated != 0 {
		t.Errorf("day 50: %+v, want no rotation of a 10-day-old primary", got)
	}
	at(80)
	if got := expire(30*day, 0); got.Rotated == 0 { // key C, day 80
		t.Fatalf("day 80: %+v, want a rotation", got)
	}
	c := sealAll(t, reopen(t, dir, p), "org_a", "c")["c"]

	// Retention counts from when a key stopped sealing: A sealed until
	// day 40 (B took over), so with 70 days A's values live to day 110.
	at(100)
	if got := expire(0, 70*day); len(got.Retired) != 0 {
		t.Errorf("day 100, retain 70 days: %+v, want nothing retired (A sealed until day 40)", got)
	}
	at(111)
	got := expire(0, 70*day)
	k := reopen(t, dir, p)
	if len(got.Retired) != 1 || got.Rotated != 0 {
		t.Errorf("day 111, retain 70 days: %+v, want key A alone retired", got)
	}
	if err := opens(k, "org_a", a, "a"); !errors.Is(err, ErrDecrypt) {
		t.Errorf("a value sealed on day 0, past retention: %v, want ErrDecrypt", err)
	}
	for label, tok := range map[string]string{"b": b, "c": c} {
		if err := opens(k, "org_a", tok, label); err != nil {
			t.Errorf("a value within retention (%s): %v", label, err)
		}
	}
	if info, _ := k.Info("org_a"); len(info.Keys) != 2 {
		t.Errorf("keys after expire: %+v", info.Keys)
	}
}

// TestExpireKeepsTheStartingPrimary: a run that rotates never destroys
// the key that was primary when it began, however old: sidecars that have
// not reloaded may still seal with it.
func TestExpireKeepsTheStartingPrimary(t *testing.T) {
	day := 24 * time.Hour
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := start
	defer func(old func() time.Time) { now = old }(now)
	now = func() time.Time { return clock }
	dir, p := newMasterOnly(t)
	ctx := context.Background()
	if _, err := CreateOrg(ctx, dir, "org_a", p); err != nil {
		t.Fatal(err)
	}
	clock = start.Add(89 * day)
	tok := sealAll(t, reopen(t, dir, p), "org_a", "late")["late"]
	clock = start.Add(90 * day)
	got, err := Expire(ctx, dir, "org_a", p, 30*day, 60*day)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rotated == 0 || len(got.Retired) != 0 {
		t.Errorf("day 90: %+v, want a rotation and nothing retired", got)
	}
	if err := opens(reopen(t, dir, p), "org_a", tok, "late"); err != nil {
		t.Errorf("a value sealed the day before: %v", err)
	}
	clock = start.Add(10 * day)
	if _, err := Expire(ctx, dir, "org_a", p, 30*day, 60*day); err == nil || !strings.Contains(err.Error(), "clock") {
		t.Errorf("a clock behind the keys: %v", err)
	}
}

// TestShred: a shredded org's tokens never open again (ErrShredded, which
// the engine shows as a mask), it seals nothing new, and it cannot be
// edited or shredded twice; other orgs are untouched.
func TestShred(t *testing.T) {
	dir, k := newTestKeyring(t, "org_a", "org_b")
	p, _ := OpenLocal(dir)
	ctx := context.Background()
	a, b := sealAll(t, k, "org_a", "v"), sealAll(t, k, "org_b", "v")
	w, err := Shred(ctx, dir, "org_a", p)
	if err != nil || w.Provider != ProviderLocal {
		t.Fatalf("shred: %v %v", w, err)
	}
	k = reopen(t, dir, p)
	if err := opens(k, "org_a", a["v"], "v"); !errors.Is(err, ErrShredded) {
		t.Errorf("a token of the shredded org: %v, want ErrShredded", err)
	}
	if _, err := k.Encrypt(ctx, "org_a", []byte(`"x"`)); !errors.Is(err, ErrShredded) {
		t.Errorf("sealing for the shredded org: %v", err)
	}
	if err := opens(k, "org_b", b["v"], "v"); err != nil {
		t.Errorf("another org after the shred: %v", err)
	}
	if info, _ := k.Info("org_a"); info.Shredded.IsZero() || k.Has("org_a") {
		t.Errorf("info %+v, has %v", info, k.Has("org_a"))
	}
	if _, err := Shred(ctx, dir, "org_a", p); !errors.Is(err, ErrShredded) {
		t.Errorf("shredding twice: %v", err)
	}
	if _, err := Rotate(ctx, dir, "org_a", p); !errors.Is(err, ErrShredded) {
		t.Errorf("rotating a shredded org: %v", err)
	}
	if _, err := Shred(ctx, dir, "org_x", p); err == nil {
		t.Error("shredding an org without keys succeeded")
	}
}

// TestExpireWithNothingDueWritesNothing: a run with nothing to rotate or
// destroy leaves the keyset file as it was (sidecars see no change, KMS is
// not called).
func TestExpireWithNothingDueWritesNothing(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	p, _ := OpenLocal(dir)
	before, err := os.Stat(orgPath(dir, "org_a"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(orgPath(dir, "org_a"))
	if got, err := Expire(context.Background(), dir, "org_a", p, 24*time.Hour, 48*time.Hour); err != nil || got.Rotated != 0 || len(got.Retired) != 0 {
		t.Fatalf("expire with nothing due: %+v %v", got, err)
	}
	after, _ := os.Stat(orgPath(dir, "org_a"))
	again, _ := os.ReadFile(orgPath(dir, "org_a"))
	if !os.SameFile(before, after) || string(raw) != string(again) {
		t.Error("the keyset file was rewritten")
	}
}

// TestOlderKeysetFileRefused: a reload that finds an older generation of
// an org's keyset file than the one in force (a backup restored over it,
// which would bring a retired key back) keeps the one in force and says
// why; a version 1 file over a version 2 one is older too.
func TestOlderKeysetFileRefused(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	p, _ := OpenLocal(dir)
	ctx := context.Background()
	backup, err := os.ReadFile(orgPath(dir, "org_a"))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := reopen(t, dir, p).Info("org_a")
	if _, err := Rotate(ctx, dir, "org_a", p); err != nil {
		t.Fatal(err)
	}
	if err := Retire(ctx, dir, "org_a", p, before.Primary); err != nil {
		t.Fatal(err)
	}
	inForce := reopen(t, dir, p)
	info, _ := inForce.Info("org_a")
	if info.Generation != 3 {
		t.Errorf("generation after create, rotate, retire: %d, want 3", info.Generation)
	}
	if err := os.WriteFile(orgPath(dir, "org_a"), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Load(ctx, dir, p, inForce)
	if err == nil || !strings.Contains(err.Error(), "older than the one in force") {
		t.Errorf("an older file: %v", err)
	}
	if got, _ := k.Info("org_a"); got.Generation != 3 || len(got.Keys) != 1 || got.Keys[0].ID == before.Primary {
		t.Errorf("after the older file: %+v, want the keyset in force, without the retired key", got)
	}
}

// TestConcurrentRotationsAllLand: key commands on one org run one after
// the other under the keyring's lock, so none loses another's key.
func TestConcurrentRotationsAllLand(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	p, _ := OpenLocal(dir)
	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := Rotate(context.Background(), dir, "org_a", p); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	info, _ := reopen(t, dir, p).Info("org_a")
	if len(info.Keys) != n+1 || info.Generation != n+1 {
		t.Errorf("after %d concurrent rotations: %d keys, generation %d; want %d and %d", n, len(info.Keys), info.Generation, n+1, n+1)
	}
}

// TestShredMarkerNeedsItsProof: a reload accepts a shred of the keys in
// force only if they open its proof: a marker written by hand (or another
// org's marker copied over) takes no keys away.
func TestShredMarkerNeedsItsProof(t *testing.T) {
	dir, k := newTestKeyring(t, "org_a", "org_b")
	p, _ := OpenLocal(dir)
	ctx := context.Background()
	forged := `{"phiguard_keyset":2,"org":"org_a","wrap":{"provider":"local"},"shredded":"2026-01-01T00:00:00Z","proof":""}`
	backup, _ := os.ReadFile(orgPath(dir, "org_a"))
	if err := os.WriteFile(orgPath(dir, "org_a"), []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	k2, err := Load(ctx, dir, p, k)
	if err == nil || !strings.Contains(err.Error(), "shred marker") || !k2.Has("org_a") {
		t.Errorf("a forged marker: %v; has org_a %v, want the keys kept", err, k2.Has("org_a"))
	}
	os.WriteFile(orgPath(dir, "org_a"), backup, 0o600)
	if _, err := Shred(ctx, dir, "org_b", p); err != nil {
		t.Fatal(err)
	}
	marker, _ := os.ReadFile(orgPath(dir, "org_b"))
	os.WriteFile(orgPath(dir, "org_a"), []byte(strings.Replace(string(marker), `"org_b"`, `"org_a"`, 1)), 0o600)
	if k3, err := Load(ctx, dir, p, k); err == nil || !k3.Has("org_a") {
		t.Errorf("org_b's marker over org_a: %v; want org_a's keys kept", err)
	} else if k3.Has("org_b") {
		t.Error("org_b's genuine shred was not taken")
	}
}

// TestOpenedCounts: each key counts the tokens it opened, and a reload
// after a rotation keeps the old key's count: evidence for retiring it.
func TestOpenedCounts(t *testing.T) {
	dir, k := newTestKeyring(t, "org_a")
	p, _ := OpenLocal(dir)
	ctx := context.Background()
	first, _ := k.Info("org_a")
	tok := sealAll(t, k, "org_a", "v")["v"]
	for range 3 {
		if err := opens(k, "org_a", tok, "v"); err != nil {
			t.Fatal(err)
		}
	}
	id, err := Rotate(ctx, dir, "org_a", p)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Load(ctx, dir, p, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := opens(k2, "org_a", tok, "v"); err != nil {
		t.Fatal(err)
	}
	got := k2.Opened("org_a")
	info, _ := k2.Info("org_a")
	if got[first.Primary] != 4 || got[id] != 0 || len(got) != 2+len(info.Exact) || len(info.Exact) != 1 {
		t.Errorf("opened %v, want 4 for %08x (across the reload) and 0 for the new %08x", got, first.Primary, id)
	}
}

package keys

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/phiguard/phiguard/internal/kmstest"
)

// kmsRig is a KMS test server, a client of it built the way phiguard
// builds one (NewAWSKMSClient, endpoint override, standard retries), and
// a keyring folder.
type kmsRig struct {
	srv    *kmstest.Server
	client *kms.Client
	dir    string

	mu    sync.Mutex
	calls map[string]int // KMS calls the provider observed, by operation
}

func newKMSRig(t *testing.T, maxAttempts int) *kmsRig {
	t.Helper()
	srv := kmstest.New(t)
	client, err := NewAWSKMSClient(context.Background(), AWSOptions{
		Endpoint:      srv.URL(),
		MaxAttempts:   maxAttempts,
		MaxBackoff:    kmstest.MaxBackoff,
		ConfigOptions: srv.ConfigOptions(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &kmsRig{srv: srv, client: client, dir: t.TempDir(), calls: map[string]int{}}
}

// createOrgs makes a keyset for each org, wrapped as p says.
func (r *kmsRig) createOrgs(t *testing.T, p Provider, orgs ...string) {
	t.Helper()
	for _, org := range orgs {
		if _, err := CreateOrg(context.Background(), r.dir, org, p); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *kmsRig) provider(shared string, own map[string]string) *KMSProvider {
	return NewKMSProvider(r.client, KMSOptions{SharedKey: shared, OrgKeys: own, CallTimeout: 5 * time.Second,
		Observe: func(op string, _ time.Duration, _ error) {
			r.mu.Lock()
			r.calls[op]++
			r.mu.Unlock()
		}})
}

// TestKMSBothKeyModes: orgs without a key of their own share one KMS key,
// an org with its own key is wrapped under it; either way the keyring
// opens, tokens round-trip, and KMS is called once per keyset written or
// loaded, never per token.
func TestKMSBothKeyModes(t *testing.T) {
	r := newKMSRig(t, 3)
	sharedID, sharedARN := r.srv.CreateKey(t, "shared")
	ownID, _ := r.srv.CreateKey(t, "org_c's own")
	r.srv.CreateAlias(t, "alias/org-c", ownID)
	p := r.provider(sharedARN, map[string]string{"org_c": "alias/org-c"})
	ctx := context.Background()
	for org, want := range map[string]string{"org_a": sharedARN, "org_b": sharedARN, "org_c": "alias/org-c"} {
		w, err := CreateOrg(ctx, r.dir, org, p)
		if err != nil {
			t.Fatal(err)
		}
		if w != (Wrap{Provider: ProviderAWSKMS, Key: want}) {
			t.Errorf("%s wrapped by %s, want %s", org, w, want)
		}
	}
	if r.calls["Encrypt"] != 3 || r.srv.Calls("Encrypt") != 3 {
		t.Errorf("KMS Encrypt calls: observed %d, server %d; want 3", r.calls["Encrypt"], r.srv.Calls("Encrypt"))
	}
	raw, _ := os.ReadFile(orgPath(r.dir, "org_a"))
	if !strings.Contains(string(raw), `"key": "`+sharedARN+`"`) {
		t.Errorf("org_a's file does not name its KMS key %s (%s):\n%s", sharedARN, sharedID, raw)
	}

	k, err := Open(ctx, r.dir, p)
	if err != nil {
		t.Fatal(err)
	}
	if r.srv.Calls("Decrypt") != 3 {
		t.Errorf("KMS Decrypt calls at open: %d, want one per org", r.srv.Calls("Decrypt"))
	}
	r.srv.ResetCalls()
	for _, org := range []string{"org_a", "org_b", "org_c"} {
		for range 100 {
			tok, err := k.Encrypt(ctx, org, []byte(`"PHI"`))
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := k.Decrypt(ctx, org, []byte(tok)); err != nil || string(pt) != `"PHI"` {
				t.Fatalf("%s round trip: %q %v", org, pt, err)
			}
		}
	}
	if n := r.srv.Calls(""); n != 0 {
		t.Errorf("%d KMS calls for 600 token operations, want 0", n)
	}
}

// TestKMSContextBindsOrg: a wrapped key made for one org does not unwrap
// for another, even under the same KMS key: the encryption context names
// the org and KMS checks it.
func TestKMSContextBindsOrg(t *testing.T) {
	r := newKMSRig(t, 3)
	_, arn := r.srv.CreateKey(t, "shared")
	p := r.provider(arn, nil)
	ctx := context.Background()
	w := Wrap{Provider: ProviderAWSKMS, Key: arn}
	a, err := p.KEK(ctx, w, "org_a")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := a.EncryptWithContext(ctx, []byte("keyset"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.KEK(ctx, w, "org_b")
	if _, err := b.DecryptWithContext(ctx, sealed, []byte("ad")); !errors.Is(err, ErrKMSContext) {
		t.Errorf("org_b unwrapping org_a's key: %v, want ErrKMSContext", err)
	}
	if pt, err := a.DecryptWithContext(ctx, sealed, []byte("ad")); err != nil || string(pt) != "keyset" {
		t.Errorf("org_a: %q %v", pt, err)
	}
	// A key the policy does not allow for the org is refused before KMS
	// is asked: a keyset file cannot choose its own key.
	_, other := r.srv.CreateKey(t, "other")
	r.srv.ResetCalls()
	if _, err := p.KEK(ctx, Wrap{Provider: ProviderAWSKMS, Key: other}, "org_a"); !errors.Is(err, ErrKMSKeyUnusable) || r.srv.Calls("") != 0 {
		t.Errorf("a keyset naming a key the policy does not allow: %v, %d KMS calls", err, r.srv.Calls(""))
	}
	// Allowed as a previous key, the blob of another key is still refused
	// by KMS.
	prev := NewKMSProvider(r.client, KMSOptions{SharedKey: arn, PreviousKeys: []string{other}})
	c, err := prev.KEK(ctx, Wrap{Provider: ProviderAWSKMS, Key: other}, "org_a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecryptWithContext(ctx, sealed, []byte("ad")); !errors.Is(err, ErrKMSContext) {
		t.Errorf("the blob under another key: %v, want ErrKMSContext", err)
	}
}

// TestKMSKeyAllowList: an org with its own key accepts no keyset wrapped
// by the shared key, and an org on the shared key none wrapped by another
// org's key, unless it is listed as previous.
func TestKMSKeyAllowList(t *testing.T) {
	r := newKMSRig(t, 3)
	_, shared := r.srv.CreateKey(t, "shared")
	_, ownB := r.srv.CreateKey(t, "org_b")
	p := NewKMSProvider(r.client, KMSOptions{SharedKey: shared, OrgKeys: map[string]string{"org_b": ownB}})
	ctx := context.Background()
	for _, tc := range []struct {
		org, key string
		ok       bool
	}{
		{"org_a", shared, true}, {"org_a", ownB, false}, {"org_b", ownB, true}, {"org_b", shared, false},
	} {
		_, err := p.KEK(ctx, Wrap{Provider: ProviderAWSKMS, Key: tc.key}, tc.org)
		if (err == nil) != tc.ok {
			t.Errorf("%s under %s: %v, want allowed %v", tc.org, tc.key, err, tc.ok)
		}
	}
}

// TestKMSUnusableKeyFailsClosed: a disabled key, or one pending deletion,
// keeps the keyring from opening, with the reason; re-enabled, it opens.
func TestKMSUnusableKeyFailsClosed(t *testing.T) {
	r := newKMSRig(t, 3)
	id, arn := r.srv.CreateKey(t, "shared")
	p := r.provider(arn, nil)
	ctx := context.Background()
	r.createOrgs(t, p, "org_a")
	r.srv.DisableKey(id)
	if _, err := Open(ctx, r.dir, p); !errors.Is(err, ErrKMSKeyUnusable) || !strings.Contains(err.Error(), "org_a") {
		t.Errorf("disabled key: %v, want ErrKMSKeyUnusable naming org_a", err)
	}
	if _, err := CreateOrg(ctx, r.dir, "org_b", p); !errors.Is(err, ErrKMSKeyUnusable) {
		t.Errorf("create under a disabled key: %v", err)
	}
	r.srv.EnableKey(id)
	if _, err := Open(ctx, r.dir, p); err != nil {
		t.Errorf("re-enabled key: %v", err)
	}
	r.srv.ScheduleDeletion(id)
	if _, err := Open(ctx, r.dir, p); !errors.Is(err, ErrKMSKeyUnusable) {
		t.Errorf("key pending deletion: %v, want ErrKMSKeyUnusable", err)
	}
}

// TestKMSThrottlingRetried: throttling and 5xx are retried with backoff up
// to the attempts allowed, then the load fails as unavailable.
func TestKMSThrottlingRetried(t *testing.T) {
	r := newKMSRig(t, 4)
	_, arn := r.srv.CreateKey(t, "shared")
	p := r.provider(arn, nil)
	ctx := context.Background()
	r.createOrgs(t, p, "org_a")
	r.srv.ResetCalls()
	r.srv.FailNext("Decrypt", 2, kmstest.Throttle)
	r.srv.FailNext("Decrypt", 1, kmstest.InternalError)
	if _, err := Open(ctx, r.dir, p); err != nil {
		t.Fatalf("after two throttles and a 500: %v", err)
	}
	if n := r.srv.Calls("Decrypt"); n != 4 {
		t.Errorf("Decrypt calls: %d, want 4 (three failures, then success)", n)
	}
	r.srv.ResetCalls()
	r.srv.FailNext("Decrypt", 100, kmstest.Throttle)
	_, err := Open(ctx, r.dir, p)
	if !errors.Is(err, ErrKMSUnavailable) {
		t.Errorf("throttled throughout: %v, want ErrKMSUnavailable", err)
	}
	if n := r.srv.Calls("Decrypt"); n != 4 {
		t.Errorf("Decrypt calls when throttled throughout: %d, want the 4 attempts allowed", n)
	}
}

// TestKMSOutage: a KMS that is down or hangs fails the load within its
// deadline; nothing is unwrapped.
func TestKMSOutage(t *testing.T) {
	r := newKMSRig(t, 2)
	_, arn := r.srv.CreateKey(t, "shared")
	p := r.provider(arn, nil)
	ctx := context.Background()
	r.createOrgs(t, p, "org_a", "org_b")
	r.srv.SetDown(true)
	if _, err := Open(ctx, r.dir, p); !errors.Is(err, ErrKMSUnavailable) {
		t.Errorf("KMS down: %v, want ErrKMSUnavailable", err)
	}
	r.srv.SetDown(false)
	r.srv.FailNext("", 100, kmstest.Hang)
	deadline, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(deadline, r.dir, p)
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrKMSUnavailable) {
		t.Errorf("KMS hanging: %v, want the deadline", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a hanging KMS held the load for %s", took)
	}
}

// TestRewrap: a keyset moves from the master key to a KMS key, then to
// another KMS key; its data keys do not change, so every token still
// opens, and the file names the new wrapping. Only the new key unwraps it.
func TestRewrap(t *testing.T) {
	r := newKMSRig(t, 3)
	idA, arnA := r.srv.CreateKey(t, "a")
	_, arnB := r.srv.CreateKey(t, "b")
	if err := InitLocal(r.dir); err != nil {
		t.Fatal(err)
	}
	local, err := OpenLocal(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	kmsP := r.provider(arnA, nil)
	both := Providers{kmsP, local}
	ctx := context.Background()
	if _, err := CreateOrg(ctx, r.dir, "org_a", local); err != nil {
		t.Fatal(err)
	}
	tokens := sealAll(t, reopen(t, r.dir, local), "org_a", "v")

	from, err := Rewrap(ctx, r.dir, "org_a", both, Wrap{Provider: ProviderAWSKMS, Key: arnA})
	if err != nil || from.Provider != ProviderLocal {
		t.Fatalf("rewrap to KMS: from %v, %v", from, err)
	}
	if _, err := Open(ctx, r.dir, local); err == nil {
		t.Error("the master key alone still opens a keyset rewrapped to KMS")
	}
	k := reopen(t, r.dir, kmsP)
	if info, _ := k.Info("org_a"); info.Wrap.Key != arnA {
		t.Errorf("wrapped by %v, want %s", info.Wrap, arnA)
	}
	if err := opens(k, "org_a", tokens["v"], "v"); err != nil {
		t.Errorf("a token after rewrap: %v", err)
	}

	// The policy moves the org to key B, with A kept as previous for the move.
	moving := NewKMSProvider(r.client, KMSOptions{SharedKey: arnB, PreviousKeys: []string{arnA}})
	if _, err := Rewrap(ctx, r.dir, "org_a", kmsP, Wrap{Provider: ProviderAWSKMS, Key: arnB}); err == nil {
		t.Error("a rewrap to a key the policy does not allow succeeded")
	}
	if _, err := Rewrap(ctx, r.dir, "org_a", moving, Wrap{Provider: ProviderAWSKMS, Key: arnB}); err != nil {
		t.Fatal(err)
	}
	r.srv.DisableKey(idA) // the old key is no longer needed
	after := NewKMSProvider(r.client, KMSOptions{SharedKey: arnB})
	k = reopen(t, r.dir, after)
	if err := opens(k, "org_a", tokens["v"], "v"); err != nil {
		t.Errorf("a token after the second rewrap: %v", err)
	}
	if _, err := Rewrap(ctx, r.dir, "org_a", after, Wrap{}); err == nil {
		t.Error("a rewrap to nothing succeeded")
	}
}

// TestLoadKeepsWhatItCan: reloading a keyring unwraps only the keysets
// whose files changed; while KMS is down, orgs already loaded keep their
// keys, and a new org is unavailable (its requests refused) until a reload
// succeeds.
func TestLoadKeepsWhatItCan(t *testing.T) {
	r := newKMSRig(t, 2)
	_, arn := r.srv.CreateKey(t, "shared")
	p := r.provider(arn, nil)
	ctx := context.Background()
	r.createOrgs(t, p, "org_a", "org_b")
	k1, err := Load(ctx, r.dir, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokA := sealAll(t, k1, "org_a", "a")["a"]
	r.srv.ResetCalls()
	k2, err := Load(ctx, r.dir, p, k1)
	if err != nil || r.srv.Calls("") != 0 {
		t.Errorf("reload of an unchanged keyring: %v, %d KMS calls, want none", err, r.srv.Calls(""))
	}
	if _, err := Rotate(ctx, r.dir, "org_a", p); err != nil {
		t.Fatal(err)
	}
	r.createOrgs(t, p, "org_c")
	r.srv.ResetCalls()
	r.srv.SetDown(true)
	k3, err := Load(ctx, r.dir, p, k2)
	if !errors.Is(err, ErrKMSUnavailable) || k3 == nil {
		t.Fatalf("reload with KMS down: %v", err)
	}
	if got := k3.Unavailable(); len(got) != 1 || got[0] != "org_c" {
		t.Errorf("unavailable %v, want org_c alone (org_a keeps its last good keyset)", got)
	}
	if got := k3.Stale(); len(got) != 1 || got[0] != "org_a" {
		t.Errorf("stale %v, want org_a (its rotated file did not load)", got)
	}
	if err := opens(k3, "org_a", tokA, "a"); err != nil {
		t.Errorf("org_a while KMS is down: %v", err)
	}
	if _, err := k3.Encrypt(ctx, "org_c", []byte(`"x"`)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("org_c while KMS is down: %v, want ErrUnavailable", err)
	}
	if info, _ := k3.Info("org_a"); len(info.Keys) != 1 {
		t.Errorf("org_a while KMS is down: %d keys, want the last good keyset's one", len(info.Keys))
	}
	r.srv.SetDown(false)
	k4, err := Load(ctx, r.dir, p, k3)
	if err != nil || len(k4.Unavailable()) != 0 || len(k4.Stale()) != 0 {
		t.Fatalf("reload with KMS back: %v %v %v", err, k4.Unavailable(), k4.Stale())
	}
	if info, _ := k4.Info("org_a"); len(info.Keys) != 2 {
		t.Errorf("org_a after KMS came back: %d keys, want the rotated keyset's two", len(info.Keys))
	}
	if _, err := k4.Encrypt(ctx, "org_c", []byte(`"x"`)); err != nil {
		t.Errorf("org_c after KMS came back: %v", err)
	}
}

// TestReverifyRevokes: a reverifying load takes away the keys of an org
// whose KMS key was disabled, and keeps those of an org whose KMS is only
// unreachable; a plain reload of unchanged files calls KMS not at all.
func TestReverifyRevokes(t *testing.T) {
	r := newKMSRig(t, 2)
	_, shared := r.srv.CreateKey(t, "shared")
	ownID, own := r.srv.CreateKey(t, "org_b")
	p := r.provider(shared, map[string]string{"org_b": own})
	ctx := context.Background()
	r.createOrgs(t, p, "org_a", "org_b")
	k, err := Load(ctx, r.dir, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.srv.DisableKey(ownID)
	if k2, err := Load(ctx, r.dir, p, k); err != nil || len(k2.Unavailable()) != 0 {
		t.Errorf("plain reload of unchanged files: %v %v (the disabled key is not asked)", err, k2.Unavailable())
	}
	k3, err := Load(ctx, r.dir, p, k, Reverify())
	if !errors.Is(err, ErrKMSKeyUnusable) {
		t.Errorf("reverify with org_b's key disabled: %v", err)
	}
	if got := k3.Unavailable(); len(got) != 1 || got[0] != "org_b" {
		t.Errorf("unavailable after reverify: %v, want org_b (revoked)", got)
	}
	r.srv.EnableKey(ownID)
	r.srv.SetDown(true)
	k4, err := Load(ctx, r.dir, p, k, Reverify())
	if !errors.Is(err, ErrKMSUnavailable) || len(k4.Unavailable()) != 0 {
		t.Errorf("reverify with KMS down: %v, unavailable %v; want both orgs kept", err, k4.Unavailable())
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/phiguard/phiguard/internal/kmstest"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// kmsEnv points the AWS SDK's standard chain at static test credentials
// and nothing else: no shared files, no instance metadata.
func kmsEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "")
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("HTTP_PROXY", "")
}

const kmsPolicy = `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "APP"}
admin: {listen: "127.0.0.1:0"}
reload: {watch: false}
keys:
  provider: aws-kms
  keyring: KEYRING
  aws: {region: us-east-1, endpoint: "KMS", kms_key: "SHARED", max_attempts: 2}
orgs:
  - {id: org_a}
  - {id: org_b, kms_key: "OWN"}
routes:
  - {name: hook, match: {methods: [POST], path: "/hooks/{org}"}, auth: none, org_from: {path_param: org}, encrypt_request: ["form:Body"]}
`

// kmsRig is a KMS test server with a shared key and org_b's own key, and
// a folder for the keyring and the policy (kmsPolicy filled in).
type kmsRig struct {
	srv                *kmstest.Server
	shared, own, ownID string
	dir, keyring       string
	polPath            string
}

func newKMSRig(t *testing.T) *kmsRig {
	t.Helper()
	kmsEnv(t)
	r := &kmsRig{srv: kmstest.New(t), dir: t.TempDir()}
	_, r.shared = r.srv.CreateKey(t, "shared")
	r.ownID, r.own = r.srv.CreateKey(t, "org_b")
	r.keyring, r.polPath = filepath.Join(r.dir, "keyring"), filepath.Join(r.dir, "policy.yaml")
	return r
}

// policy is kmsPolicy for the app at app, with more replacements after.
func (r *kmsRig) policy(app string, more ...string) string {
	return strings.NewReplacer(append([]string{"APP", app, "KEYRING", r.keyring, "KMS", r.srv.URL(), "SHARED", r.shared, "OWN", r.own}, more...)...).Replace(kmsPolicy)
}

// withAuditFile adds an audit file sink in the rig's folder to src.
func (r *kmsRig) withAuditFile(src string) string {
	return src + "audit: {sinks: [{type: file, path: \"" + filepath.Join(r.dir, "audit.jsonl") + "\"}]}\n"
}

// create runs keys create for each org with the policy at polPath.
func (r *kmsRig) create(t *testing.T, orgs ...string) {
	t.Helper()
	for _, org := range orgs {
		if _, errOut, err := runCLI(t, "keys", "create", "-config", r.polPath, "-org", org); err != nil {
			t.Fatalf("keys create %s: %v %s", org, err, errOut)
		}
	}
}

// TestKMSOnlyAtStart: with the aws-kms provider, keys create wraps each
// org under its KMS key (shared or its own), serve unwraps each keyset
// once at start, and then 10,000 proxied requests that encrypt make no
// KMS call at all.
func TestKMSOnlyAtStart(t *testing.T) {
	r := newKMSRig(t)
	srv, shared, own, polPath := r.srv, r.shared, r.own, r.polPath
	var stored sync.Map // what the app received, by org
	app := newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		stored.Store(r.URL.Path, r.PostForm.Get("Body"))
	}))
	src := r.policy(app)
	writeFile(t, polPath, src)
	for _, org := range []string{"org_a", "org_b"} {
		out, errOut, err := runCLI(t, "keys", "create", "-config", polPath, "-org", org)
		if err != nil {
			t.Fatalf("keys create %s: %v %s", org, err, errOut)
		}
		want := map[string]string{"org_a": shared, "org_b": own}[org]
		if !strings.Contains(out, "wrapped by aws-kms "+want) {
			t.Errorf("keys create %s: %q, want it wrapped by %s", org, out, want)
		}
	}
	out, _, err := runCLI(t, "keys", "list", "-config", polPath)
	if err != nil || !strings.Contains(out, "org_b\twrapped by aws-kms "+own) {
		t.Errorf("keys list: %q %v", out, err)
	}
	srv.ResetCalls()

	s := startOps(t, src)
	if n := srv.Calls("Decrypt"); n != 2 {
		t.Errorf("KMS Decrypt calls at start: %d, want one per org", n)
	}
	srv.ResetCalls()
	const requests, workers = 10000, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			c := &http.Client{}
			for i := w; i < requests; i += workers {
				org := []string{"org_a", "org_b"}[i%2]
				resp, err := c.PostForm("http://"+s.proxy+"/hooks/"+org, url.Values{"Body": {fmt.Sprintf("PHI %d", i)}})
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("request %d: %d", i, resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := srv.Calls(""); n != 0 {
		t.Errorf("%d KMS calls over %d proxied requests, want 0", n, requests)
	}
	for _, org := range []string{"org_a", "org_b"} {
		v, _ := stored.Load("/hooks/" + org)
		if s, _ := v.(string); !strings.HasPrefix(s, "ephi:v1:"+org+":") {
			t.Errorf("the app stored %q for %s, want a token", s, org)
		}
	}
	_, m := httpGet(t, "http://"+s.admin+"/metrics")
	if !strings.Contains(m, `phiguard_kms_calls_total{operation="Decrypt",result="ok"} 2`) {
		t.Error("metrics do not count the two KMS Decrypt calls at start")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestShredDeletesOwnKMSKey: shredding an org with its own KMS key can
// schedule that key's deletion; an org on the shared key cannot, since
// the key wraps others too.
func TestShredDeletesOwnKMSKey(t *testing.T) {
	r := newKMSRig(t)
	srv, ownID, dir, polPath := r.srv, r.ownID, r.dir, r.polPath
	writeFile(t, polPath, r.withAuditFile(r.policy("http://127.0.0.1:1")))
	r.create(t, "org_a", "org_b")
	if _, _, err := runCLI(t, "keys", "shred", "-config", polPath, "-org", "org_a", "-confirm", "org_a", "-delete-kms-key"); exitCode(err) != 2 {
		t.Errorf("shred deleting the shared key: %v, want a usage error", err)
	}
	out, errOut, err := runCLI(t, "keys", "shred", "-config", polPath, "-org", "org_b", "-confirm", "org_b", "-delete-kms-key")
	if err != nil || !strings.Contains(out, "scheduled for deletion") {
		t.Fatalf("shred org_b: %q %v %s", out, err, errOut)
	}
	desc, err := srv.Client(t).DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: &ownID})
	if err != nil || desc.KeyMetadata.KeyState != types.KeyStatePendingDeletion {
		t.Errorf("org_b's key after shred: %v %v, want pending deletion", desc, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if !strings.Contains(string(raw), `"event":"key_shred","org":"org_b"`) || !strings.Contains(string(raw), "kms_key_deletion") {
		t.Errorf("audit trail:\n%s", raw)
	}
}

// TestKMSOutage: with KMS down at start, phiguard starts but is not ready
// and refuses PHI (503), never plaintext; once KMS answers, the watch
// loads the keyring and traffic flows. KMS down later: loaded orgs keep
// working, an org added meanwhile answers 503 until KMS is back.
func TestKMSOutage(t *testing.T) {
	rig := newKMSRig(t)
	srv, polPath := rig.srv, rig.polPath
	app := newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	src := rig.policy(app, "reload: {watch: false}", "reload: {interval: 20ms}")
	writeFile(t, polPath, src)
	rig.create(t, "org_a")
	post := func(s *opsStack, org string) int {
		t.Helper()
		resp, err := http.PostForm("http://"+s.proxy+"/hooks/"+org, url.Values{"Body": {"PHI"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	srv.SetDown(true)
	s := startOps(t, src)
	code, body := httpGet(t, "http://"+s.admin+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "keyring") || !strings.Contains(body, "org_a") {
		t.Errorf("/readyz with KMS down at start: %d %s, want 503 naming the keyring and org_a", code, body)
	}
	if got := post(s, "org_a"); got != http.StatusServiceUnavailable {
		t.Errorf("PHI with KMS down at start: %d, want 503", got)
	}
	srv.SetDown(false)
	s.waitLog(t, "keyring reloaded", 1)
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 {
		t.Errorf("/readyz once KMS answers: %d %s", code, body)
	}
	if got := post(s, "org_a"); got != 200 {
		t.Errorf("PHI once KMS answers: %d, want 200", got)
	}

	// KMS down later; org_b is added meanwhile.
	srv.SetDown(true)
	if _, errOut, err := runCLI(t, "keys", "create", "-config", polPath, "-org", "org_b"); err == nil {
		t.Fatalf("create with KMS down succeeded: %s", errOut)
	}
	srv.SetDown(false)
	if _, errOut, err := runCLI(t, "keys", "create", "-config", polPath, "-org", "org_b"); err != nil {
		t.Fatalf("create org_b: %v %s", err, errOut)
	}
	srv.SetDown(true)
	s.waitLog(t, "keyring reloaded", 2) // org_b's file appeared; it cannot unwrap
	if got := post(s, "org_a"); got != 200 {
		t.Errorf("a loaded org while KMS is down: %d, want 200", got)
	}
	if got := post(s, "org_b"); got != http.StatusServiceUnavailable {
		t.Errorf("an org added while KMS is down: %d, want 503", got)
	}
	if code, _ := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 {
		t.Errorf("/readyz after the first complete load: %d, want 200 (one org's keyset does not take the pod out)", code)
	}
	srv.SetDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for post(s, "org_b") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("org_b never became available once KMS answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRewrapCLI: an org's keyset made under the master key moves to KMS
// with keys rewrap: its tokens still open, list names the KMS key, and the
// audit trail has the move.
func TestRewrapCLI(t *testing.T) {
	r := newKMSRig(t)
	shared, own, dir, ring, polPath := r.shared, r.own, r.dir, r.keyring, r.polPath
	base := r.withAuditFile(r.policy("http://127.0.0.1:1"))
	for _, args := range [][]string{{"keys", "init", "-keyring", ring}, {"keys", "create", "-keyring", ring, "-org", "org_a"}, {"keys", "create", "-keyring", ring, "-org", "org_b"}} {
		if _, errOut, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
	}
	// Under aws-kms, keysets of the master key are refused unless the
	// policy accepts them for the move, and never for an org with its own key.
	writeFile(t, polPath, base)
	if _, _, err := runCLI(t, "keys", "rewrap", "-config", polPath, "-org", "org_a", "-to", shared); err == nil {
		t.Error("a keyset of the master key was read under aws-kms without accept_local")
	}
	writeFile(t, polPath, strings.Replace(base, "provider: aws-kms", "provider: aws-kms\n  accept_local: true", 1))
	if _, _, err := runCLI(t, "keys", "rewrap", "-config", polPath, "-org", "org_b", "-to", own); err == nil || !strings.Contains(err.Error(), "own KMS key") {
		t.Errorf("a keyset of the master key for an org with its own key: %v, want refused", err)
	}
	if list, _, err := runCLI(t, "keys", "list", "-config", polPath); exitCode(err) != 1 || !strings.Contains(list, "org_b\tunavailable") {
		t.Errorf("list with org_b refused: %q %v, want org_b shown unavailable and exit 1", list, err)
	}
	os.Remove(filepath.Join(ring, "orgs", "org_b.json")) // done with it
	local, err := keys.Open(context.Background(), ring, mustLocal(t, ring))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := local.Encrypt(context.Background(), "org_a", []byte(`"v"`))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCLI(t, "keys", "rewrap", "-config", polPath, "-org", "org_a", "-to", shared)
	if err != nil || !strings.Contains(out, "wrapped by aws-kms "+shared+" (was local master:") {
		t.Fatalf("rewrap: %q %v %s", out, err, errOut)
	}
	if list, _, err := runCLI(t, "keys", "list", "-config", polPath); err != nil || !strings.Contains(list, "org_a\twrapped by aws-kms "+shared) {
		t.Errorf("list after rewrap: %q %v", list, err)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	k, err := openKeyring(context.Background(), pol.File.Keys, pol.File.Orgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustOpen(t, k, "org_a", tok, "v")
	raw, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if !strings.Contains(string(raw), `"event":"key_rewrap","org":"org_a","from":"local master:`) {
		t.Errorf("audit trail:\n%s", raw)
	}
}

// TestReverifyRevokesInRunningSidecar: when reverify_every has passed, the
// keyring watch unwraps every keyset again, and an org whose KMS key was
// disabled loses its keys in the running sidecar.
func TestReverifyRevokesInRunningSidecar(t *testing.T) {
	r := newKMSRig(t)
	srv, ownID, polPath := r.srv, r.ownID, r.polPath
	writeFile(t, polPath, r.policy("http://127.0.0.1:1"))
	r.create(t, "org_a", "org_b")
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sc, err := newSidecar(ctx, polPath, pol, io.Discard, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	srv.DisableKey(ownID)
	sc.mu.Lock()
	sc.reloadKeys(ctx, causeWatch) // unchanged files, not yet due: nothing happens
	if got := sc.keys.ring.Load().Unavailable(); len(got) != 0 {
		t.Errorf("before reverify_every: unavailable %v", got)
	}
	sc.verified = time.Time{} // reverify_every has passed
	sc.reloadKeys(ctx, causeWatch)
	sc.mu.Unlock()
	if got := sc.keys.ring.Load().Unavailable(); len(got) != 1 || got[0] != "org_b" {
		t.Errorf("after reverify: unavailable %v, want org_b", got)
	}
	if _, err := sc.keys.AppendEncrypt(ctx, nil, "org_a", []byte(`"x"`)); err != nil {
		t.Errorf("org_a after reverify: %v", err)
	}
}

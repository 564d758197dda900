package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/metrics"
)

// opsStack is `phiguard serve` run in-process on a policy file the test
// may rewrite, with its stdout (the audit sink) failing on demand.
type opsStack struct {
	policy string         // the policy file
	proxy  string         // the proxy's address
	admin  string         // the admin listener's address
	stdout *failingStdout // the audit trail
	stderr *lockedBuffer  // the logs
	done   chan struct{}
	err    error // run's result, once done is closed
	cancel context.CancelFunc
}

// failingStdout is a stdout that fails every write while broken is set.
type failingStdout struct {
	lockedBuffer
	broken atomic.Bool
}

func (w *failingStdout) Write(p []byte) (int, error) {
	if w.broken.Load() {
		return 0, errors.New("no space left on device")
	}
	return w.lockedBuffer.Write(p)
}

func startOps(t *testing.T, src string) *opsStack {
	t.Helper()
	s := &opsStack{
		policy: filepath.Join(t.TempDir(), "policy.yaml"),
		stdout: &failingStdout{lockedBuffer: *newLockedBuffer()},
		stderr: newLockedBuffer(),
		done:   make(chan struct{}),
	}
	s.write(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		s.err = run(ctx, []string{"serve", "-config", s.policy}, s.stdout, s.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	s.admin = waitLogged(t, s.stderr, s.done, deadline.C, "admin listening")
	s.proxy = waitListening(t, s.stderr, s.done, deadline.C)
	return s
}

func (s *opsStack) write(t *testing.T, src string) {
	t.Helper()
	// Written aside and renamed into place, as a ConfigMap update does:
	// a reader never sees half a file.
	tmp := s.policy + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.policy); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits for the n-th log line (from 1) whose msg is msg.
func (s *opsStack) waitLog(t *testing.T, msg string, n int) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		seen := 0
		for _, line := range bytes.Split(s.stderr.Bytes(), []byte("\n")) {
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == msg {
				if seen++; seen == n {
					return rec
				}
			}
		}
		select {
		case <-s.stderr.written:
		case <-s.done:
			t.Fatalf("serve stopped before logging %q:\n%s", msg, s.stderr.Bytes())
		case <-deadline:
			t.Fatalf("no log %q (#%d):\n%s", msg, n, s.stderr.Bytes())
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadinessFollowsAuditSink: /readyz answers 503 naming the sink
// while the audit trail cannot be written, and 200 once it can again,
// without a request having to come first; /healthz stays 200.
func TestReadinessFollowsAuditSink(t *testing.T) {
	s := startOps(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "http://127.0.0.1:1"}
admin: {listen: "127.0.0.1:0"}
routes:
  - {name: tokens, match: {path: "/api/v1/tokens/**"}, deny: no personal access tokens}
`)
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Fatalf("/readyz at start: %d %s", code, body)
	}
	s.stdout.broken.Store(true)
	// A refusal is audited; the record cannot be written.
	if code, _ := httpGet(t, "http://"+s.proxy+"/api/v1/tokens/1"); code != http.StatusServiceUnavailable {
		t.Errorf("refusal with the audit trail down: %d, want 503", code)
	}
	code, body := httpGet(t, "http://"+s.admin+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "audit sink down: stdout") {
		t.Errorf("/readyz with the sink down: %d %s, want 503 naming stdout", code, body)
	}
	if code, _ := httpGet(t, "http://"+s.admin+"/healthz"); code != 200 {
		t.Errorf("/healthz with the sink down: %d, want 200 (alive, not ready)", code)
	}
	_, m := httpGet(t, "http://"+s.admin+"/metrics")
	for _, want := range []string{`phiguard_audit_sink_up{sink="stdout"} 0`, "phiguard_ready 0"} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("metrics while down: no %q", want)
		}
	}

	s.stdout.broken.Store(false)
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 {
		t.Errorf("/readyz once the sink recovered: %d %s, want 200", code, body)
	}
	if !bytes.Contains(s.stdout.Bytes(), []byte(`"event":"audit_sink_check","sink":"stdout"`)) {
		t.Errorf("no check line reached the recovered sink:\n%s", s.stdout.Bytes())
	}
	_, m = httpGet(t, "http://"+s.admin+"/metrics")
	for _, want := range []string{`phiguard_audit_sink_up{sink="stdout"} 1`, "phiguard_ready 1"} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("metrics after recovery: no %q", want)
		}
	}
}

const reloadPolicy = `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "APP"}
admin: {listen: "127.0.0.1:0"}
reload: {interval: 20ms}
routes:
  - {name: NAME, match: {path: /slow}, auth: none}
  - {name: tokens, match: {path: "/api/v1/tokens/**"}, deny: REASON}
`

// TestReloadSwapsPolicy: a changed policy file is put in force for new
// requests while a request in flight finishes on the policy it began
// with; an invalid file keeps the policy in force, is logged, audited and
// counted; a change to a restart-only key is reported, not applied.
func TestReloadSwapsPolicy(t *testing.T) {
	app, entered, release := slowApp(t)
	policyWith := func(route, reason string) string {
		return strings.NewReplacer("APP", app, "NAME", route, "REASON", reason).Replace(reloadPolicy)
	}
	s := startOps(t, policyWith("slow-a", "first reason"))

	slow := make(chan string, 1)
	go func() {
		code, body := httpGet(t, "http://"+s.proxy+"/slow")
		slow <- strings.Join([]string{http.StatusText(code), body}, " ")
	}()
	<-entered // the request is with the app, under the first policy

	// The route now denies /slow.
	s.write(t, strings.Replace(policyWith("slow-b", "second reason"), "{path: /slow}, auth: none}", "{path: /slow}, deny: closed}", 1))
	rec := s.waitLog(t, "policy reloaded", 1)
	if rec["cause"] != "file changed" {
		t.Errorf("reload cause %v, want file changed", rec["cause"])
	}
	if code, body := httpGet(t, "http://"+s.proxy+"/slow"); code != http.StatusForbidden || !strings.Contains(body, "closed") {
		t.Errorf("a new request after the reload: %d %s, want 403 closed", code, body)
	}
	release()
	if got := <-slow; got != "OK slow answer" {
		t.Errorf("the request in flight during the reload got %q, want the app's answer under the policy it began with", got)
	}

	// An invalid policy keeps the one in force.
	s.write(t, "version: 1\nroutes: [{name: x}]\n")
	rec = s.waitLog(t, "policy reload failed; the previous policy stays in force", 1)
	if err, _ := rec["err"].(string); !strings.Contains(err, "policy.yaml") {
		t.Errorf("reload failure logged %q, want the policy's problems with their place", err)
	}
	if code, _ := httpGet(t, "http://"+s.proxy+"/slow"); code != http.StatusForbidden {
		t.Errorf("after an invalid policy: %d, want 403 from the policy still in force", code)
	}
	_, m := httpGet(t, "http://"+s.admin+"/metrics")
	for _, want := range []string{
		`phiguard_policy_reloads_total{result="success"} 1`,
		`phiguard_policy_reloads_total{result="failure"} 1`,
		"phiguard_policy_reload_success 0",
		`phiguard_requests_total{code="200",decision="allow",route="slow-a"} 1`,
		`phiguard_requests_total{code="403",decision="deny",route="slow-b"} 2`,
	} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("metrics: no %q", want)
		}
	}
	audit := s.stdout.Bytes()
	for _, want := range []string{`"event":"policy_reload","result":"success","cause":"file changed"`, `"event":"policy_reload","result":"failure"`} {
		if !bytes.Contains(audit, []byte(want)) {
			t.Errorf("audit trail has no %s:\n%s", want, audit)
		}
	}

	// A new listen address needs a restart: reported, the rest applied.
	next := strings.Replace(policyWith("slow-c", "third reason"), `admin: {listen: "127.0.0.1:0"}`, `admin: {listen: "127.0.0.1:1"}`, 1)
	s.write(t, next)
	rec = s.waitLog(t, "policy reloaded", 2)
	if keys, _ := rec["restart_required"].([]any); len(keys) != 1 || keys[0] != "admin" {
		t.Errorf("restart_required %v, want [admin]", rec["restart_required"])
	}
	if code, body := httpGet(t, "http://"+s.proxy+"/api/v1/tokens/1"); code != http.StatusForbidden || !strings.Contains(body, "third reason") {
		t.Errorf("after a reload with a restart-only change: %d %s, want the new deny reason", code, body)
	}
	if code, _ := httpGet(t, "http://"+s.admin+"/healthz"); code != 200 {
		t.Errorf("the admin listener moved: %d", code)
	}
	_, m = httpGet(t, "http://"+s.admin+"/metrics")
	if !strings.Contains(m, "\nphiguard_restart_required 1\n") || !strings.Contains(m, "\nphiguard_policy_reload_success 1\n") {
		t.Error("metrics do not say a restart is required after a good reload")
	}
}

// slowApp is an app whose /slow waits: entered receives when a request
// reaches it, and release (safe to call twice; called when the test ends)
// lets every waiting request answer "slow answer". Other paths answer "ok".
func slowApp(t *testing.T) (url string, entered <-chan struct{}, release func()) {
	t.Helper()
	in, gate := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	url = newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			io.WriteString(w, "ok")
			return
		}
		in <- struct{}{}
		<-gate
		io.WriteString(w, "slow answer")
	}))
	return url, in, release
}

// newApp serves h on loopback until the test ends and returns its URL.
func newApp(t *testing.T, h http.Handler) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestScrapeShowsEverySeries: after traffic through a PHI route, /metrics
// holds every series metrics.Names lists; a route whose selector never
// finds its field has a coverage ratio below 1.
func TestScrapeShowsEverySeries(t *testing.T) {
	st := startStack(t, false)
	// The demo's send-message route encrypts $.body and
	// $.attachments[*].caption: a message without attachments leaves the
	// second selector without a field.
	if code, body := st.do(t, "POST", st.proxyURL+"/api/v1/conversations/cv_1/messages", "alice", "application/json", []byte(`{"body":"`+phi+`"}`)); code/100 != 2 {
		t.Fatalf("send: %d %s", code, body)
	}
	if code, _ := st.do(t, "GET", st.proxyURL+"/api/v1/tokens/1", "alice", "", nil); code != http.StatusForbidden {
		t.Fatalf("denied route: %d", code)
	}
	// The app calls a host no egress route names.
	if code, body := st.do(t, "POST", st.egressURL+"/collect", "", "application/json", []byte(`{"a":1}`), "Host", "collector.example.net"); code != http.StatusForbidden {
		t.Fatalf("unlisted destination: %d %s", code, body)
	}
	_, m := httpGet(t, "http://"+st.admin+"/metrics")
	for _, want := range []string{
		`phiguard_route_coverage_ratio{direction="request",route="send-message"} 0`,
		`phiguard_route_coverage_misses_total{direction="request",route="send-message"} 1`,
		`phiguard_selector_hits_total{direction="request",route="send-message",selector="$.body"} 1`,
		`phiguard_fields_total{action="encrypt",reason="",route="send-message"} 1`,
		`phiguard_refusals_total{code="denied"} 1`,
		`phiguard_egress_requests_total{code="403",decision="deny",destination="(unlisted)",route="(unmatched)"} 1`,
	} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("/metrics: no %q", want)
		}
	}
	// A selector that never found its field shows as a zero, from the
	// policy's load on: an alert can compare it with the checks.
	if want := `phiguard_selector_hits_total{direction="request",route="send-message",selector="$.attachments[*].caption"} 0`; !strings.Contains(m, "\n"+want+"\n") {
		t.Errorf("/metrics: no %q", want)
	}
	for _, name := range metrics.Names() {
		if !strings.Contains(m, "\n"+name+"{") && !strings.Contains(m, "\n"+name+" ") {
			t.Errorf("/metrics has no %s series", name)
		}
	}
	if strings.Contains(m, phi) {
		t.Error("/metrics holds PHI")
	}
}

// TestReloadKeepsUpstreamConnections: the transport to the app outlives a
// reload, so requests after it reuse the idle connection of the ones
// before.
func TestReloadKeepsUpstreamConnections(t *testing.T) {
	var conns atomic.Int64
	ln := listen(t)
	app := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })
	policyWith := func(reason string) string {
		return strings.NewReplacer("APP", "http://"+ln.Addr().String(), "NAME", "slow", "REASON", reason).Replace(reloadPolicy)
	}
	s := startOps(t, policyWith("first"))
	for i := range 3 {
		if code, body := httpGet(t, "http://"+s.proxy+"/slow"); code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
		if i == 0 {
			s.write(t, policyWith("second"))
			s.waitLog(t, "policy reloaded", 1)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the app saw %d connections for three sequential requests across a reload, want 1", n)
	}
}

// TestReadinessChecksUpstream: with admin.check_upstream, /readyz is 503
// while nothing listens at the app's address and 200 once the app does.
func TestReadinessChecksUpstream(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // the app is not up yet
	s := startOps(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "http://`+addr+`"}
admin: {listen: "127.0.0.1:0", check_upstream: true}
default: allow
`)
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "upstream unreachable") {
		t.Errorf("/readyz without the app: %d %s, want 503 upstream unreachable", code, body)
	}
	app, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the app's port was taken meanwhile: %v", err)
	}
	defer app.Close()
	if code, body := httpGet(t, "http://"+s.admin+"/readyz"); code != 200 {
		t.Errorf("/readyz with the app listening: %d %s, want 200", code, body)
	}
}

// TestDrain: told to stop, phiguard answers /readyz 503 at once yet keeps
// serving for drain_delay; a request still in flight at drain_timeout is
// cut off, its refusal is on the audit file before the file is closed,
// and serve returns an error (exit 1).
func TestDrain(t *testing.T) {
	app, entered, _ := slowApp(t)
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	s := startOps(t, strings.NewReplacer("APP", app, "AUDIT", auditFile).Replace(`version: 1
ingress: {listen: "127.0.0.1:0", upstream: "APP", drain_delay: 1s, drain_timeout: 300ms}
admin: {listen: "127.0.0.1:0"}
audit: {sinks: [{type: file, path: "AUDIT"}]}
routes:
  - {name: slow, match: {path: /slow}, auth: none}
  - {name: fast, match: {path: /fast}, auth: none}
`))
	slow := make(chan int, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + s.proxy + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-entered
	s.cancel() // SIGTERM
	s.waitLog(t, "draining", 1)
	if code, _ := httpGet(t, "http://"+s.admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d, want 503", code)
	}
	// Within drain_delay the listener still takes requests.
	if code, body := httpGet(t, "http://"+s.proxy+"/fast"); code != 200 || body != "ok" {
		t.Errorf("a request during drain_delay: %d %s, want the app's answer", code, body)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after drain_timeout")
	}
	if s.err == nil || !strings.Contains(s.err.Error(), "still in flight after ingress.drain_timeout") {
		t.Errorf("serve returned %v, want the drain deadline error", s.err)
	}
	if got := <-slow; got == 200 {
		t.Error("the request cut off by the drain deadline got 200")
	}
	trail, err := os.ReadFile(auditFile)
	if err != nil || !bytes.Contains(trail, []byte(`"route":"slow"`)) {
		t.Errorf("the cut-off request left no record before the audit file closed (%v):\n%s", err, trail)
	}
}

// TestReloadRetriesWhenKeysArrive: a valid policy whose keyring cannot be
// opened yet is refused, logged once and counted, and taken up by the
// watch, without a change to the file, once the keyring is there.
func TestReloadRetriesWhenKeysArrive(t *testing.T) {
	dir := t.TempDir()
	ring := func(name string) string { return filepath.Join(dir, name) }
	for _, args := range [][]string{{"keys", "init", "-keyring", ring("old")}, {"keys", "create", "-keyring", ring("old"), "-org", "org_a"}} {
		if _, stderr, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	policyWith := func(keyring string) string {
		return `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "http://127.0.0.1:1"}
admin: {listen: "127.0.0.1:0"}
reload: {interval: 20ms}
keys: {keyring: "` + keyring + `"}
orgs: [{id: org_a}]
routes:
  - {name: hook, match: {path: "/hooks/{org}"}, auth: none, org_from: {path_param: org}, encrypt_request: ["form:Body"]}
`
	}
	s := startOps(t, policyWith(ring("old")))
	s.write(t, policyWith(ring("new")))
	rec := s.waitLog(t, "policy reload failed; the previous policy stays in force", 1)
	if err, _ := rec["err"].(string); !strings.Contains(err, "keys init") {
		t.Errorf("reload failure %q, want the missing keyring named", err)
	}
	for _, args := range [][]string{{"keys", "init", "-keyring", ring("new")}, {"keys", "create", "-keyring", ring("new"), "-org", "org_a"}} {
		if _, stderr, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	s.waitLog(t, "policy reloaded", 1)
	if n := bytes.Count(s.stderr.Bytes(), []byte("policy reload failed")); n != 1 {
		t.Errorf("the same failure was logged %d times, want once", n)
	}
	_, m := httpGet(t, "http://"+s.admin+"/metrics")
	for _, want := range []string{`phiguard_keyring_reloads_total{result="success"} 2`, "phiguard_policy_reload_success 1"} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("metrics: no %q", want)
		}
	}
	if !strings.Contains(m, `phiguard_keyring_reloads_total{result="failure"}`) || strings.Contains(m, `phiguard_keyring_reloads_total{result="failure"} 0`) {
		t.Error("metrics: keyring failures not counted")
	}
}

// TestReloadNeedsTheAuditTrail: with fail_closed, a policy change the
// audit trail cannot record does not take effect.
func TestReloadNeedsTheAuditTrail(t *testing.T) {
	policyWith := func(reason string) string {
		return strings.NewReplacer("APP", "http://127.0.0.1:1", "NAME", "slow", "REASON", reason).Replace(reloadPolicy)
	}
	s := startOps(t, policyWith("first-reason"))
	s.stdout.broken.Store(true)
	s.write(t, policyWith("second-reason"))
	rec := s.waitLog(t, "policy reload failed; the previous policy stays in force", 1)
	if err, _ := rec["err"].(string); !strings.Contains(err, "audit trail did not take the reload's record") {
		t.Errorf("reload failure %q, want the audit trail named", err)
	}
	s.stdout.broken.Store(false)
	// The trail is back: the watch takes the same text up.
	s.waitLog(t, "policy reloaded", 1)
	if code, body := httpGet(t, "http://"+s.proxy+"/api/v1/tokens/1"); code != http.StatusForbidden || !strings.Contains(body, "second-reason") {
		t.Errorf("after the trail recovered: %d %s, want the new policy", code, body)
	}
}

// TestKeyringSwapUnderRunningServer: the keyring changes under a running
// phiguard as a Kubernetes Secret update changes it: keys are made apart,
// with the CLI, then published into a folder laid out as the kubelet
// writes a Secret volume (examples/kubernetes mounts one at KEYRING/orgs),
// swapped whole. New orgs and new primary keys apply without a restart,
// and tokens sealed before still open.
func TestKeyringSwapUnderRunningServer(t *testing.T) {
	var mu sync.Mutex
	stored := map[string]string{}
	app := newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		stored[r.URL.Path] = r.PostForm.Get("Body")
		mu.Unlock()
	}))
	base := t.TempDir()
	made, ring := filepath.Join(base, "made"), filepath.Join(base, "keyring")
	cli := func(args ...string) {
		t.Helper()
		if _, errOut, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
	}
	cli("keys", "init", "-keyring", made)
	cli("keys", "create", "-keyring", made, "-org", "org_a")
	// The master key comes from the environment, as in the example.
	master, err := os.ReadFile(filepath.Join(made, keys.MasterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(keys.MasterKeyEnv, string(master))
	// publish lays the made keysets out as the kubelet does: a versioned
	// folder, ..data a symlink to it replaced by rename, and each file a
	// symlink through ..data.
	orgs := filepath.Join(ring, "orgs")
	publish := func(version string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(orgs, version), 0o700); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(made, "orgs", "*.json"))
		for _, f := range files {
			name := filepath.Base(f)
			copyFile(t, f, filepath.Join(orgs, version, name))
			if _, err := os.Lstat(filepath.Join(orgs, name)); err != nil {
				os.Symlink(filepath.Join("..data", name), filepath.Join(orgs, name))
			}
		}
		os.Symlink(version, filepath.Join(orgs, "..data_tmp"))
		if err := os.Rename(filepath.Join(orgs, "..data_tmp"), filepath.Join(orgs, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("..v1")
	s := startOps(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "`+app+`"}
admin: {listen: "127.0.0.1:0"}
reload: {interval: 20ms}
keys: {keyring: "`+ring+`"}
orgs: [{id: org_a}, {id: org_b}]
routes:
  - {name: hook, match: {methods: [POST], path: "/hooks/{org}"}, auth: none, org_from: {path_param: org}, encrypt_request: ["form:Body"]}
`)
	post := func(org string) (int, string) {
		t.Helper()
		resp, err := http.PostForm("http://"+s.proxy+"/hooks/"+org, url.Values{"Body": {"PHI"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		return resp.StatusCode, stored["/hooks/"+org]
	}
	if code, _ := post("org_b"); code != http.StatusServiceUnavailable {
		t.Errorf("an org without keys: %d, want 503", code)
	}
	_, first := post("org_a")

	// A new version with org_b: the Secret updated.
	cli("keys", "create", "-keyring", made, "-org", "org_b")
	publish("..v2")
	s.waitLog(t, "keyring reloaded", 1)
	if code, tok := post("org_b"); code != 200 || !strings.HasPrefix(tok, "ephi:v1:org_b:") {
		t.Errorf("org_b after the swap: %d %q, want a token", code, tok)
	}

	// keys rotate, published again.
	cli("keys", "rotate", "-keyring", made, "-org", "org_a")
	publish("..v3")
	s.waitLog(t, "keyring reloaded", 2)
	_, second := post("org_a")
	t1, _ := keys.ParseToken(first)
	t2, _ := keys.ParseToken(second)
	if t1.KeyID == t2.KeyID {
		t.Errorf("after keys rotate, new tokens still name key %08x", t2.KeyID)
	}
	k, err := keys.Open(context.Background(), ring, mustLocal(t, made))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{first, second} {
		if _, err := k.Decrypt(context.Background(), "org_a", []byte(tok)); err != nil {
			t.Errorf("a token from before or after the rotation: %v", err)
		}
	}
	trail := s.stdout.Bytes()
	if !bytes.Contains(trail, []byte(`"event":"keyring_reload","result":"success"`)) {
		t.Errorf("no keyring_reload record in the audit trail:\n%s", trail)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustLocal(t *testing.T, dir string) *keys.LocalProvider {
	t.Helper()
	p, err := keys.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

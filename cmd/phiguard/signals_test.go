package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mainArgsEnv, when set, makes the test binary run phiguard's main with
// these arguments (separated by U+001F) instead of the tests: a real process to
// send real signals to.
const mainArgsEnv = "PHIGUARD_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(mainArgsEnv); args != "" {
		os.Args = append([]string{"phiguard"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const signalsPolicy = `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "APP", drain_timeout: 30s}
admin: {listen: "127.0.0.1:0"}
reload: {watch: false}
audit: {sinks: [{type: file, path: audit.jsonl}]}
routes:
  - {name: slow, match: {path: /slow}, auth: none}
  - {name: tokens, match: {path: "/api/v1/tokens/**"}, deny: REASON}
`

// TestSignals runs phiguard as a process. SIGHUP reloads the policy and
// reopens the audit file after logrotate renamed it; SIGTERM turns
// readiness off, lets a slow request in flight finish, and exits 0.
func TestSignals(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	app := newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "slow answer")
	}))
	dir := t.TempDir()
	polPath, auditPath := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "audit.jsonl")
	writePolicy := func(reason string) {
		src := strings.NewReplacer("APP", app, "REASON", reason).Replace(signalsPolicy)
		if err := os.WriteFile(polPath, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy("first-reason")

	stderr := newLockedBuffer()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"=serve\x1f-config\x1f"+polPath)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	admin := waitLogged(t, stderr, exited, deadline.C, "admin listening")
	proxy := waitLogged(t, stderr, exited, deadline.C, "phiguard listening")

	if code, body := httpGet(t, "http://"+proxy+"/api/v1/tokens/1"); code != http.StatusForbidden || !strings.Contains(body, "first-reason") {
		t.Fatalf("before SIGHUP: %d %s", code, body)
	}
	// logrotate: rename, then SIGHUP (its postrotate).
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	writePolicy("second-reason")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogMsg(t, stderr, exited, deadline.C, "policy reloaded")
	if code, body := httpGet(t, "http://"+proxy+"/api/v1/tokens/1"); code != http.StatusForbidden || !strings.Contains(body, "second-reason") {
		t.Errorf("after SIGHUP: %d %s, want the reloaded policy's reason", code, body)
	}
	rotated, _ := os.ReadFile(auditPath + ".1")
	current, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatalf("no audit file at the path after SIGHUP: %v", err)
	}
	if !bytes.Contains(rotated, []byte("first-reason")) || bytes.Contains(rotated, []byte("second-reason")) {
		t.Errorf("rotated file:\n%s\nwant the first record only", rotated)
	}
	if !bytes.Contains(current, []byte("second-reason")) || bytes.Contains(current, []byte("first-reason")) {
		t.Errorf("reopened file:\n%s\nwant the record after SIGHUP only", current)
	}

	slow := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Get("http://" + proxy + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- resp.Status + " " + string(b)
	}()
	<-entered
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLogMsg(t, stderr, exited, deadline.C, "draining")
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s, want 503 draining", code, body)
	}
	close(release)
	if got := <-slow; got != "200 OK slow answer" {
		t.Errorf("the request in flight at SIGTERM got %q, want the app's answer", got)
	}
	select {
	case <-exited:
	case <-deadline.C:
		t.Fatalf("phiguard did not exit after draining:\n%s", stderr.Bytes())
	}
	if waitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want 0\n%s", waitErr, stderr.Bytes())
	}
}

// waitLogMsg waits for a log line whose msg is msg.
func waitLogMsg(t *testing.T, stderr *lockedBuffer, done <-chan struct{}, deadline <-chan time.Time, msg string) {
	t.Helper()
	for !bytes.Contains(stderr.Bytes(), []byte(`"msg":"`+msg+`"`)) {
		select {
		case <-stderr.written:
		case <-done:
			t.Fatalf("phiguard exited before logging %q:\n%s", msg, stderr.Bytes())
		case <-deadline:
			t.Fatalf("no log %q:\n%s", msg, stderr.Bytes())
		}
	}
}

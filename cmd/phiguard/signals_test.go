package main

import (
	"bytes"
	"errors"
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
	app, entered, release := slowApp(t)
	dir := t.TempDir()
	polPath, auditPath := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "audit.jsonl")
	writePolicy := func(reason string) {
		src := strings.NewReplacer("APP", app, "REASON", reason).Replace(signalsPolicy)
		if err := os.WriteFile(polPath, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy("first-reason")

	p := startProcess(t, polPath)
	cmd, stderr, exited, deadline := p.cmd, p.stderr, p.exited, p.deadline
	admin := waitLogged(t, stderr, exited, deadline, "admin listening")
	proxy := waitLogged(t, stderr, exited, deadline, "phiguard listening")

	if code, body := httpGet(t, "http://"+proxy+"/api/v1/tokens/1"); code != http.StatusForbidden || !strings.Contains(body, "first-reason") {
		t.Fatalf("before SIGHUP: %d %s", code, body)
	}
	// logrotate: rename, then SIGHUP (its postrotate).
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	// Until phiguard reopens it, the audit file is not where auditors look.
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "SIGHUP") {
		t.Errorf("/readyz with the audit file rotated away: %d %s, want 503 asking for SIGHUP", code, body)
	}
	writePolicy("second-reason")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogMsg(t, stderr, exited, deadline, "policy reloaded")
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != 200 {
		t.Errorf("/readyz after SIGHUP: %d %s, want 200", code, body)
	}
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
	waitLogMsg(t, stderr, exited, deadline, "draining")
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s, want 503 draining", code, body)
	}
	release()
	if got := <-slow; got != "200 OK slow answer" {
		t.Errorf("the request in flight at SIGTERM got %q, want the app's answer", got)
	}
	select {
	case <-exited:
	case <-deadline:
		t.Fatalf("phiguard did not exit after draining:\n%s", stderr.Bytes())
	}
	if p.err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0\n%s", p.err, stderr.Bytes())
	}
}

// process is phiguard serve running as a process of its own.
type process struct {
	cmd      *exec.Cmd
	stderr   *lockedBuffer
	exited   chan struct{}
	err      error // Wait's, once exited is closed
	deadline <-chan time.Time
}

// startProcess runs phiguard serve -config polPath until it exits or the
// test ends (then it is killed).
func startProcess(t *testing.T, polPath string) *process {
	t.Helper()
	p := &process{stderr: newLockedBuffer(), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), mainArgsEnv+"=serve\x1f-config\x1f"+polPath)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	timer := time.NewTimer(20 * time.Second)
	p.deadline = timer.C
	t.Cleanup(func() {
		timer.Stop()
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// TestSecondSignalForcesDrain: a second SIGTERM during the drain stops
// waiting for the requests in flight; the exit status says some were cut.
func TestSecondSignalForcesDrain(t *testing.T) {
	app, entered, _ := slowApp(t)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	src := strings.NewReplacer("APP", app, "drain_timeout: 30s", "drain_timeout: 10m", "REASON", "x").Replace(signalsPolicy)
	if err := os.WriteFile(polPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, polPath)
	proxy := waitLogged(t, p.stderr, p.exited, p.deadline, "phiguard listening")
	go func() {
		c := &http.Client{Timeout: 20 * time.Second}
		if resp, err := c.Get("http://" + proxy + "/slow"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitLogMsg(t, p.stderr, p.exited, p.deadline, "draining")
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-p.deadline:
		t.Fatalf("a second SIGTERM did not end the 10-minute drain:\n%s", p.stderr.Bytes())
	}
	if !bytes.Contains(p.stderr.Bytes(), []byte("second signal")) {
		t.Errorf("no log of the second signal:\n%s", p.stderr.Bytes())
	}
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1 (requests were cut)", p.err)
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

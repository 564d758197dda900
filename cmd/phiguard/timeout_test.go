package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startServe runs `phiguard serve` with the policy src until the test ends
// and returns the address it listens on and its stdout (the audit trail).
func startServe(t *testing.T, src string) (string, *lockedBuffer) {
	t.Helper()
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := newLockedBuffer(), newLockedBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, []string{"serve", "-config", pol}, stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	return waitListening(t, stderr, done, deadline.C), stdout
}

// TestSlowBodyIsCutOff: a client that sends headers and part of a body,
// then stalls, gets 408 once ingress.read_timeout has passed, and the app
// is never called.
func TestSlowBodyIsCutOff(t *testing.T) {
	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring")
	for _, args := range [][]string{{"keys", "init", "-keyring", keyring}, {"keys", "create", "-keyring", keyring, "-org", "org_a"}} {
		if _, stderr, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	var appHits atomic.Int64
	appLn := listen(t)
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { appHits.Add(1) })}
	go app.Serve(appLn)
	t.Cleanup(func() { app.Close() })

	addr, stdout := startServe(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "http://`+appLn.Addr().String()+`", read_timeout: 300ms}
admin: {listen: "127.0.0.1:0"}
keys: {keyring: "`+keyring+`"}
audit: {sinks: [{type: stdout}]}
orgs: [{id: org_a}]
routes:
  - name: carrier
    match: {methods: [POST], path: "/webhooks/sms/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body"]
`)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // the test's own bound, far above read_timeout
	fmt.Fprintf(conn, "POST /webhooks/sms/org_a HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nBody=CANARY-PHI-slow")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled body: status %d, want 408", resp.StatusCode)
	}
	if n := appHits.Load(); n != 0 {
		t.Errorf("the app saw %d requests from a stalled body", n)
	}
	if !strings.Contains(string(stdout.Bytes()), `"status":408`) {
		t.Errorf("no audit record of the refusal:\n%s", stdout.Bytes())
	}
}

// TestClientThatStopsReadingFreesItsSlot: with one request slot, a client
// that asks for a large answer and never reads it holds the slot only until
// ingress.write_timeout; then other requests are served again.
func TestClientThatStopsReadingFreesItsSlot(t *testing.T) {
	big := strings.Repeat("x", 32<<20) // far more than the socket buffers hold
	appLn := listen(t)
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
		}
	})}
	go app.Serve(appLn)
	t.Cleanup(func() { app.Close() })
	addr, _ := startServe(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "http://`+appLn.Addr().String()+`", max_concurrent_requests: 1, read_timeout: 1s, upstream_timeout: 1s, write_timeout: 3s}
admin: {listen: "127.0.0.1:0"}
audit: {sinks: [{type: stdout}]}
default: allow
routes: [{name: ping, match: {path: /ping}, auth: none}]
`)
	stalled, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(stalled, make([]byte, 1)); err != nil { // the answer has begun: the slot is taken
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	var sawBusy bool
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get("http://" + addr + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			break
		}
		sawBusy = true
		if time.Now().After(deadline) {
			t.Fatal("the slot of a client that stopped reading was never freed")
		}
		<-tick.C
	}
	if !sawBusy {
		t.Error("the stalled client never held the only slot; the test proves nothing")
	}
}

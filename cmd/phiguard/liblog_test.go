package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const stdlibCanary = "CANARY-PHI-stdlib-log"

// TestLibraryLogsWithholdUpstreamBytes: the app answers 204 or 304 with body
// bytes after the headers. net/http's Transport then logs, through the
// process-wide standard logger, "Unsolicited response received on idle HTTP
// channel starting with %q" — the first bytes of what may be a stored PHI
// value. Through `phiguard serve`, that line reaches stderr as a liblog
// record with the bytes withheld, and no byte of stderr or stdout (audit)
// holds them.
//
// Synchronization: the Transport's readLoop, finding bytes buffered on an
// idle connection, calls log.Printf (which returns only once the record is
// written to stderr) and only then closes the connection
// (persistConn.readLoopPeekFailLocked: log.Printf, then closeLocked, then
// conn.Close). The app reads each connection until EOF and reports it, so
// once the test has that report for a request, its line is written. The
// next request is sent only then: closeLocked marks the connection broken
// before closing it, so the Transport dials anew instead of sending the
// request where the unsolicited bytes wait. stderr is a locked buffer (the
// TCP close orders the writes in time, the lock makes reading them
// race-free), and it is read only after run has returned.
func TestLibraryLogsWithholdUpstreamBytes(t *testing.T) {
	// One keyring and one JWKS for every case: an RSA key takes a while.
	ids := &stack{dir: t.TempDir(), tokens: map[string]string{}}
	keyring := filepath.Join(ids.dir, "keyring")
	for _, args := range [][]string{{"keys", "init", "-keyring", keyring}, {"keys", "create", "-keyring", keyring, "-org", "org_a"}} {
		if _, stderr, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	ids.writeIdentities(t)
	for _, tc := range []struct {
		name, head string
		status     int
	}{
		{"204", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 204},
		{"204 claiming a length", "HTTP/1.1 204 No Content\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n", 204},
		{"304", "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n", 304},
	} {
		t.Run(tc.name, func(t *testing.T) {
			libraryLogCanary(t, ids, tc.head, tc.status)
		})
	}
}

// libraryLogCanary runs `phiguard serve` in front of an app that answers
// every request with head followed by a body holding the canary.
func libraryLogCanary(t *testing.T, ids *stack, head string, status int) {
	body := `{"note":"` + stdlibCanary + ` biopsy result, stored value"}`
	app := startRawApp(t, head+body)
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	src := `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "http://` + app.addr + `"}
admin: {listen: "127.0.0.1:0"}
identity:
  jwt: {jwks: "` + filepath.Join(ids.dir, "jwks.json") + `", issuer: "https://auth.demo.example", audience: messaging-app}
keys: {keyring: "` + filepath.Join(ids.dir, "keyring") + `"}
audit: {sinks: [{type: stdout}]}
orgs: [{id: org_a}]
routes:
  - name: ping
    match: {methods: [GET], path: /api/v1/ping}
    auth: none
  - name: read-note
    match: {methods: [GET], path: "/api/v1/notes/{id}"}
    decrypt_response: ["$.note"]
    readers: [agent]
`
	if err := os.WriteFile(pol, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}

	stdout, stderr := newLockedBuffer(), newLockedBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	var serveErr error
	done := make(chan struct{}) // closed once run has returned serveErr
	go func() {
		defer close(done)
		serveErr = run(ctx, []string{"serve", "-config", pol}, stdout, stderr)
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second): // serve drains for up to 10s
			t.Fatal("serve did not stop")
		}
	}
	t.Cleanup(stop) // also on failure: run restores the standard logger before the next test
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	addr := waitListening(t, stderr, done, deadline.C)

	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	requests := []struct{ path, user string }{{"/api/v1/ping", ""}, {"/api/v1/notes/n1", "alice"}}
	for _, r := range requests {
		req, err := http.NewRequest("GET", "http://"+addr+r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.user != "" {
			req.Header.Set("Authorization", "Bearer "+ids.tokens[r.user])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", r.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("GET %s: got %d, want %d", r.path, resp.StatusCode, status)
		}
		// One request per app connection, one at a time: the next request
		// must not find this connection in the Transport's idle pool.
		select {
		case end := <-app.ends:
			if end.err != nil {
				t.Fatalf("app connection for %s: %v", r.path, end.err)
			}
			if end.path != r.path {
				t.Fatalf("app connection served %s, want %s", end.path, r.path)
			}
		case <-deadline.C:
			t.Fatalf("GET %s: phiguard never closed the app's connection", r.path)
		}
	}

	stop()
	if serveErr != nil {
		t.Fatalf("serve: %v", serveErr)
	}

	var unsolicited int
	for i, line := range bytes.Split(stderr.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Errorf("stderr line %d is not a JSON record: %v", i+1, err)
		}
		if rec["msg"] == "library log" && rec["source"] == "go-stdlib" &&
			rec["text"] == "Unsolicited response received on idle HTTP channel starting with" && rec["level"] == "WARN" {
			unsolicited++
		}
	}
	if unsolicited != len(requests) {
		t.Errorf("got %d unsolicited-response records, want %d (one per app connection):\n%s", unsolicited, len(requests), stderr.Bytes())
	}
	if !bytes.Contains(stdout.Bytes(), []byte(`"route":"read-note"`)) {
		t.Errorf("stdout lacks the read-note audit record:\n%s", stdout.Bytes())
	}
	for name, b := range map[string][]byte{"stderr": stderr.Bytes(), "stdout": stdout.Bytes()} {
		for i, line := range bytes.Split(b, []byte("\n")) {
			if bytes.Contains(line, []byte(stdlibCanary)) {
				t.Errorf("%s line %d holds the app's bytes: %s", name, i+1, line)
			}
		}
	}
}

// waitListening returns the address `phiguard serve` logged it listens on.
func waitListening(t *testing.T, stderr *lockedBuffer, done <-chan struct{}, deadline <-chan time.Time) string {
	t.Helper()
	return waitLogged(t, stderr, done, deadline, "phiguard listening")
}

// waitLogged returns the addr of the first log line whose msg is msg.
func waitLogged(t *testing.T, stderr *lockedBuffer, done <-chan struct{}, deadline <-chan time.Time, msg string) string {
	t.Helper()
	for {
		for _, line := range bytes.Split(stderr.Bytes(), []byte("\n")) {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == msg && rec.Addr != "" {
				return rec.Addr
			}
		}
		select {
		case <-stderr.written:
		case <-done:
			t.Fatalf("serve stopped before listening:\n%s", stderr.Bytes())
		case <-deadline:
			t.Fatalf("serve did not listen:\n%s", stderr.Bytes())
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use that signals
// written after each write.
type lockedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{written: make(chan struct{}, 1)} }

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// rawApp is an app on a raw TCP listener: for each connection it reads one
// request, writes resp verbatim, then reads until the peer closes (or 10s
// pass) and reports on ends.
type rawApp struct {
	addr string
	ends chan connEnd
}

type connEnd struct {
	path string
	err  error // nil: the peer closed the connection
}

func startRawApp(t *testing.T, resp string) *rawApp {
	t.Helper()
	ln := listen(t)
	a := &rawApp{addr: ln.Addr().String(), ends: make(chan connEnd)}
	stop := make(chan struct{})
	accepting := make(chan struct{})
	var conns sync.WaitGroup
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				end := serveRaw(c, resp)
				select {
				case a.ends <- end:
				case <-stop:
				}
			}()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		<-accepting
		conns.Wait()
	})
	return a
}

func serveRaw(c net.Conn, resp string) connEnd {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return connEnd{err: err}
	}
	if _, err := io.Copy(io.Discard, req.Body); err != nil {
		return connEnd{path: req.URL.Path, err: err}
	}
	if _, err := io.WriteString(c, resp); err != nil {
		return connEnd{path: req.URL.Path, err: err}
	}
	n, err := io.Copy(io.Discard, br)
	if err == nil && n > 0 {
		err = errors.New("a second request on the connection")
	}
	return connEnd{path: req.URL.Path, err: err}
}

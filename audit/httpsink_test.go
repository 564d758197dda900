package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// siem is a collector: it keeps what it accepted, and answers as told.
type siem struct {
	mu     sync.Mutex
	got    bytes.Buffer
	posts  int
	status int           // 0: 200
	hold   chan struct{} // when set, each POST waits for it
	auth   string
}

func (c *siem) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	hold, status := c.hold, c.status
	c.mu.Unlock()
	if hold != nil {
		<-hold
	}
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.auth = r.Header.Get("Authorization")
	if status != 0 && status != 200 {
		w.WriteHeader(status)
		return
	}
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		w.WriteHeader(415)
		return
	}
	c.posts++
	c.got.Write(body)
}

func (c *siem) set(status int, hold chan struct{}) {
	c.mu.Lock()
	c.status, c.hold = status, hold
	c.mu.Unlock()
}

func (c *siem) lines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got.String()
}

// eventually polls cond every 5ms for at most 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func openSIEMSink(t *testing.T, url, dir string, spool int64) *HTTPSink {
	t.Helper()
	s, err := OpenHTTPSink("siem", HTTPOptions{URL: url, SpoolDir: dir, SpoolBytes: spool, BatchLines: 7,
		Header: http.Header{"Authorization": {"Bearer t0ken"}}, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHTTPSinkDelivers: lines reach the collector in order, batched, as
// ndjson with the configured header; the chain verifies from what the
// collector received.
func TestHTTPSinkDelivers(t *testing.T) {
	sg, v := signingKey(t)
	c := &siem{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	sink := openSIEMSink(t, srv.URL, t.TempDir(), 0)
	a := New(Options{Sinks: []Sink{sink}, Signer: sg, CheckpointEvery: 5})
	for i := range 40 {
		if err := a.Record(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	eventually(t, "every line delivered", func() bool { n, _ := sink.Pending(); return n == 0 })
	sink.Close()
	rep := verify(t, v, VerifyOptions{RequireClosed: true}, []byte(c.lines()))
	if !rep.OK() || rep.Chains[0].Records != 40 {
		t.Fatalf("what the SIEM got: %v %+v", rep.Problem, rep.Chains)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.posts < 8 || c.auth != "Bearer t0ken" {
		t.Errorf("%d posts (want batches of at most 7 lines), auth %q", c.posts, c.auth)
	}
}

// TestHTTPSinkSlowCollector: a collector that does not answer does not
// hold records up: they are spooled, and sent, in order and whole, once
// it answers again.
func TestHTTPSinkSlowCollector(t *testing.T) {
	sg, v := signingKey(t)
	c := &siem{}
	hold := make(chan struct{})
	c.set(0, hold)
	srv := httptest.NewServer(c)
	defer srv.Close()
	sink := openSIEMSink(t, srv.URL, t.TempDir(), 0)
	a := New(Options{Sinks: []Sink{sink}, Signer: sg, CheckpointEvery: 5, Timeout: 10 * time.Second})
	for i := range 30 {
		// Each returns while the collector holds its first POST.
		if err := a.Record(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := sink.Pending(); n == 0 {
		t.Fatal("nothing spooled while the collector hangs")
	}
	close(hold)
	c.set(0, nil)
	a.Close()
	eventually(t, "the spool drained", func() bool { n, _ := sink.Pending(); return n == 0 })
	sink.Close()
	if rep := verify(t, v, VerifyOptions{RequireClosed: true}, []byte(c.lines())); !rep.OK() || rep.Chains[0].Records != 30 {
		t.Fatalf("after the collector came back: %v %+v", rep.Problem, rep.Chains)
	}
}

// TestHTTPSinkFullSpoolFailsClosed: with the collector down, the spool
// fills; then records are refused (a fail-closed trail refuses the
// request), and nothing spooled is lost: it is sent once the collector
// is back, after a restart too.
func TestHTTPSinkFullSpoolFailsClosed(t *testing.T) {
	c := &siem{}
	c.set(503, nil)
	srv := httptest.NewServer(c)
	defer srv.Close()
	dir := t.TempDir()
	sink := openSIEMSink(t, srv.URL, dir, 2000)
	a := New(Options{Sinks: []Sink{sink}, FailClosed: true})
	var refused error
	for i := 0; i < 100 && refused == nil; i++ {
		refused = a.Record(context.Background(), record(i))
	}
	if !errors.Is(refused, ErrUnavailable) || !strings.Contains(refused.Error(), "spool is full") {
		t.Fatalf("with the spool full: %v", refused)
	}
	if sink.Health() == nil {
		t.Error("Health says nothing of the full spool")
	}
	eventually(t, "a failed send noted", func() bool { _, err := sink.Pending(); return err != nil })
	if _, err := sink.Pending(); !strings.Contains(err.Error(), "503") {
		t.Errorf("the last send's failure: %v", err)
	}
	a.Close()
	sink.Close()
	spooled, _ := filepath.Glob(filepath.Join(dir, "segment-*.jsonl"))
	if len(spooled) == 0 {
		t.Fatal("the spool is gone after Close")
	}
	// Restarted, with the collector back: the spool is sent.
	c.set(0, nil)
	again := openSIEMSink(t, srv.URL, dir, 2000)
	eventually(t, "the spool sent after the restart", func() bool { n, _ := again.Pending(); return n == 0 })
	again.Close()
	if got := c.lines(); !strings.Contains(got, "req-000") || strings.Count(got, "\n") < 5 {
		t.Errorf("the collector got:\n%s", got)
	}
}

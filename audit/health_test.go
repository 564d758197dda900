package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// switchSink fails while broken is set.
type switchSink struct {
	broken atomic.Bool
	lines  [][]byte
}

func (s *switchSink) Write(_ context.Context, lines []byte) error {
	if s.broken.Load() {
		return errors.New("disk full")
	}
	for l := range bytes.Lines(lines) {
		if l, own := unchain(l); !own {
			s.lines = append(s.lines, l)
		}
	}
	return nil
}

func (s *switchSink) Name() string { return "switch" }

// TestAuditorCheck: a sink whose write failed is down, and Check says so
// (by name, for a fail-closed auditor) until a check line gets through.
// The check line goes through the chain, so every sink gets it; Check
// writes nothing while every sink is up. Counts are of lines: the first
// write also carries the chain's chain_start line.
func TestAuditorCheck(t *testing.T) {
	ctx := context.Background()
	sw, ok := &switchSink{}, &recordingSink{}
	a := NewAuditor(nil, true, ok, sw)
	a.now = func() time.Time { return time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC) }

	if err := a.Check(ctx); err != nil {
		t.Fatalf("Check with every sink up: %v", err)
	}
	if len(ok.lines)+len(sw.lines) != 0 {
		t.Fatal("Check wrote to sinks that are up")
	}

	sw.broken.Store(true)
	if err := a.Record(ctx, sample()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Record with a broken sink: %v, want ErrUnavailable", err)
	}
	err := a.Check(ctx)
	if !errors.Is(err, ErrSinkDown) || !strings.Contains(err.Error(), "switch") || strings.Contains(err.Error(), "sink0") {
		t.Fatalf("Check with a broken sink: %v, want ErrSinkDown naming switch only", err)
	}
	st := a.Sinks()
	// start, record, the sink-down event, the check line.
	if st[0] != (SinkStatus{Name: "sink0", Written: 4, Up: true}) || st[1] != (SinkStatus{Name: "switch", Failed: 4, Up: false}) {
		t.Errorf("statuses while down: %+v", st)
	}

	sw.broken.Store(false)
	if err := a.Check(ctx); err != nil {
		t.Fatalf("Check once the sink recovered: %v", err)
	}
	if len(sw.lines) != 1 {
		t.Fatalf("the recovered sink got %d lines, want the check line", len(sw.lines))
	}
	var check map[string]string
	if err := json.Unmarshal(sw.lines[0], &check); err != nil {
		t.Fatalf("check line %q: %v", sw.lines[0], err)
	}
	want := map[string]string{"time": "2026-12-01T09:00:00Z", "event": "audit_sink_check", "sink": "switch"}
	for k, v := range want {
		if check[k] != v {
			t.Errorf("check line %s = %q, want %q", k, check[k], v)
		}
	}
	if st := a.Sinks()[1]; !st.Up || st.Written != 2 || st.Failed != 4 { // the check line, the sink-up event
		t.Errorf("status after recovery: %+v", st)
	}
	if err := a.Check(ctx); err != nil || len(sw.lines) != 1 {
		t.Errorf("Check with every sink up again: %v, %d lines (want no new line)", err, len(sw.lines))
	}
}

// TestAuditorCheckFailOpen: an auditor that does not fail closed needs no
// sink, so Check does not hold readiness on one; it still retries it.
func TestAuditorCheckFailOpen(t *testing.T) {
	sw := &switchSink{}
	a := NewAuditor(nil, false, sw)
	sw.broken.Store(true)
	if err := a.Record(context.Background(), sample()); err != nil {
		t.Fatalf("fail-open Record: %v", err)
	}
	if err := a.Check(context.Background()); err != nil {
		t.Errorf("fail-open Check: %v, want nil", err)
	}
	if st := a.Sinks()[0]; st.Up || st.Failed != 4 {
		t.Errorf("status: %+v, want down after the record and the check", st)
	}
}

// TestFileSinkReopen: after the file is renamed (log rotation), lines go
// to the renamed file until Reopen, and to a new file at the path after.
func TestFileSinkReopen(t *testing.T) {
	dir := t.TempDir()
	path, rotated := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.jsonl.1")
	s, err := OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	mustWrite(t, s, numbered(1))
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, numbered(2))
	if err := s.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	mustWrite(t, s, numbered(3))
	if err := s.Write(ctx, numbered(4)); err != nil {
		t.Fatal(err)
	}
	assertFile(t, rotated, numberedRange(1, 3))
	assertFile(t, path, numberedRange(3, 5))
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("reopened file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
}

// closeWatcher records whether it was closed while its writer was inside
// a write.
type closeWatcher struct {
	w             *gateWriter
	closed        atomic.Bool
	closedInWrite atomic.Bool
}

func (c *closeWatcher) Close() error {
	c.closedInWrite.Store(c.w.inWrite.Load())
	c.closed.Store(true)
	return nil
}

// TestFileSinkReopenWhileWriting: a Reopen during a write takes effect
// for the next write, never in the middle of one: the old file is closed
// only once its write returned, and the line goes to it whole.
func TestFileSinkReopenWhileWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	gate := make(chan struct{})
	w := newGateWriter(gate, nil)
	old := &closeWatcher{w: w}
	s := NewWriterSink(path, w)
	s.path, s.c = path, old // a file sink whose current file is w
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), numbered(1)) }()
	waitInWrite(t, w)
	if err := s.Reopen(); err != nil {
		t.Fatalf("Reopen during a write: %v", err)
	}
	if err := s.Reopen(); err != nil { // a second one replaces the first
		t.Fatalf("second Reopen during a write: %v", err)
	}
	if old.closed.Load() {
		t.Fatal("the file being written was closed by Reopen")
	}
	gate <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, numbered(2))
	if !old.closed.Load() || old.closedInWrite.Load() {
		t.Errorf("old file closed %v, during a write %v; want closed after its write", old.closed.Load(), old.closedInWrite.Load())
	}
	if len(w.writes) != 1 || !bytes.Equal(w.writes[0], numbered(1)) {
		t.Errorf("old writer got %q, want only line 1", w.writes)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertFile(t, path, numbered(2))
	if err := s.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
}

// TestFileSinkReopenFails: a path that cannot be opened leaves the sink
// writing where it did, and says why.
func TestFileSinkReopenFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "audit.jsonl")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Rename(filepath.Dir(path), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err == nil || !strings.Contains(err.Error(), "reopen audit file") {
		t.Fatalf("Reopen into a missing folder: %v, want an error", err)
	}
	mustWrite(t, s, numbered(1))
	assertFile(t, filepath.Join(dir, "moved", "audit.jsonl"), numbered(1))
}

func mustWrite(t *testing.T, s Sink, line []byte) {
	t.Helper()
	if err := s.Write(context.Background(), line); err != nil {
		t.Fatal(err)
	}
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", filepath.Base(path), got, want)
	}
}

// waitInWrite waits until a write has reached w, within a deadline.
func waitInWrite(t *testing.T, w *gateWriter) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !w.inWrite.Load() {
		if time.Now().After(deadline) {
			t.Fatal("no write reached the writer")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterSinkHealthStalled: a write that does not return is reported
// once it has run longer than the stall limit, and no longer once it
// returns.
func TestWriterSinkHealthStalled(t *testing.T) {
	gate := make(chan struct{})
	w := newGateWriter(gate, nil)
	s := NewWriterSink("pipe", w)
	s.stall = time.Millisecond
	if err := s.Health(); err != nil {
		t.Fatalf("idle sink: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), numbered(1)) }()
	waitInWrite(t, w)
	deadline := time.Now().Add(5 * time.Second)
	for s.Health() == nil {
		if time.Now().After(deadline) {
			t.Fatal("a blocked write was never reported")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Health(); !strings.Contains(err.Error(), "blocked") {
		t.Errorf("stalled sink: %v", err)
	}
	gate <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Health(); err != nil {
		t.Errorf("after the write returned: %v", err)
	}
}

// TestFileSinkHealthRotated: a file renamed or deleted under the sink is
// reported until Reopen puts a file back at the path.
func TestFileSinkHealthRotated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	s, err := OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Health(); err != nil {
		t.Fatalf("fresh file: %v", err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Health(); err == nil || !strings.Contains(err.Error(), "SIGHUP") {
		t.Errorf("rotated away: %v, want the path reported", err)
	}
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := s.Health(); err != nil {
		t.Errorf("reopened (pending until the next write): %v", err)
	}
	mustWrite(t, s, numbered(1))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Health(); err == nil {
		t.Error("deleted file: no problem reported")
	}
}

// blockingSink blocks each write until released, then fails it when
// fail is set.
type blockingSink struct {
	release chan struct{}
	fail    bool
}

func (s *blockingSink) Write(context.Context, []byte) error {
	<-s.release
	if s.fail {
		return errors.New("pipe closed")
	}
	return nil
}

// TestAuditorCheckDoesNotHang: a check line that does not get written
// ends Check when its context does, and the next Check does not pile a
// second line behind it; once the sink recovers, Check says so.
func TestAuditorCheckDoesNotHang(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{}), fail: true}
	a := NewAuditor(nil, true, sink)
	close(sink.release)
	if err := a.Record(context.Background(), sample()); err == nil {
		t.Fatal("Record to a failing sink succeeded")
	}
	sink.release, sink.fail = make(chan struct{}), false

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.Check(ctx); err == nil || !strings.Contains(err.Error(), "not written in time") {
		t.Fatalf("Check on a blocked sink: %v", err)
	}
	if err := a.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "still being written") {
		t.Fatalf("second Check while the first line is blocked: %v", err)
	}
	close(sink.release)
	deadline := time.Now().Add(5 * time.Second)
	for a.Check(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the sink never came back up")
		}
		time.Sleep(time.Millisecond)
	}
}

// orderedSink fails or succeeds each write as told, once released.
type orderedSink struct{ gates map[string]chan error }

func (s *orderedSink) Write(_ context.Context, line []byte) error {
	return <-s.gates[string(line)]
}

// TestAuditorSinkStateFollowsTheLastWriteBegun: an earlier write that
// succeeds after a later one failed does not mark the sink up.
func TestAuditorSinkStateFollowsTheLastWriteBegun(t *testing.T) {
	first, second := make(chan error), make(chan error, 1)
	sink := &orderedSink{gates: map[string]chan error{"a": first, "b": second}}
	a := NewAuditor(nil, true, sink)
	s := &a.sinks[0]
	done := make(chan error)
	go func() { done <- s.write(context.Background(), []byte("a"), 1) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.seq.Load() != 1 { // the first write has begun
		if time.Now().After(deadline) {
			t.Fatal("the first write did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	second <- errors.New("disk full")
	if err := s.write(context.Background(), []byte("b"), 1); err == nil {
		t.Fatal("second write succeeded")
	}
	first <- nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.isDown() {
		t.Error("the sink is up after its latest write failed")
	}
}

// TestSinkDownAndUpAreOnTheTrail: a sink that fails, and later takes
// lines again, is recorded as down and up by the sinks that stayed up,
// in the chain, which verifies whole there.
func TestSinkDownAndUpAreOnTheTrail(t *testing.T) {
	sg, v := signingKey(t)
	good, sw := &memSink{}, &switchSink{}
	a := New(Options{Sinks: []Sink{good, sw}, Signer: sg})
	ctx := context.Background()
	a.Record(ctx, record(1))
	sw.broken.Store(true)
	a.Record(ctx, record(2))
	a.Record(ctx, record(3))
	sw.broken.Store(false)
	a.Record(ctx, record(4))
	a.Close()
	trail := good.String()
	down := strings.Index(trail, `"event":"audit_sink_down","sink":"switch"`)
	up := strings.Index(trail, `"event":"audit_sink_up","sink":"switch"`)
	if down < 0 || up < down || strings.Count(trail, "audit_sink_down") != 1 || strings.Count(trail, "audit_sink_up") != 1 {
		t.Fatalf("the trail:\n%s", trail)
	}
	if rep := verify(t, v, VerifyOptions{RequireClosed: true}, []byte(trail)); !rep.OK() {
		t.Fatal(rep.Problem)
	}
}

// TestCloseDoesNotHangOnAHungSink: Close returns within the auditor's
// timeout even when a sink's write never returns.
func TestCloseDoesNotHangOnAHungSink(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	defer close(sink.release)
	a := New(Options{Sinks: []Sink{sink}, Timeout: 50 * time.Millisecond, FailClosed: true})
	if err := a.Record(context.Background(), sample()); err == nil {
		t.Fatal("a record written to a hung sink")
	}
	done := make(chan struct{})
	go func() { a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on the blocked sink")
	}
}

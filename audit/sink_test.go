package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// gateWriter keeps a copy of every write. With a gate, a write waits for a
// token from it first. fail[i] is the error of write i (from 0).
type gateWriter struct {
	gate chan struct{}
	fail map[int]error

	inWrite atomic.Bool
	overlap atomic.Bool // two writes ran at once

	mu     sync.Mutex
	writes [][]byte
	closed int // writes done when Close was called; -1 before
}

func newGateWriter(gate chan struct{}, fail map[int]error) *gateWriter {
	return &gateWriter{gate: gate, fail: fail, closed: -1}
}

func (w *gateWriter) Write(p []byte) (int, error) {
	if !w.inWrite.CompareAndSwap(false, true) {
		w.overlap.Store(true)
	}
	defer w.inWrite.Store(false)
	if w.gate != nil {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	i := len(w.writes)
	w.writes = append(w.writes, bytes.Clone(p))
	if err := w.fail[i]; err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *gateWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = len(w.writes)
	return nil
}

// numbered is a line that says i.
func numbered(i int) []byte { return fmt.Appendf(nil, "{\"n\":%d}\n", i) }

func numberedRange(from, to int) []byte {
	var b []byte
	for i := from; i < to; i++ {
		b = append(b, numbered(i)...)
	}
	return b
}

// TestWriterSinkGroupCommit: lines that arrive while the writer is busy are
// written together, in arrival order, and their callers share the error of
// that one write and no other.
func TestWriterSinkGroupCommit(t *testing.T) {
	errDisk := errors.New("disk full")
	const n = 8
	tests := []struct {
		name   string
		fail   map[int]error
		failed func(i int) bool // whether the caller of line i gets errDisk
	}{
		{"both batches written", nil, func(int) bool { return false }},
		{"the first batch fails", map[int]error{0: errDisk}, func(i int) bool { return i == 0 }},
		{"the second batch fails", map[int]error{1: errDisk}, func(i int) bool { return i > 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newGateWriter(make(chan struct{}), tt.fail)
				s := NewWriterSink("gate", w)
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() { errs[i] = s.Write(context.Background(), numbered(i)) })
					// Line 0 holds the writer, stopped at the gate; the others
					// gather in arrival order.
					synctest.Wait()
				}
				close(w.gate)
				wg.Wait()

				want := [][]byte{numbered(0), numberedRange(1, n)}
				if !slices.EqualFunc(w.writes, want, bytes.Equal) {
					t.Errorf("writes:\ngot  %q\nwant %q", w.writes, want)
				}
				for i, err := range errs {
					if errors.Is(err, errDisk) != tt.failed(i) || (err != nil) != tt.failed(i) {
						t.Errorf("line %d: got %v, want failure %v", i, err, tt.failed(i))
					}
					if err != nil && !strings.HasPrefix(err.Error(), "audit sink gate: ") {
						t.Errorf("line %d: error %q does not name the sink", i, err)
					}
				}
			})
		})
	}
}

// TestWriterSinkBatchBound: a batch holds at most limit bytes; a line that
// would overflow it waits for the next batch.
func TestWriterSinkBatchBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newGateWriter(make(chan struct{}), nil)
		s := NewWriterSink("gate", w)
		s.limit = 2 * len(numbered(0))
		const n = 6
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = s.Write(context.Background(), numbered(i)) })
			synctest.Wait()
		}
		// Line 0 is at the gate, lines 1 and 2 fill the next batch, 3, 4
		// and 5 wait for room. Let one write through at a time.
		for range 4 {
			w.gate <- struct{}{}
			synctest.Wait()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("line %d: %v", i, err)
			}
		}
		var sizes []int
		var seen []int
		for _, p := range w.writes {
			if len(p) > s.limit {
				t.Errorf("a write of %d bytes, past the limit of %d", len(p), s.limit)
			}
			lines := bytes.SplitAfter(p, []byte("\n"))
			lines = lines[:len(lines)-1] // after the last newline
			sizes = append(sizes, len(lines))
			for _, l := range lines {
				var v struct{ N int }
				if err := json.Unmarshal(l, &v); err != nil {
					t.Fatalf("a split line %q: %v", l, err)
				}
				seen = append(seen, v.N)
			}
		}
		if want := []int{1, 2, 2, 1}; !slices.Equal(sizes, want) {
			t.Errorf("lines per write: got %v, want %v", sizes, want)
		}
		if !slices.Equal(w.writes[1], numberedRange(1, 3)) {
			t.Errorf("second write: got %q, want lines 1 and 2", w.writes[1])
		}
		slices.Sort(seen)
		if want := []int{0, 1, 2, 3, 4, 5}; !slices.Equal(seen, want) {
			t.Errorf("lines written: got %v, want each of %v once", seen, want)
		}
	})
}

// TestWriterSinkConcurrent: under load, every line is written exactly once
// and whole, the writer never sees two writes at once, and each caller's
// lines keep their order.
func TestWriterSinkConcurrent(t *testing.T) {
	// The hand-over races it looks for are rare in any one run: a batch
	// started just after the writer was handed to an earlier one must not
	// take it. Rounds make a miss unlikely.
	const rounds = 15
	for _, limit := range []int{maxBatch, 100, 1} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			for range rounds {
				writeConcurrently(t, limit)
			}
		})
	}
}

// writeConcurrently has 16 callers write 200 numbered lines each through
// a sink with the given batch limit, and checks what the writer got.
func writeConcurrently(t *testing.T, limit int) {
	t.Helper()
	w := newGateWriter(nil, nil)
	s := NewWriterSink("gate", w)
	s.limit = limit
	const callers, each = 16, 200
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				if err := s.Write(context.Background(), numbered(c*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if w.overlap.Load() {
		t.Error("the writer saw two writes at once")
	}
	last := make([]int, callers)
	for c := range last {
		last[c] = -1
	}
	count := make(map[int]int)
	for _, l := range bytes.SplitAfter(bytes.Join(w.writes, nil), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var v struct{ N int }
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatalf("a split or interleaved line %q: %v", l, err)
		}
		count[v.N]++
		c, i := v.N/each, v.N%each
		if i <= last[c] {
			t.Errorf("caller %d: line %d after line %d", c, i, last[c])
		}
		last[c] = i
	}
	for i := range callers * each {
		if count[i] != 1 {
			t.Fatalf("line %d written %d times, want once", i, count[i])
		}
	}
}

// shortWriter writes only the first n[i] bytes of write i, without an
// error; a write past the table is written whole.
type shortWriter struct {
	n   []int
	buf bytes.Buffer
}

func (w *shortWriter) Write(p []byte) (int, error) {
	k := len(p)
	if len(w.n) > 0 {
		k, w.n = min(k, w.n[0]), w.n[1:]
	}
	w.buf.Write(p[:k])
	return k, nil
}

// TestWriterSinkShortWrite: a short write is an error, and a torn line does
// not glue itself to the next one.
func TestWriterSinkShortWrite(t *testing.T) {
	first, second := numbered(1), numbered(2)
	tests := []struct {
		name string
		n    []int
		want string // what the writer holds after both lines
	}{
		{"nothing written", []int{0}, string(second)},
		{"torn line", []int{3}, string(first[:3]) + "\n" + string(second)},
		{"all but the newline", []int{len(first) - 1}, string(first[:len(first)-1]) + "\n" + string(second)},
		{"the newline after a torn line fails too", []int{3, 0}, string(first[:3]) + "\n" + string(second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &shortWriter{n: tt.n}
			s := NewWriterSink("short", w)
			err := s.Write(context.Background(), first)
			if !errors.Is(err, io.ErrShortWrite) || !strings.HasPrefix(err.Error(), "audit sink short: ") {
				t.Errorf("got %v, want audit sink short: %v", err, io.ErrShortWrite)
			}
			for range len(tt.n) - 1 {
				if err := s.Write(context.Background(), second); !errors.Is(err, io.ErrShortWrite) {
					t.Errorf("got %v, want %v", err, io.ErrShortWrite)
				}
			}
			if err := s.Write(context.Background(), second); err != nil {
				t.Fatal(err)
			}
			if got := w.buf.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriterSinkClose(t *testing.T) {
	var buf bytes.Buffer
	s := NewWriterSink("buf", &buf)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), numbered(1)); err == nil || !strings.HasPrefix(err.Error(), "audit sink buf: ") {
		t.Errorf("write after Close: got %v, want an audit sink buf error", err)
	}
	if buf.Len() != 0 {
		t.Errorf("written after Close: %q", buf.String())
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestWriterSinkCloseInFlight: Close lets the lines already accepted be
// written, fails the rest, and closes the writer last.
func TestWriterSinkCloseInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newGateWriter(make(chan struct{}), nil)
		s := NewWriterSink("gate", w)
		s.c = w
		s.limit = 2 * len(numbered(0))
		const n = 4
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = s.Write(context.Background(), numbered(i)) })
			synctest.Wait()
		}
		// Line 0 is at the gate, 1 and 2 wait in a batch, 3 waits for room.
		closed := make(chan error)
		go func() { closed <- s.Close() }()
		synctest.Wait()
		if errs[3] == nil {
			t.Error("the line waiting for room was accepted after Close")
		}
		if err := s.Write(context.Background(), numbered(n)); err == nil {
			t.Error("a write after Close was accepted")
		}
		select {
		case err := <-closed:
			t.Fatalf("Close returned %v while lines were in flight", err)
		default:
		}
		close(w.gate)
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i := range 3 {
			if errs[i] != nil {
				t.Errorf("line %d, accepted before Close: %v", i, errs[i])
			}
		}
		want := [][]byte{numbered(0), numberedRange(1, 3)}
		if !slices.EqualFunc(w.writes, want, bytes.Equal) {
			t.Errorf("writes: got %q, want %q", w.writes, want)
		}
		if w.closed != 2 {
			t.Errorf("the writer was closed after %d writes, want 2", w.closed)
		}
	})
}

func TestWriterSinkWritesJSONLines(t *testing.T) {
	var buf bytes.Buffer
	s := NewWriterSink("buf", &buf)
	for range 3 {
		if err := s.Write(context.Background(), line(sample())); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3", len(lines))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "request_id", "org", "method", "path", "actions", "fields", "decision", "status", "latency_ms"} {
		if _, ok := got[k]; !ok {
			t.Errorf("record lacks %q: %s", k, lines[0])
		}
	}
}

func TestFileSinkAppendsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for range 2 {
		s, err := OpenFileSink(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), line(sample())); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	raw, _ := os.ReadFile(path)
	if n := bytes.Count(raw, []byte("\n")); n != 2 {
		t.Errorf("file has %d lines, want 2 (appended)", n)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	if _, err := OpenFileSink(filepath.Join(t.TempDir(), "missing", "a.jsonl")); err == nil {
		t.Error("OpenFileSink in a missing folder succeeded")
	}
}

func BenchmarkWriterSinkParallel(b *testing.B) {
	s := NewWriterSink("discard", io.Discard)
	benchmarkSinkParallel(b, s)
}

// BenchmarkFileSinkParallel writes to a file, where a write is a system
// call, from 16 callers per CPU.
func BenchmarkFileSinkParallel(b *testing.B) {
	s, err := OpenFileSink(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(16)
	benchmarkSinkParallel(b, s)
}

func benchmarkSinkParallel(b *testing.B, s Sink) {
	l := line(typical())
	b.SetBytes(int64(len(l)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Write(context.Background(), l); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// countingWriter counts the calls made to it.
type countingWriter struct {
	mu    sync.Mutex
	calls int
	lines int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	w.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// TestWriterSinkBatchesOnOneCPU: on one CPU a writer cannot be interrupted
// by the other callers, so the caller that finds the writer idle lets the
// callers ready to run add their lines first: many lines, few writes.
func TestWriterSinkBatchesOnOneCPU(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	w := &countingWriter{}
	s := NewWriterSink("count", w)
	const n = 32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Write(context.Background(), numbered(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if w.lines != n {
		t.Fatalf("%d lines written, want %d", w.lines, n)
	}
	if w.calls > n/4 {
		t.Errorf("%d lines took %d writes; want them batched", n, w.calls)
	}
}

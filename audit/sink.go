package audit

import (
	"context"
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
	"time"
)

// Sink stores encoded records.
type Sink interface {
	// Write stores lines, one or more lines of the chain (each a JSON
	// object ended by '\n'), in order, and returns once they are stored
	// or failed. Write must not keep lines after it returns: the caller
	// reuses the buffer.
	Write(ctx context.Context, lines []byte) error
}

// maxBatch is the most bytes a WriterSink writes with one call, unless a
// single line is longer.
const maxBatch = 256 << 10

var errClosed = errors.New("closed")

// WriterSink writes records as JSON lines to a writer, by group commit.
//
// A line that finds the writer idle is written at once, with one call.
// Lines that arrive while the writer is busy gather into a batch, in
// arrival order; when the writer is free, the caller whose line started the
// batch writes it with one call, and each caller of the batch returns that
// call's error.
// So a busy sink makes one write per batch instead of one per line, lines
// are never split or interleaved, and no Write returns before its line was
// written or failed. A batch holds at most 256 KiB: a line that would
// overflow it waits for the next batch.
//
// A write that stops inside a line (a short write, or an error after part
// of the batch) fails every caller of its batch, though some of their lines
// may have been written whole; the next write starts with a newline, so the
// torn line stays on its own.
type WriterSink struct {
	name  string
	path  string        // the file's path, for a file sink
	limit int           // maxBatch; smaller in tests
	stall time.Duration // StallAfter; smaller in tests

	// w and c are the writer and what closes it, used by the caller that
	// holds the writer; pending, when set, replaces them before its next
	// write (a reopened file).
	w       io.Writer
	c       io.Closer
	pending *os.File

	mu sync.Mutex
	// changed is signalled (on mu) when next is taken, the writer is
	// handed on or goes idle: a line waiting for room, a batch waiting for
	// the writer, and Close, wait on it.
	changed sync.Cond
	writing bool   // a caller holds the writer
	next    *batch // lines waiting for the writer; nil if none, always nil unless writing
	spare   []byte // the buffer of a written batch, for the next one
	closed  bool

	// handed is the batch the writer was passed to, until its caller
	// takes it up. The writer is passed to one batch by name: a caller
	// whose batch started after the handing must not take it.
	handed *batch

	// torn is set when a write stopped inside a line. Only the caller that
	// holds the writer uses it.
	torn bool
	// since is when the write call in progress began (Unix nanoseconds);
	// 0 when none is.
	since atomic.Int64

	// rot is a file sink's rotation; size and opened are its current
	// file's, used by the caller that holds the writer.
	rot    Rotation
	size   int64
	opened time.Time
}

// StallAfter is how long one write may run before Health reports the sink
// stalled: a pipe nobody reads, a hung network file system.
const StallAfter = 5 * time.Second

// batch is lines to write with one call. The caller whose line started
// it writes it.
type batch struct {
	buf  []byte
	done sync.WaitGroup // done once buf was written or failed
	err  error          // the write's error, set before done
}

var _ Sink = (*WriterSink)(nil)

// NewWriterSink writes to w, named name in errors.
func NewWriterSink(name string, w io.Writer) *WriterSink {
	s := &WriterSink{name: name, w: w, limit: maxBatch, stall: StallAfter}
	s.changed.L = &s.mu
	return s
}

// OpenFileSink appends to the file at path, creating it owner-readable only.
func OpenFileSink(path string) (*WriterSink, error) {
	return OpenRotatingFileSink(path, Rotation{})
}

// Rotation says when a file sink starts a new file, and how long the old
// ones are kept. The zero value never rotates (an outside logrotate and
// SIGHUP may) and deletes nothing.
type Rotation struct {
	// MaxBytes starts a new file before a write would take the current
	// one past this size; 0: no limit.
	MaxBytes int64
	// MaxAge starts a new file once the current one is this old; 0: no
	// limit.
	MaxAge time.Duration
	// Retention deletes rotated files (PATH.TIME) last written longer ago
	// than this, after each rotation; 0: keep them all.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (r Rotation) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// rotatedLayout names a rotated file: PATH.20261202T074600.123456789Z.
const rotatedLayout = "20060102T150405.000000000Z"

// OpenRotatingFileSink appends to the file at path, and rotates it as r
// says: the file is renamed PATH.TIME (its rotation time, UTC) and a new
// one opened at path. The hash chain runs on across files; `phiguard
// audit verify` takes them in any order.
func OpenRotatingFileSink(path string, r Rotation) (*WriterSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	s := NewWriterSink(path, f)
	s.c, s.path = f, path
	s.rot = r
	if st, err := f.Stat(); err == nil {
		s.size, s.opened = st.Size(), r.now()
		if st.Size() > 0 {
			s.opened = st.ModTime() // a file that held lines is as old as its last one
		}
	}
	return s, nil
}

// Rotated lists the rotated files of a file sink at path, oldest first.
func Rotated(path string) ([]string, error) {
	names, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if _, err := time.Parse(rotatedLayout, strings.TrimPrefix(n, path+".")); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out) // the layout sorts by time
	return out, nil
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
}

// rotateIfDue starts a new file before writing n more bytes when the
// current one is due; the caller holds the writer. A rotation that fails
// is logged by the error of the write: the lines go to the current file.
func (s *WriterSink) rotateIfDue(n int) error {
	r := s.rot
	if s.path == "" || r.MaxBytes <= 0 && r.MaxAge <= 0 {
		return nil
	}
	now := r.now()
	due := r.MaxBytes > 0 && s.size > 0 && s.size+int64(n) > r.MaxBytes ||
		r.MaxAge > 0 && s.size > 0 && now.Sub(s.opened) >= r.MaxAge
	if !due {
		return nil
	}
	name := s.path + "." + now.UTC().Format(rotatedLayout)
	if err := os.Rename(s.path, name); err != nil {
		return fmt.Errorf("rotate audit file: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		// Lines keep going to the renamed file: nothing is lost, and
		// Health reports the path no longer names it.
		return fmt.Errorf("rotate audit file: %w", err)
	}
	old := s.c
	s.w, s.c = f, f
	s.size, s.opened, s.torn = 0, now, false
	if old != nil {
		old.Close()
	}
	if r.Retention > 0 {
		s.prune(now.Add(-r.Retention))
	}
	return nil
}

// prune deletes rotated files last written before cutoff.
func (s *WriterSink) prune(cutoff time.Time) {
	names, err := Rotated(s.path)
	if err != nil {
		return
	}
	for _, n := range names {
		if st, err := os.Stat(n); err == nil && st.ModTime().Before(cutoff) {
			os.Remove(n)
		}
	}
}

// Name is the name the sink was given: the file's path for a file sink.
func (s *WriterSink) Name() string { return s.name }

// Reopen opens the sink's file again at its path, creating it if it was
// moved away, and writes every later line there: after a log rotation,
// the old file gets no more lines once the write in progress, if any, is
// done. A sink that is not a file does nothing. If the file cannot be
// opened, the sink keeps writing to the one it has.
func (s *WriterSink) Reopen() error {
	if s.path == "" {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("reopen audit file: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		f.Close()
		return fmt.Errorf("audit sink %s: %w", s.name, errClosed)
	}
	if s.pending != nil {
		s.pending.Close() // a reopen no write has taken up yet
	}
	s.pending = f
	if s.writing {
		// The caller that holds the writer, or the next, takes it up.
		s.mu.Unlock()
		return nil
	}
	old := s.takePending()
	s.mu.Unlock()
	return closeOld(old)
}

// Health reports what keeps the sink from taking lines although its
// writes do not fail: a write blocked for longer than StallAfter, or, for
// a file sink, a path that no longer names the file being written (it was
// rotated away and not reopened, or deleted), so that the lines go where
// nobody will look.
func (s *WriterSink) Health() error {
	if t := s.since.Load(); t != 0 {
		if d := time.Since(time.Unix(0, t)); d > s.stall {
			return fmt.Errorf("a write has been blocked for %s", d.Round(time.Second))
		}
	}
	if s.path == "" {
		return nil
	}
	s.mu.Lock()
	cur := s.c
	if s.pending != nil {
		cur = s.pending
	}
	s.mu.Unlock()
	f, ok := cur.(*os.File)
	if !ok {
		return nil
	}
	open, err := f.Stat()
	if err != nil {
		return err
	}
	at, err := os.Stat(s.path)
	if err != nil || !os.SameFile(open, at) {
		return errors.New("the path no longer names the file being written (rotated without a reopen?); send SIGHUP")
	}
	return nil
}

// takePending puts a reopened file in place, if there is one, and returns
// what closes the one it replaces. The caller holds mu and the writer, or
// the writer is idle.
func (s *WriterSink) takePending() io.Closer {
	if s.pending == nil {
		return nil
	}
	old := s.c
	s.w, s.c, s.pending = s.pending, s.pending, nil
	s.torn = false // a new file starts on a line of its own
	s.size, s.opened = 0, s.rot.now()
	if f, ok := s.c.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			s.size = st.Size()
		}
	}
	return old
}

func closeOld(c io.Closer) error {
	if c == nil {
		return nil
	}
	return c.Close()
}

// Write writes line, alone if the writer is idle, else in the next batch,
// and returns once that write is done, with its error. It does not give up
// when ctx is done: a line once accepted is written, and its caller learns
// how that went.
func (s *WriterSink) Write(_ context.Context, line []byte) error {
	s.mu.Lock()
	for !s.closed && s.next != nil && len(s.next.buf)+len(line) > s.limit {
		s.changed.Wait() // the batch is full: wait until it is taken
	}
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("audit sink %s: %w", s.name, errClosed)
	}
	if !s.writing {
		// The writer is idle: this line starts a batch and its caller writes
		// it, after letting the goroutines ready to run add their lines. On
		// a busy core (a sidecar given one CPU) the others cannot run while
		// this one writes, so without the yield every line would be a write
		// of its own.
		s.writing = true
		b := &batch{buf: append(s.spare, line...)}
		b.done.Add(1)
		s.next, s.spare = b, nil
		s.mu.Unlock()
		runtime.Gosched()
		s.mu.Lock()
		s.next = nil
		old := s.takePending()
		s.mu.Unlock()
		s.changed.Broadcast() // lines waiting for room go to the next batch
		closeOld(old)
		err := s.write(b.buf)
		b.err = err
		s.release(b.buf)
		b.done.Done()
		return err
	}
	if b := s.next; b != nil {
		b.buf = append(b.buf, line...)
		s.mu.Unlock()
		b.done.Wait()
		return b.err
	}
	b := &batch{buf: append(s.spare, line...)}
	b.done.Add(1)
	s.next, s.spare = b, nil
	for s.handed != b {
		s.changed.Wait()
	}
	s.handed = nil
	old := s.takePending()
	s.mu.Unlock()
	closeOld(old)
	err := s.write(b.buf)
	b.err = err
	s.release(b.buf)
	b.done.Done()
	return err
}

// write writes p with one call; the caller holds the writer.
func (s *WriterSink) write(p []byte) error {
	if err := s.rotateIfDue(len(p)); err != nil {
		return fmt.Errorf("audit sink %s: %w", s.name, err)
	}
	if s.torn {
		// End the torn line, so that p starts on a line of its own.
		if err := s.write1([]byte{'\n'}); err != nil {
			return err
		}
	}
	return s.write1(p)
}

// write1 makes one call to w, and notes whether it stopped inside a line.
func (s *WriterSink) write1(p []byte) error {
	s.since.Store(time.Now().UnixNano())
	n, err := s.w.Write(p)
	s.since.Store(0)
	s.size += int64(n)
	if n > 0 {
		s.torn = p[min(n, len(p))-1] != '\n'
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("audit sink %s: %w", s.name, err)
	}
	return nil
}

// release passes the writer on, to the batch gathered meanwhile if there is
// one. buf is the written batch's buffer, kept for a later batch.
func (s *WriterSink) release(buf []byte) {
	s.mu.Lock()
	if buf != nil && cap(buf) <= s.limit {
		s.spare = buf[:0]
	}
	if s.next != nil {
		s.handed, s.next = s.next, nil
	} else {
		s.writing = false
	}
	s.mu.Unlock()
	s.changed.Broadcast()
}

// Close makes later writes fail, waits for the lines already accepted to be
// written, then closes the file if the sink opened one. Closing again does
// nothing.
func (s *WriterSink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.changed.Broadcast() // lines waiting for room fail
	for s.writing {
		s.changed.Wait()
	}
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	var err error
	if pending != nil {
		err = pending.Close()
	}
	if s.c == nil {
		return err
	}
	return errors.Join(s.c.Close(), err)
}

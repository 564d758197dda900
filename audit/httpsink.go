package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HTTPSink sends lines to a SIEM's HTTP collector, as newline-delimited
// JSON in POSTs of up to BatchLines lines, through a spool on local disk.
//
// Write appends the lines to the spool and returns: a slow or absent
// collector never holds a request up. Only a full spool (SpoolBytes of
// lines not yet accepted) fails a write, and so refuses the request on
// a fail-closed trail. A sender drains the spool in order, retrying with
// backoff until the collector answers 2xx; lines it accepted are dropped
// from the spool. Delivery is at least once: after a restart the unsent
// segment is sent from its start, and a collector can drop repeats by
// (chain, seq).
type HTTPSink struct {
	name string
	o    HTTPOptions

	mu      sync.Mutex
	changed *sync.Cond
	cur     *os.File // the segment being appended to
	curSeq  int
	curSize int64
	unsent  int64 // bytes in the spool not yet accepted
	closed  bool
	full    bool  // a write was refused for room; cleared once lines are sent
	lastErr error // the last send's failure; nil once one succeeds

	done chan struct{} // closed when the sender returns
	stop chan struct{} // closed by Close
}

// HTTPOptions configure an HTTPSink.
type HTTPOptions struct {
	// URL of the collector.
	URL string
	// Header is sent with every POST (Authorization).
	Header http.Header
	// SpoolDir holds the spool's segments. Required.
	SpoolDir string
	// SpoolBytes bounds the lines not yet accepted. Default 256 MiB.
	SpoolBytes int64
	// BatchLines bounds the lines of one POST. Default 500.
	BatchLines int
	// Client sends the POSTs. Default: a client with a 30s timeout.
	Client *http.Client
	// MinBackoff and MaxBackoff bound the wait between failed sends.
	// Defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Log receives send failures (never a line); nil discards them.
	Log *slog.Logger
}

// Defaults of HTTPOptions.
const (
	DefaultSpoolBytes = 256 << 20
	DefaultBatchLines = 500
	segmentBytes      = 8 << 20
)

// ErrSpoolFull: the collector has not taken lines for so long that the
// spool is full.
var ErrSpoolFull = errors.New("the SIEM spool is full: the collector has not accepted lines for too long")

// OpenHTTPSink opens the spool in o.SpoolDir, resending what it holds,
// and starts the sender. Close stops it.
func OpenHTTPSink(name string, o HTTPOptions) (*HTTPSink, error) {
	if o.SpoolBytes <= 0 {
		o.SpoolBytes = DefaultSpoolBytes
	}
	if o.BatchLines <= 0 {
		o.BatchLines = DefaultBatchLines
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	s := &HTTPSink{name: name, o: o, done: make(chan struct{}), stop: make(chan struct{})}
	s.changed = sync.NewCond(&s.mu)
	segs, err := s.segments()
	if err != nil {
		return nil, err
	}
	for _, seq := range segs {
		if st, err := os.Stat(s.segPath(seq)); err == nil {
			s.unsent += st.Size()
		}
	}
	next := 1
	if len(segs) > 0 {
		next = segs[len(segs)-1] + 1
	}
	if err := s.openSegment(next); err != nil {
		return nil, err
	}
	go s.send()
	return s, nil
}

// Name is the sink's name.
func (s *HTTPSink) Name() string { return s.name }

func (s *HTTPSink) segPath(seq int) string {
	return filepath.Join(s.o.SpoolDir, fmt.Sprintf("segment-%012d.jsonl", seq))
}

// segments lists the spool's segment numbers, oldest first.
func (s *HTTPSink) segments() ([]int, error) {
	names, err := filepath.Glob(filepath.Join(s.o.SpoolDir, "segment-*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, n := range names {
		seq, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "segment-"), ".jsonl"))
		if err == nil {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return out, nil
}

// openSegment starts segment seq; the caller holds mu or is the opener.
func (s *HTTPSink) openSegment(seq int) error {
	f, err := os.OpenFile(s.segPath(seq), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	if s.cur != nil {
		s.cur.Close()
	}
	s.cur, s.curSeq, s.curSize = f, seq, 0
	return nil
}

// Write appends lines to the spool and returns; ErrSpoolFull when the
// collector is so far behind that they do not fit.
func (s *HTTPSink) Write(_ context.Context, lines []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("audit sink %s: %w", s.name, errClosed)
	}
	if s.unsent+int64(len(lines)) > s.o.SpoolBytes {
		s.full = true
		return fmt.Errorf("audit sink %s: %w", s.name, ErrSpoolFull)
	}
	if s.curSize > 0 && s.curSize+int64(len(lines)) > segmentBytes {
		if err := s.openSegment(s.curSeq + 1); err != nil {
			return fmt.Errorf("audit sink %s: %w", s.name, err)
		}
	}
	n, err := s.cur.Write(lines)
	s.curSize += int64(n)
	s.unsent += int64(n)
	if err == nil && n < len(lines) {
		err = io.ErrShortWrite
	}
	s.changed.Broadcast()
	if err != nil {
		return fmt.Errorf("audit sink %s: spool: %w", s.name, err)
	}
	return nil
}

// Health reports a spool that refused lines for room, until the sender
// makes some: the trail is down. A collector that is only slow is not.
func (s *HTTPSink) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return ErrSpoolFull
	}
	return nil
}

// Pending is how many bytes of lines the collector has not accepted yet,
// and the last send's error.
func (s *HTTPSink) Pending() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unsent, s.lastErr
}

// send drains the spool, oldest segment first. After Close it stops at
// the first failure, or once the spool is empty.
func (s *HTTPSink) send() {
	defer close(s.done)
	backoff := s.o.MinBackoff
	var offset int64 // into the oldest segment: what was accepted
	for {
		s.mu.Lock()
		for !s.closed && s.unsent == 0 {
			s.changed.Wait()
		}
		if s.unsent == 0 || s.closed && s.lastErr != nil {
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		segs, err := s.segments()
		if err != nil || len(segs) == 0 {
			if !s.wait(backoff) {
				return
			}
			continue
		}
		oldest := segs[0]
		batch, next, err := s.readBatch(oldest, offset)
		if err == nil && len(batch) == 0 {
			s.mu.Lock()
			if oldest != s.curSeq {
				// Sent whole: drop it.
				os.Remove(s.segPath(oldest))
				offset = 0
				s.mu.Unlock()
				continue
			}
			s.mu.Unlock()
			err = errors.New("the spool's count and its segments disagree")
		}
		if err != nil {
			s.o.Log.Error("audit spool unreadable", "sink", s.name, "err", err)
			if !s.wait(backoff) {
				return
			}
			continue
		}
		if err := s.post(batch); err != nil {
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			s.o.Log.Warn("the SIEM did not accept audit lines; retrying", "sink", s.name, "err", err, "backoff", backoff)
			if !s.wait(backoff) {
				return
			}
			backoff = min(backoff*2, s.o.MaxBackoff)
			continue
		}
		backoff = s.o.MinBackoff
		offset = next
		s.mu.Lock()
		s.unsent -= int64(len(batch))
		s.lastErr, s.full = nil, false
		if oldest == s.curSeq && offset == s.curSize {
			// All sent: start the segment afresh.
			if err := s.cur.Truncate(0); err == nil {
				s.curSize, offset = 0, 0
			}
		}
		s.mu.Unlock()
	}
}

// readBatch reads up to BatchLines whole lines of segment seq from
// offset; next is the offset after them.
func (s *HTTPSink) readBatch(seq int, offset int64) (batch []byte, next int64, err error) {
	f, err := os.Open(s.segPath(seq))
	if err != nil {
		return nil, offset, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, err
	}
	r := bufio.NewReader(f)
	var b bytes.Buffer
	for n := 0; n < s.o.BatchLines; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // a partial line waits for its end
		}
		b.Write(line)
	}
	return b.Bytes(), offset + int64(b.Len()), nil
}

func (s *HTTPSink) post(batch []byte) error {
	req, err := http.NewRequest(http.MethodPost, s.o.URL, bytes.NewReader(batch))
	if err != nil {
		return err
	}
	for k, v := range s.o.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return errors.New(transportErrorKind(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the collector answered %d", resp.StatusCode)
	}
	return nil
}

// transportErrorKind names a transport error without its text (as
// engine.ErrorKind does; audit sits below engine).
func transportErrorKind(err error) string {
	var ue interface{ Timeout() bool }
	if errors.As(err, &ue) && ue.Timeout() {
		return "timeout"
	}
	return "connection failed"
}

// wait sleeps d, or until Close; false when closed.
func (s *HTTPSink) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}

// Close stops taking lines, lets the sender try to send what the spool
// holds until the first failure, and closes the spool; unsent lines stay
// in it for the next start.
func (s *HTTPSink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.changed.Broadcast()
	close(s.stop)
	s.mu.Unlock()
	<-s.done
	return s.cur.Close()
}

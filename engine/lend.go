package engine

import (
	"errors"
	"io"
	"sync"
)

// A lent body is a pooled buffer shared by the exchange that filled it and
// the readers an adapter opened on it: the last of them to let go wipes it
// and gives it back. An HTTP client may still be sending a request body
// after the response came back, and may reopen it to retry, so the sealed
// request body cannot simply be returned when the exchange closes.
type lent struct {
	mu   sync.Mutex
	buf  []byte
	refs int // the exchange, plus each open reader
}

func newLent(b []byte) *lent { return &lent{buf: b, refs: 1} }

// release drops one reference; the last one gives the buffer back.
// Call it with l.mu held.
func (l *lent) releaseLocked() {
	l.refs--
	if l.refs == 0 {
		putBuffer(l.buf)
		l.buf = nil
	}
}

func (l *lent) release() {
	l.mu.Lock()
	l.releaseLocked()
	l.mu.Unlock()
}

// errBodyReleased: a reader was opened, or read, after the body was given
// back. Adapters never do this; it fails rather than read another body.
var errBodyReleased = errors.New("engine: body read after its exchange and readers were closed")

// open returns a reader over the body that keeps it from being given back
// until it is closed.
func (l *lent) open() io.ReadCloser {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refs == 0 {
		return &lentReader{done: true}
	}
	l.refs++
	return &lentReader{l: l}
}

// lentReader reads a lent body. Read and Close take the body's lock, so a
// Close from another goroutine waits for a Read in progress, and nothing
// reads the buffer once it is back in the pool.
type lentReader struct {
	l    *lent
	off  int
	done bool
}

func (r *lentReader) Read(p []byte) (int, error) {
	if r.l == nil {
		return 0, errBodyReleased
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if r.done {
		return 0, errBodyReleased
	}
	if r.off >= len(r.l.buf) {
		return 0, io.EOF
	}
	n := copy(p, r.l.buf[r.off:])
	r.off += n
	return n, nil
}

func (r *lentReader) Close() error {
	if r.l == nil {
		return nil
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if !r.done {
		r.done = true
		r.l.releaseLocked()
	}
	return nil
}

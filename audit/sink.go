package audit

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// Sink stores encoded records.
type Sink interface {
	// Write stores line, one record encoded as JSON and ended by '\n', and
	// returns once it is stored or failed. Write must not keep line after
	// it returns: the caller reuses the buffer.
	Write(ctx context.Context, line []byte) error
}

// WriterSink writes records as JSON lines to a writer, one write per line.
type WriterSink struct {
	mu   sync.Mutex
	name string
	w    io.Writer
	c    io.Closer
}

var _ Sink = (*WriterSink)(nil)

// NewWriterSink writes to w, named name in errors.
func NewWriterSink(name string, w io.Writer) *WriterSink {
	return &WriterSink{name: name, w: w}
}

// OpenFileSink appends to the file at path, creating it owner-readable only.
func OpenFileSink(path string) (*WriterSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	return &WriterSink{name: path, w: f, c: f}, nil
}

func (s *WriterSink) Write(_ context.Context, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.w.Write(line)
	if err == nil && n < len(line) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("audit sink %s: %w", s.name, err)
	}
	return nil
}

// Close closes the underlying file, if the sink opened one.
func (s *WriterSink) Close() error {
	if s.c == nil {
		return nil
	}
	return s.c.Close()
}

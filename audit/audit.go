package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Actions a record can name.
const (
	ActionEncrypt = "encrypt"
	ActionDecrypt = "decrypt"
	ActionMask    = "mask"
	ActionDeny    = "deny"
)

// Decisions a record can carry.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	// DecisionError: the request was refused because something failed
	// (a body phiguard could not read, a key error, an upstream error).
	DecisionError = "error"
)

// Record is one audit line. It holds identifiers, field paths and counts;
// never a field value.
type Record struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Org       string    `json:"org,omitempty"`
	User      string    `json:"user,omitempty"`
	Role      string    `json:"role,omitempty"`
	ClientIP  string    `json:"client_ip,omitempty"`
	Route     string    `json:"route,omitempty"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	// Actions lists the distinct actions taken, in order of first use.
	Actions  []string `json:"actions,omitempty"`
	Fields   []Field  `json:"fields,omitempty"`
	Decision string   `json:"decision"`
	Reason   string   `json:"reason,omitempty"`
	// Status is what phiguard answered the client.
	Status int `json:"status"`
	// UpstreamStatus is what the app answered, when it was called.
	UpstreamStatus int     `json:"upstream_status,omitempty"`
	LatencyMS      float64 `json:"latency_ms"`
}

// Field says what an action did to the values one selector picked.
type Field struct {
	Action string `json:"action"`
	// Path is the selector as the policy writes it.
	Path  string `json:"path"`
	Count int    `json:"count"`
	// Reason says why values were masked (not a reader, token of another
	// organization, token does not decrypt).
	Reason string `json:"reason,omitempty"`
}

// AddField counts n values of action at path, merging with an existing
// entry of the same action, path and reason.
func (r *Record) AddField(action, path, reason string, n int) {
	if n == 0 {
		return
	}
	for i := range r.Fields {
		f := &r.Fields[i]
		if f.Action == action && f.Path == path && f.Reason == reason {
			f.Count += n
			return
		}
	}
	r.Fields = append(r.Fields, Field{Action: action, Path: path, Count: n, Reason: reason})
	r.AddAction(action)
}

// AddAction notes an action once.
func (r *Record) AddAction(action string) {
	for _, a := range r.Actions {
		if a == action {
			return
		}
	}
	r.Actions = append(r.Actions, action)
}

// Sink stores records.
type Sink interface {
	Write(ctx context.Context, r *Record) error
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

func (s *WriterSink) Write(_ context.Context, r *Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit sink %s: encode: %w", s.name, err)
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(line); err != nil {
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

// Auditor sends every record to all its sinks.
type Auditor struct {
	sinks      []Sink
	failClosed bool
	log        *slog.Logger
}

// NewAuditor writes to sinks. With failClosed, Record reports a sink's
// failure so the caller refuses the request; without it, the failure is
// logged and the request goes on. A nil log discards messages.
func NewAuditor(log *slog.Logger, failClosed bool, sinks ...Sink) *Auditor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auditor{sinks: sinks, failClosed: failClosed, log: log}
}

// ErrUnavailable wraps a sink failure that must refuse the request.
var ErrUnavailable = errors.New("audit trail unavailable")

// Record writes r to every sink. Every sink is tried even if one fails.
func (a *Auditor) Record(ctx context.Context, r *Record) error {
	var errs []error
	for _, s := range a.sinks {
		if err := s.Write(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	err := errors.Join(errs...)
	a.log.Error("audit record not written", "request_id", r.RequestID, "route", r.Route, "err", err)
	if a.failClosed {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// never a field value. AppendJSON encodes it; the struct tags say the same
// for encoding/json, and the tests hold the two equal, so a new field goes
// in both.
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

// Auditor sends every record to all its sinks.
type Auditor struct {
	sinks      []Sink
	failClosed bool
	log        *slog.Logger
	bufs       sync.Pool // of *[]byte, a line's buffer
}

// maxPooledLine is the largest buffer kept for the next record; a record
// with thousands of fields does not pin its buffer.
const maxPooledLine = 64 << 10

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

// Record encodes r once and writes the line to every sink. It returns
// once every sink has accepted the line or failed; every sink is tried even
// if one fails.
func (a *Auditor) Record(ctx context.Context, r *Record) error {
	buf, _ := a.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	line := append(r.AppendJSON((*buf)[:0]), '\n')
	var errs []error
	for _, s := range a.sinks {
		if err := s.Write(ctx, line); err != nil {
			errs = append(errs, err)
		}
	}
	if cap(line) <= maxPooledLine {
		*buf = line
		a.bufs.Put(buf)
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

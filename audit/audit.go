package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

// Actions a record can name.
const (
	ActionEncrypt = "encrypt"
	ActionDecrypt = "decrypt"
	ActionMask    = "mask"
	// ActionIndex: index words were written next to a searchable value
	// (Count: how many).
	ActionIndex = "index"
	// ActionSearch: search terms were replaced by index words or an
	// exact-match token (Count: how many words).
	ActionSearch = "search"
	ActionDeny   = "deny"
	// ActionBreakGlass: a caller outside the route's readers read
	// plaintext, giving a reason (Record.BreakGlass).
	ActionBreakGlass = "break_glass"
	// ActionHighRisk: an integration used a high-risk scope.
	ActionHighRisk = "high_risk_scope"
)

// Value is one recorded field: its name, and its value as text (a
// string's content, a number, true, false or null).
type Value struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

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
	// Session is the caller's session reference (ses_…, a digest of its
	// sid, jti or token: never the id itself), as `phiguard sessions
	// revoke -session` takes it.
	Session  string `json:"session,omitempty"`
	ClientIP string `json:"client_ip,omitempty"`
	Route    string `json:"route,omitempty"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	// Actions lists the distinct actions taken, in order of first use.
	Actions  []string `json:"actions,omitempty"`
	Fields   []Field  `json:"fields,omitempty"`
	Decision string   `json:"decision"`
	Reason   string   `json:"reason,omitempty"`
	// BreakGlass is the reason a caller gave to read what its role may
	// not (break-glass), as given; action break_glass marks the record.
	BreakGlass string `json:"break_glass,omitempty"`
	// Integration and Scope name the integration a request acted for and
	// the route's scope it used.
	Integration string `json:"integration,omitempty"`
	Scope       string `json:"scope,omitempty"`
	// Recorded are the values of the fields the route records (a
	// permission change's user and roles), in policy order.
	Recorded []Value `json:"recorded,omitempty"`
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
	sinks      []sinkState
	failClosed bool
	log        *slog.Logger
	now        func() time.Time
	bufs       sync.Pool // of *[]byte, a line's buffer
}

// sinkState is a sink and what became of the lines written to it.
type sinkState struct {
	Sink
	name    string
	written atomic.Uint64
	failed  atomic.Uint64
	seq     atomic.Uint64 // numbers the writes, in the order they began

	mu      sync.Mutex
	last    uint64     // the number of the write whose outcome down holds
	down    bool       // that write failed
	checkMu sync.Mutex // one check line at a time
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
	a := &Auditor{sinks: make([]sinkState, len(sinks)), failClosed: failClosed, log: log, now: time.Now}
	for i, s := range sinks {
		a.sinks[i].Sink = s
		a.sinks[i].name = fmt.Sprintf("sink%d", i)
		if n, ok := s.(interface{ Name() string }); ok {
			a.sinks[i].name = n.Name()
		}
	}
	return a
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
	for i := range a.sinks {
		if err := a.sinks[i].write(ctx, line); err != nil {
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

func (s *sinkState) write(ctx context.Context, line []byte) error {
	seq := s.seq.Add(1)
	err := s.Write(ctx, line)
	if err != nil {
		s.failed.Add(1)
	} else {
		s.written.Add(1)
	}
	// The outcome of the write that began last is the sink's state: an
	// earlier write finishing late does not hide a later failure.
	s.mu.Lock()
	if seq > s.last {
		s.last, s.down = seq, err != nil
	}
	s.mu.Unlock()
	return err
}

func (s *sinkState) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// health is what the sink itself says is wrong, if it can tell.
func (s *sinkState) health() error {
	if h, ok := s.Sink.(interface{ Health() error }); ok {
		return h.Health()
	}
	return nil
}

// SinkStatus is what became of the lines given to one sink.
type SinkStatus struct {
	// Name is the sink's name: stdout, stderr, or the file's path.
	Name string
	// Written and Failed count lines (records and check lines).
	Written, Failed uint64
	// Up: the sink's last write succeeded (or none failed yet), and the
	// sink reports nothing wrong (a stalled write, a rotated file).
	Up bool
}

// Sinks returns the status of every sink, in the policy's order.
func (a *Auditor) Sinks() []SinkStatus {
	st := make([]SinkStatus, len(a.sinks))
	for i := range a.sinks {
		s := &a.sinks[i]
		st[i] = SinkStatus{Name: s.name, Written: s.written.Load(), Failed: s.failed.Load(), Up: !s.isDown() && s.health() == nil}
	}
	return st
}

// ErrSinkDown says why sinks cannot take records.
var ErrSinkDown = errors.New("audit sink down")

// Check reports whether records can be written: nil when every sink is
// up, or when the auditor does not fail closed (a sink is then not
// required). A sink is down when it reports a problem itself (a write
// blocked for longer than StallAfter, a file rotated away without a
// reopen) or when its last write failed. A sink whose last write failed
// is tried again with a check line,
// {"time":…,"event":"audit_sink_check","sink":NAME}, so that a sink that
// recovered while no request came is seen as up: a readiness probe that
// calls Check is what brings traffic back. Check returns when ctx is done
// even if a check line is still being written.
func (a *Auditor) Check(ctx context.Context) error {
	var why []string
	for i := range a.sinks {
		s := &a.sinks[i]
		if err := s.health(); err != nil {
			why = append(why, s.name+": "+err.Error())
			continue
		}
		if !s.isDown() {
			continue
		}
		if err := a.checkLine(ctx, s); err != nil {
			why = append(why, s.name+": "+err.Error())
		}
	}
	if len(why) == 0 || !a.failClosed {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrSinkDown, strings.Join(why, "; "))
}

var errCheckBusy = errors.New("an earlier check line is still being written")

// checkLine writes a check line to s, giving up waiting when ctx is done.
func (a *Auditor) checkLine(ctx context.Context, s *sinkState) error {
	if !s.checkMu.TryLock() {
		return errCheckBusy
	}
	done := make(chan error, 1)
	go func() {
		defer s.checkMu.Unlock()
		done <- s.write(context.WithoutCancel(ctx), a.event(EventSinkCheck, "sink", s.name))
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("the check line was not written in time: %w", ctx.Err())
	}
}

// Events an event line can name.
const (
	EventSinkCheck    = "audit_sink_check"
	EventPolicyReload = "policy_reload"
	// EventSessionRevoke: sessions were revoked (`phiguard sessions
	// revoke`): org, user or session, at, via.
	EventSessionRevoke = "session_revoke"
)

// Event writes an event line to every sink: {"time":…,"event":event}
// followed by the attrs, given as key, value pairs. Attrs name things
// (sinks, files, digests, outcomes); never a value from a request. It
// returns the sinks' errors, joined; a failed sink is marked down.
func (a *Auditor) Event(ctx context.Context, event string, attrs ...string) error {
	line := a.event(event, attrs...)
	var errs []error
	for i := range a.sinks {
		errs = append(errs, a.sinks[i].write(ctx, line))
	}
	return errors.Join(errs...)
}

func (a *Auditor) event(event string, attrs ...string) []byte {
	b := append([]byte(`{"time":`), '"')
	b = a.now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	b = appendString(b, event)
	for i := 0; i+1 < len(attrs); i += 2 {
		b = append(b, ',')
		b = appendString(b, attrs[i])
		b = append(b, ':')
		b = appendString(b, attrs[i+1])
	}
	return append(b, "}\n"...)
}

// Reopen reopens every file sink at its path, for log rotation: lines
// written after it returns go to the file now at the path. Every sink is
// tried; the errors are joined.
func (a *Auditor) Reopen() error {
	var errs []error
	for i := range a.sinks {
		if r, ok := a.sinks[i].Sink.(interface{ Reopen() error }); ok {
			errs = append(errs, r.Reopen())
		}
	}
	return errors.Join(errs...)
}

// Text makes a caller-given string fit for a record: invalid UTF-8 and
// control characters dropped, at most max characters.
func Text(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if r := []rune(s); len(r) > max {
		s = string(r[:max])
	}
	return s
}

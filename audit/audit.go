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
	// Egress calls (Record.Destination set). ActionReplace: values a
	// vendor got as fixed text (replace_request). ActionDrop: members
	// removed (drop_request). ActionPass: values of decrypt_request that
	// were not tokens, sent as the app wrote them. ActionDLPBlock and
	// ActionDLPRedact: values in which detectors found what looks like
	// PHI (Field.Reason names them, never the match). ActionBlock: the
	// call was refused for what its body would have sent.
	ActionReplace   = "replace"
	ActionDrop      = "drop"
	ActionPass      = "pass"
	ActionDLPBlock  = "dlp_block"
	ActionDLPRedact = "dlp_redact"
	ActionBlock     = "block"
	// Consent (SMS): ActionOptOut and ActionOptIn, an inbound keyword
	// recorded in the registry; ActionConsent, an egress call's recipient
	// checked (Field.Reason: granted, revoked or unknown). The number's
	// keyed hash is in Recorded as consent_ref.
	ActionOptOut  = "opt_out"
	ActionOptIn   = "opt_in"
	ActionConsent = "consent"
)

// Value is one recorded field: its name, and its value as text (a
// string's content, a number, true, false or null).
type Value struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// PhaseIntent marks the record written before forwarding.
const PhaseIntent = "intent"

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
	// UserAgent is the client's User-Agent, control characters dropped,
	// at most 200 characters.
	UserAgent string `json:"user_agent,omitempty"`
	Route     string `json:"route,omitempty"`
	// Destination is the vendor's host on an egress call: the route's,
	// or, for a call no egress route took, the host the app named.
	Destination string `json:"destination,omitempty"`
	Method      string `json:"method"`
	// Path is the matched route's path template, never the path sent:
	// paths carry identifiers. A request no route matched has the keyed
	// hash of its path ("h1:…"), or "-" without a hash key.
	Path string `json:"path"`
	// Params are the route's path parameters, each value keyed-hashed;
	// none without a hash key.
	Params []Value `json:"params,omitempty"`
	// Actions lists the distinct actions taken, in order of first use.
	Actions []string `json:"actions,omitempty"`
	Fields  []Field  `json:"fields,omitempty"`
	// Phase is "intent" on the record written before a request is
	// forwarded to the app; empty on the outcome record.
	Phase    string `json:"phase,omitempty"`
	Decision string `json:"decision"`
	Reason   string `json:"reason,omitempty"`
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
	// Policy is the first 16 hex digits of the SHA-256 of the policy
	// that decided (policy_reload events carry it whole).
	Policy string `json:"policy,omitempty"`
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

// Auditor sends every record to all its sinks, through one hash chain.
type Auditor struct {
	sinks      []sinkState
	failClosed bool
	log        *slog.Logger
	now        func() time.Time
	bufs       sync.Pool // of *[]byte, a line's buffer
	timeout    time.Duration
	q          *sequencer
	closeOnce  sync.Once
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

// Options configure an Auditor.
type Options struct {
	// Log receives operational messages; nil discards them.
	Log *slog.Logger
	// FailClosed: Record reports a sink's failure so the caller refuses
	// the request; without it, the failure is logged and the request
	// goes on.
	FailClosed bool
	Sinks      []Sink
	// Signer signs the chain's checkpoints; nil writes none (the lines
	// are still chained, but nothing proves them unaltered).
	Signer Signer
	// CheckpointEvery and CheckpointInterval: a checkpoint follows every
	// so many lines, and comes every interval even when idle. Defaults
	// DefaultCheckpointEvery, DefaultCheckpointInterval.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Instance names the process on every line (a pod's name).
	Instance string
	// Timeout bounds how long Record waits for its line to be written;
	// past it the record counts as not written. Default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultTimeout bounds how long Record waits for the sinks.
const DefaultTimeout = 5 * time.Second

// NewAuditor writes to sinks, without checkpoints: New with FailClosed,
// Log and Sinks.
func NewAuditor(log *slog.Logger, failClosed bool, sinks ...Sink) *Auditor {
	return New(Options{Log: log, FailClosed: failClosed, Sinks: sinks})
}

// New starts an auditor. Close it to write the chain's final checkpoint.
func New(o Options) *Auditor {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	a := &Auditor{sinks: make([]sinkState, len(o.Sinks)), failClosed: o.FailClosed, log: o.Log, now: o.Now, timeout: o.Timeout}
	for i, s := range o.Sinks {
		a.sinks[i].Sink = s
		a.sinks[i].name = fmt.Sprintf("sink%d", i)
		if n, ok := s.(interface{ Name() string }); ok {
			a.sinks[i].name = n.Name()
		}
	}
	a.q = &sequencer{a: a, queue: make(chan *entry, 1024), stop: make(chan struct{}), stopped: make(chan struct{}),
		signer: o.Signer, every: uint64(o.CheckpointEvery), interval: o.CheckpointInterval, instance: o.Instance}
	go a.q.run()
	return a
}

// Close writes what was submitted, then the chain's final checkpoint,
// and stops the auditor: later lines fail. The sinks stay open. It waits
// at most the auditor's timeout: a sink whose write hangs does not keep
// the process from stopping (the chain then stays open).
func (a *Auditor) Close() {
	a.closeOnce.Do(func() {
		close(a.q.stop)
		t := time.NewTimer(a.timeout)
		defer t.Stop()
		select {
		case <-a.q.stopped:
		case <-t.C:
			a.log.Error("audit trail closed with a write still blocked: the chain's final checkpoint may be missing")
		}
	})
}

// ErrUnavailable wraps a sink failure that must refuse the request.
var ErrUnavailable = errors.New("audit trail unavailable")

// Record encodes r once and hands the line to the chain, which writes it
// to every sink. It returns once every sink has accepted the line or
// failed, or after the auditor's timeout (the record then counts as not
// written); every sink is tried even if one fails.
func (a *Auditor) Record(ctx context.Context, r *Record) error {
	buf, _ := a.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	line := append(r.AppendJSON((*buf)[:0]), '\n')
	kept, err := a.submit(ctx, line)
	if !kept && cap(line) <= maxPooledLine {
		*buf = line
		a.bufs.Put(buf)
	}
	if err == nil {
		return nil
	}
	a.log.Error("audit record not written", "request_id", r.RequestID, "route", r.Route, "err", err)
	if a.failClosed {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// submit hands line to the chain, waiting at most the auditor's timeout.
// The caller's context does not cut the wait short: a client that went
// away still gets its record.
func (a *Auditor) submit(_ context.Context, line []byte) (kept bool, err error) {
	return a.q.submit(line, a.timeout)
}

// writeAll writes buf, n lines, to every sink, and returns their errors
// joined.
func (a *Auditor) writeAll(buf []byte, n int) error {
	var errs []error
	for i := range a.sinks {
		if err := a.sinks[i].write(context.Background(), buf, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *sinkState) write(ctx context.Context, lines []byte, n int) error {
	seq := s.seq.Add(1)
	err := s.Write(ctx, lines)
	if err != nil {
		s.failed.Add(uint64(n))
	} else {
		s.written.Add(uint64(n))
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
// {"time":…,"event":"audit_sink_check","sink":NAME} (through the chain,
// so every sink gets it), so that a sink that
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
		// Until the line is written (or refused), no other check line;
		// unlocked before the caller hears, so its next Check may write.
		_, err := a.q.submit(a.event(EventSinkCheck, "sink", s.name), a.timeout)
		s.checkMu.Unlock()
		done <- err
	}()
	select {
	case <-done:
		if s.isDown() {
			return errors.New("the check line was not written")
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the check line was not written in time: %w", ctx.Err())
	}
}

// Events an event line can name.
const (
	EventSinkCheck    = "audit_sink_check"
	EventPolicyReload = "policy_reload"
	// EventStart and EventStop: phiguard began serving, and stopped.
	EventStart = "start"
	EventStop  = "stop"
	// EventSessionRevoke: sessions were revoked (`phiguard sessions
	// revoke`): org, user or session, at, via.
	EventSessionRevoke = "session_revoke"
	// EventConsentChange: a patient's SMS consent was granted or revoked
	// by an operator (`phiguard consent grant|revoke`: a signed form at
	// the front desk); keywords arriving by SMS are on the request's
	// record. The number appears only as its keyed hash (ref).
	EventConsentChange = "consent_change"
)

// Event writes an event line to every sink: {"time":…,"event":event}
// followed by the attrs, given as key, value pairs. Attrs name things
// (sinks, files, digests, outcomes); never a value from a request. It
// returns the sinks' errors, joined; a failed sink is marked down.
func (a *Auditor) Event(ctx context.Context, event string, attrs ...string) error {
	_, err := a.submit(ctx, a.event(event, attrs...))
	return err
}

func (a *Auditor) event(event string, attrs ...string) []byte {
	return a.eventAt(a.now().UTC().Format(time.RFC3339Nano), event, attrs...)
}

// eventAt is an event line of the given time.
func (a *Auditor) eventAt(at, event string, attrs ...string) []byte {
	b := append([]byte(`{"time":`), '"')
	b = append(b, at...)
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

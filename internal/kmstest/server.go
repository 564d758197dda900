package kmstest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Failure is a failure that FailNext injects.
type Failure int

const (
	// Throttle answers 400 ThrottlingException. KMS does not model the
	// exception, so the SDK returns a *smithy.GenericAPIError with that code,
	// and its standard retryer retries it.
	Throttle Failure = iota + 1
	// InternalError answers 500 KMSInternalException (*types.KMSInternalException
	// to the SDK), which the standard retryer retries.
	InternalError
	// Hang answers nothing until the request's context ends (the client gave
	// up) or the server closes; then the connection is dropped. A client
	// call without a deadline waits for Close, so give it one (or call
	// Close from another goroutine).
	Hang
)

func (f Failure) String() string {
	switch f {
	case Throttle:
		return "Throttle"
	case InternalError:
		return "InternalError"
	case Hang:
		return "Hang"
	}
	return fmt.Sprintf("Failure(%d)", int(f))
}

// Server is an in-process AWS KMS: it speaks the JSON 1.1 protocol of the
// AWS SDK v2 KMS client on a loopback address, holds symmetric keys as
// in-memory Tink AES-256-GCM keysets, and lets a test inject failures,
// latency and outages and count calls. All methods are safe for concurrent
// use.
//
// Operations: CreateKey, DescribeKey, Encrypt, Decrypt, ReEncrypt,
// GenerateDataKey, GenerateDataKeyWithoutPlaintext, DisableKey, EnableKey,
// ScheduleKeyDeletion, CancelKeyDeletion, CreateAlias and ListAliases. Any
// other answers UnknownOperationException. Requests must be SigV4-signed for
// service kms in Region (the signature is not verified).
type Server struct {
	t       testing.TB
	region  string
	now     func() time.Time
	srv     *httptest.Server
	closing chan struct{} // closed when Close begins
	closed  atomic.Bool

	down    atomic.Bool
	latency atomic.Int64 // a time.Duration

	mu       sync.Mutex
	keys     map[string]*kmsKey    // by key id
	aliases  map[string]aliasEntry // by alias name ("alias/…")
	failures []failureRule         // in the order FailNext set them
	calls    map[string]int        // by operation name
	total    int
}

// failureRule is what one FailNext call has left to inject.
type failureRule struct {
	op   string // "" for any operation
	left int
	f    Failure
}

// New starts a server on 127.0.0.1. It is closed when t's test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		region:  "us-east-1",
		now:     time.Now,
		closing: make(chan struct{}),
		keys:    map[string]*kmsKey{},
		aliases: map[string]aliasEntry{},
		calls:   map[string]int{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// URL is the server's endpoint, for the SDK's BaseEndpoint.
func (s *Server) URL() string { return s.srv.URL }

// Region is the AWS region the server is in; requests must be signed for it.
func (s *Server) Region() string { return s.region }

// Close stops the server. Requests that are hung (Hang, SetLatency) are
// dropped at once, so Close does not wait for them. Later requests fail to
// connect. New arranges a Close when the test ends; calls after the first
// return at once.
func (s *Server) Close() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	close(s.closing)
	s.srv.Close()
}

// serve is the pipeline every request goes through: count it, wait out the
// latency, answer for an outage, check the protocol and the signature,
// inject a failure, then run the operation.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if !ok {
		op = ""
	}
	latency := s.count(op)
	w.Header().Set("X-Amzn-Requestid", newUUID())
	if !s.wait(r.Context(), latency) {
		s.abort(w)
		return
	}
	if s.down.Load() {
		s.writeError(w, errDown())
		return
	}
	if err := checkRequest(r, s.region); err != nil {
		s.writeError(w, err)
		return
	}
	run := s.operation(op)
	if run == nil {
		s.writeError(w, refuse("UnknownOperationException", "X-Amz-Target %q is not an operation kmstest implements", r.Header.Get("X-Amz-Target")))
		return
	}
	if f := s.takeFailure(op); f != 0 {
		s.inject(w, r, f)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	out, err := run(body)
	if err == nil {
		err = writeJSON(w, out)
	}
	if err != nil {
		s.writeError(w, err)
	}
}

// operation returns the handler of the named operation, or nil if the
// server does not implement it.
func (s *Server) operation(name string) func(body []byte) (any, error) {
	switch name {
	case "CreateKey":
		return decoded(s.opCreateKey)
	case "DescribeKey":
		return decoded(s.opDescribeKey)
	case "Encrypt":
		return decoded(s.opEncrypt)
	case "Decrypt":
		return decoded(s.opDecrypt)
	case "ReEncrypt":
		return decoded(s.opReEncrypt)
	case "GenerateDataKey":
		return decoded(s.opGenerateDataKey)
	case "GenerateDataKeyWithoutPlaintext":
		return decoded(s.opGenerateDataKeyWithoutPlaintext)
	case "DisableKey":
		return decoded(s.opDisableKey)
	case "EnableKey":
		return decoded(s.opEnableKey)
	case "ScheduleKeyDeletion":
		return decoded(s.opScheduleKeyDeletion)
	case "CancelKeyDeletion":
		return decoded(s.opCancelKeyDeletion)
	case "CreateAlias":
		return decoded(s.opCreateAlias)
	case "ListAliases":
		return decoded(s.opListAliases)
	}
	return nil
}

// count counts a request and returns the latency it gets: read with the
// count, so a test that saw the request counted knows which latency it
// got, whatever SetLatency does next.
func (s *Server) count(op string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if op != "" {
		s.calls[op]++
	}
	return time.Duration(s.latency.Load())
}

// wait waits out latency d. It reports false if the request ended or the
// server closed first.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

// takeFailure consumes one failure set by FailNext for op, if any is left.
func (s *Server) takeFailure(op string) Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, rule := range s.failures {
		if rule.op != "" && rule.op != op {
			continue
		}
		s.failures[i].left--
		if s.failures[i].left == 0 {
			s.failures = append(s.failures[:i], s.failures[i+1:]...)
		}
		return rule.f
	}
	return 0
}

func (s *Server) inject(w http.ResponseWriter, r *http.Request, f Failure) {
	switch f {
	case Throttle:
		s.writeError(w, refuse("ThrottlingException", "Rate exceeded (kmstest FailNext)"))
	case InternalError:
		s.writeError(w, &apiError{status: http.StatusInternalServerError, code: "KMSInternalException", message: "kmstest FailNext"})
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		s.abort(w)
	}
}

// abort drops the connection without an answer, as a server that died would.
func (s *Server) abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.writeError(w, errDown())
		return
	}
	_ = conn.Close()
}

// FailNext makes the next n requests for operation op (such as "Encrypt";
// "" for any operation) fail with f. Rules from several calls apply in the
// order they were set, each until its n requests are used up. Only
// requests that pass the protocol and signature checks use up a failure.
// n ≤ 0 sets nothing; an op the server does not implement fails the test.
func (s *Server) FailNext(op string, n int, f Failure) {
	s.t.Helper()
	if op != "" && s.operation(op) == nil {
		s.t.Errorf("kmstest: FailNext(%q, %d, %v): kmstest implements no operation %q", op, n, f, op)
		return
	}
	if f < Throttle || f > Hang {
		s.t.Errorf("kmstest: FailNext(%q, %d, %v): unknown failure", op, n, f)
		return
	}
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, failureRule{op: op, left: n, f: f})
}

// SetDown makes the server answer every request with HTTP 503
// ServiceUnavailableException (a *smithy.GenericAPIError inside an
// *awshttp.ResponseError to the SDK, which retries it) until SetDown(false).
// Calls are still counted.
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// SetLatency makes every request wait d before it is answered (0: no wait).
// A request whose context ends during the wait, or that is waiting when the
// server closes, is dropped without an answer.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Calls is the number of requests received for operation op ("Encrypt"),
// or for all operations if op is "" — every request, including those that
// failed, were refused or had a failure injected. A request without a
// TrentService target counts only towards the total.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "" {
		return s.total
	}
	return s.calls[op]
}

// ResetCalls sets every count back to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
	s.total = 0
}

// CreateKey creates an Enabled symmetric key directly, not through the
// protocol (no call is counted), and returns its id and ARN.
func (s *Server) CreateKey(t testing.TB, description string) (keyID, arn string) {
	t.Helper()
	k, err := s.createKey(description)
	if err != nil {
		t.Fatalf("kmstest: CreateKey: %v", err)
	}
	return k.id, k.arn
}

// CreateAlias points alias ("alias/name") at the key keyID (a key id or
// key ARN) directly, as the CreateAlias operation would.
func (s *Server) CreateAlias(t testing.TB, alias, keyID string) {
	t.Helper()
	if err := s.createAlias(alias, keyID); err != nil {
		t.Fatalf("kmstest: CreateAlias(%s, %s): %v", alias, keyID, err)
	}
}

// DisableKey disables the key keyID (a key id or key ARN) directly.
// Encrypt and Decrypt with it then answer DisabledException.
func (s *Server) DisableKey(keyID string) {
	s.t.Helper()
	s.direct("DisableKey", keyID, disable)
}

// EnableKey enables the key keyID directly.
func (s *Server) EnableKey(keyID string) {
	s.t.Helper()
	s.direct("EnableKey", keyID, enable)
}

// ScheduleDeletion puts the key keyID in state PendingDeletion, deleted in
// 30 days, directly. Using it then answers KMSInvalidStateException; the
// CancelKeyDeletion operation leaves it Disabled, as KMS does.
func (s *Server) ScheduleDeletion(keyID string) {
	s.t.Helper()
	s.direct("ScheduleDeletion", keyID, s.scheduleDeletion(defaultDeletionDays))
}

// direct applies a state change outside the protocol. A change KMS would
// refuse (unknown key, key pending deletion) fails the test.
func (s *Server) direct(name, keyID string, change func(*kmsKey) error) {
	s.t.Helper()
	if _, err := s.transition(keyID, change); err != nil {
		s.t.Errorf("kmstest: %s(%s): %v", name, keyID, err)
	}
}

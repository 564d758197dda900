package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"
)

type failingSink struct{}

func (failingSink) Write(context.Context, []byte) error { return errors.New("disk full") }

// recordingSink keeps a copy of every line the auditor was given, without
// what the chain added (its fields, its own lines), and where the bytes
// of the write that carried it were.
type recordingSink struct {
	lines [][]byte
	addrs []*byte
}

func (s *recordingSink) Write(_ context.Context, lines []byte) error {
	for l := range bytes.Lines(lines) {
		if l, own := unchain(l); !own {
			s.lines = append(s.lines, l)
			s.addrs = append(s.addrs, &lines[0])
		}
	}
	return nil
}

// unchain returns line without the chain's fields, and whether the line
// is the chain's own (chain_start, checkpoint, sink down and up).
func unchain(line []byte) (_ []byte, own bool) {
	i := bytes.LastIndex(line, []byte(`,"chain":"`))
	if i < 0 {
		return bytes.Clone(line), false
	}
	for _, ev := range []string{EventChainStart, EventCheckpoint, EventSinkDown, EventSinkUp} {
		own = own || bytes.Contains(line, []byte(`"event":"`+ev+`"`))
	}
	return append(bytes.Clone(line[:i]), "}\n"...), own
}

// line is r as a sink receives it.
func line(r *Record) []byte { return append(r.AppendJSON(nil), '\n') }

func sample() *Record {
	r := &Record{Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), RequestID: "r1", Org: "org_a", Method: "POST", Path: "/m", Decision: DecisionAllow, Status: 201}
	r.AddField(ActionEncrypt, "$.body", "", 1)
	r.AddField(ActionEncrypt, "$.body", "", 2)
	r.AddField(ActionMask, "$.body", "not a reader", 1)
	r.AddField(ActionDecrypt, "$.x", "", 0)
	return r
}

func TestRecordFields(t *testing.T) {
	r := sample()
	if len(r.Fields) != 2 || r.Fields[0].Count != 3 || r.Fields[1].Reason != "not a reader" {
		t.Errorf("fields = %+v", r.Fields)
	}
	if strings.Join(r.Actions, ",") != "encrypt,mask" {
		t.Errorf("actions = %v, want [encrypt mask]", r.Actions)
	}
}

func TestAuditorFailClosed(t *testing.T) {
	tests := []struct {
		name       string
		failClosed bool
		failing    bool // one of the sinks fails
		wantErr    bool
	}{
		{"fail-closed, sinks healthy", true, false, false},
		{"fail-closed, a sink fails", true, true, true},
		{"fail-open, sinks healthy", false, false, false},
		{"fail-open, a sink fails", false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			healthy := &recordingSink{}
			sinks := []Sink{healthy}
			if tt.failing {
				sinks = []Sink{failingSink{}, healthy}
			}
			r := sample()
			r.Route = "messages"
			r.Reason = "canary-reason"
			err := NewAuditor(log, tt.failClosed, sinks...).Record(context.Background(), r)
			if got := errors.Is(err, ErrUnavailable); got != tt.wantErr || (err != nil) != tt.wantErr {
				t.Errorf("got %v, want ErrUnavailable: %v", err, tt.wantErr)
			}
			if len(healthy.lines) != 1 {
				t.Errorf("the healthy sink got %d lines, want 1 (tried even if another fails)", len(healthy.lines))
			}
			if !tt.failing {
				if logs.Len() != 0 {
					t.Errorf("logged %q, want nothing", logs.String())
				}
				return
			}
			for _, want := range []string{"audit record not written", "request_id=r1", "route=messages", "disk full"} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log %q lacks %q", logs.String(), want)
				}
			}
			if strings.Contains(logs.String(), "canary") {
				t.Errorf("log %q holds a record's content beyond request id and route", logs.String())
			}
		})
	}
}

// TestAuditorEncodesOnce: every sink gets the same bytes, encoded once.
func TestAuditorEncodesOnce(t *testing.T) {
	sinks := []*recordingSink{{}, {}, {}}
	a := NewAuditor(nil, true, sinks[0], sinks[1], sinks[2])
	r := sample()
	if err := a.Record(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	want := line(r)
	for i, s := range sinks {
		if len(s.lines) != 1 || !bytes.Equal(s.lines[0], want) {
			t.Fatalf("sink %d got %q, want %q", i, s.lines, want)
		}
		if s.addrs[0] != sinks[0].addrs[0] {
			t.Errorf("sink %d got a second encoding, want the same bytes as sink 0", i)
		}
	}
}

// TestAuditorRecordHoldsOnlyWhatWasSet: a record's line holds what its
// record set and nothing else, though its buffer held an earlier record.
func TestAuditorRecordHoldsOnlyWhatWasSet(t *testing.T) {
	const canary = "CANARY-7f3a"
	s := &recordingSink{}
	a := NewAuditor(nil, true, s)
	big := &Record{
		Time: time.Now(), RequestID: canary, Org: canary, User: canary, Role: canary, ClientIP: canary,
		Route: canary, Method: canary, Path: canary, Decision: canary, Reason: canary,
		Status: 500, UpstreamStatus: 502, LatencyMS: 1e9,
	}
	for i := range 50 {
		big.AddField(ActionMask, canary+strings.Repeat("x", i), canary, 1)
	}
	small := &Record{Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), RequestID: "r2", Method: "GET", Path: "/", Decision: DecisionAllow, Status: 200}
	for _, r := range []*Record{big, small, big, small} {
		if err := a.Record(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.lines) != 4 {
		t.Fatalf("%d lines, want 4", len(s.lines))
	}
	for i := 1; i < len(s.lines); i += 2 {
		got := s.lines[i]
		if want := line(small); !bytes.Equal(got, want) {
			t.Errorf("line %d: got %q, want %q", i, got, want)
		}
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"time": "2026-11-22T10:00:00Z", "request_id": "r2", "method": "GET", "path": "/",
			"decision": "allow", "status": 200.0, "latency_ms": 0.0}
		if !maps.Equal(m, want) {
			t.Errorf("line %d: got %v, want %v", i, m, want)
		}
	}
}

// TestAuditorWithoutLogger: a nil logger is a valid choice, not a panic on
// the first sink failure.
func TestAuditorWithoutLogger(t *testing.T) {
	for _, failClosed := range []bool{true, false} {
		a := NewAuditor(nil, failClosed, failingSink{})
		err := a.Record(context.Background(), sample())
		if failClosed != errors.Is(err, ErrUnavailable) {
			t.Errorf("failClosed=%v: got %v", failClosed, err)
		}
	}
}

// BenchmarkAuditorRecordParallel: encode and write, as the proxy does per
// request.
func BenchmarkAuditorRecordParallel(b *testing.B) {
	a := NewAuditor(nil, true, NewWriterSink("discard", io.Discard))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := typical()
		for pb.Next() {
			if err := a.Record(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type failingSink struct{}

func (failingSink) Write(context.Context, *Record) error { return errors.New("disk full") }

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

func TestWriterSinkWritesJSONLines(t *testing.T) {
	var buf bytes.Buffer
	s := NewWriterSink("buf", &buf)
	for range 3 {
		if err := s.Write(context.Background(), sample()); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3", len(lines))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "request_id", "org", "method", "path", "actions", "fields", "decision", "status", "latency_ms"} {
		if _, ok := got[k]; !ok {
			t.Errorf("record lacks %q: %s", k, lines[0])
		}
	}
}

func TestFileSinkAppendsOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for range 2 {
		s, err := OpenFileSink(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), sample()); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	raw, _ := os.ReadFile(path)
	if n := bytes.Count(raw, []byte("\n")); n != 2 {
		t.Errorf("file has %d lines, want 2 (appended)", n)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	if _, err := OpenFileSink(filepath.Join(t.TempDir(), "missing", "a.jsonl")); err == nil {
		t.Error("OpenFileSink in a missing folder succeeded")
	}
}

func TestAuditorFailClosed(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var buf bytes.Buffer
	closed := NewAuditor(log, true, NewWriterSink("buf", &buf), failingSink{})
	if err := closed.Record(context.Background(), sample()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("fail-closed auditor with a failing sink: got %v, want ErrUnavailable", err)
	}
	if buf.Len() == 0 {
		t.Error("the healthy sink was skipped because another failed")
	}
	open := NewAuditor(log, false, failingSink{})
	if err := open.Record(context.Background(), sample()); err != nil {
		t.Errorf("fail-open auditor returned %v", err)
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

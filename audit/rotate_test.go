package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// verifyFiles verifies the sink's current and rotated files, given
// newest first.
func verifyFiles(t *testing.T, v SigVerifier, path string, extra ...string) *Report {
	t.Helper()
	rotated, err := Rotated(path)
	if err != nil {
		t.Fatal(err)
	}
	names := append(append([]string{path}, extra...), rotated...)
	var in []Input
	for i := len(names) - 1; i >= 0; i-- { // newest first: order must not matter
		f, err := os.Open(names[len(names)-1-i])
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		in = append(in, Input{Name: filepath.Base(names[len(names)-1-i]), R: f})
	}
	rep, err := Verify(in, v, VerifyOptions{RequireClosed: true})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func record(i int) *Record {
	return &Record{Time: time.Now(), RequestID: fmt.Sprintf("req-%03d", i), Org: "org_a", Method: "GET", Path: "/m", Decision: DecisionAllow, Status: 200}
}

// TestRotationBySize: a file sink starts a new file before one would pass
// max_bytes; the chain runs on across the files, which verify whole.
func TestRotationBySize(t *testing.T) {
	s, v := signingKey(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := OpenRotatingFileSink(path, Rotation{MaxBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	a := New(Options{Sinks: []Sink{sink}, Signer: s, CheckpointEvery: 7})
	for i := range 60 {
		if err := a.Record(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	sink.Close()
	rotated, _ := Rotated(path)
	if len(rotated) < 3 {
		t.Fatalf("%d rotated files, want several", len(rotated))
	}
	for _, n := range append(rotated, path) {
		if st, err := os.Stat(n); err != nil || st.Size() > 2000 {
			t.Errorf("%s: %v, size over max_bytes", n, err)
		}
	}
	rep := verifyFiles(t, v, path)
	if !rep.OK() || len(rep.Chains) != 1 || rep.Chains[0].Records != 60 || rep.Files != len(rotated)+1 {
		t.Fatalf("across rotated files: %v %+v", rep.Problem, rep.Chains)
	}
}

// TestRotationByAge: a file as old as max_age is rotated before the next
// write.
func TestRotationByAge(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := OpenRotatingFileSink(path, Rotation{MaxAge: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	write := func(l string) {
		if err := sink.Write(context.Background(), []byte(l+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	now = now.Add(59 * time.Minute)
	write("two")
	if r, _ := Rotated(path); len(r) != 0 {
		t.Fatalf("rotated before max_age: %v", r)
	}
	now = now.Add(time.Minute)
	write("three")
	r, _ := Rotated(path)
	if len(r) != 1 || r[0] != path+".20261202T100000.000000000Z" {
		t.Fatalf("rotated files %v", r)
	}
	old, _ := os.ReadFile(r[0])
	cur, _ := os.ReadFile(path)
	if string(old) != "one\ntwo\n" || string(cur) != "three\n" {
		t.Errorf("rotated %q, current %q", old, cur)
	}
}

// TestRetention: a rotation deletes rotated files last written longer
// ago than retention, and nothing else.
func TestRetention(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	expired := path + ".20200101T000000.000000000Z"
	kept := path + ".20261201T000000.000000000Z"
	other := path + ".bak"
	for _, n := range []string{expired, kept, other} {
		os.WriteFile(n, []byte("x\n"), 0o600)
	}
	os.Chtimes(expired, now.Add(-7*365*24*time.Hour), now.Add(-7*365*24*time.Hour))
	os.Chtimes(other, now.Add(-7*365*24*time.Hour), now.Add(-7*365*24*time.Hour))
	os.Chtimes(kept, now.Add(-24*time.Hour), now.Add(-24*time.Hour))
	sink, err := OpenRotatingFileSink(path, Rotation{MaxBytes: 4, Retention: 6 * 365 * 24 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sink.Write(context.Background(), []byte("abc\n"))
	sink.Write(context.Background(), []byte("def\n")) // rotates, then prunes
	for n, want := range map[string]bool{expired: false, kept: true, other: true} {
		if _, err := os.Stat(n); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(n), err == nil, want)
		}
	}
}

// TestReopenChainContinues: after an outside rotation (rename, then
// SIGHUP's Reopen) lines go to a new file at the path and the chain runs
// on: both files verify together, and each alone shows where it breaks.
func TestReopenChainContinues(t *testing.T) {
	s, v := signingKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	sink, err := OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	a := New(Options{Sinks: []Sink{sink}, Signer: s, CheckpointEvery: 4})
	for i := range 10 {
		a.Record(context.Background(), record(i))
	}
	moved := filepath.Join(dir, "audit.jsonl.1")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 20; i++ {
		a.Record(context.Background(), record(i))
	}
	a.Close()
	sink.Close()
	rep := verifyFiles(t, v, path, moved)
	if !rep.OK() || rep.Chains[0].Records != 20 {
		t.Fatalf("across the reopen: %v %+v", rep.Problem, rep.Chains)
	}
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(cur), "req-010") || strings.Contains(string(cur), "req-009") {
		t.Errorf("the new file holds:\n%s", cur)
	}
	// The new file alone lacks the start of its chain.
	f, _ := os.Open(path)
	defer f.Close()
	rep, _ = Verify([]Input{{Name: "audit.jsonl", R: f}}, v, VerifyOptions{})
	if rep.Problem == nil || rep.Problem.Kind != ProblemDeleted || rep.Problem.Line != 1 {
		t.Errorf("the new file alone: %v", rep.Problem)
	}
}

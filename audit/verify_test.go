package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"
	"github.com/tink-crypto/tink-go/v2/signature"
)

// signingKey is an Ed25519 keyset through Tink, and its verifier.
func signingKey(t *testing.T) (Signer, SigVerifier) {
	t.Helper()
	kh, err := keyset.NewHandle(signature.ED25519KeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.NewSigner(kh)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kh.Public()
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// memSink keeps what it is given.
type memSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (m *memSink) Write(_ context.Context, lines []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buf.Write(lines)
	return nil
}

func (m *memSink) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buf.String()
}

// writeLog has a signing auditor record n requests, a checkpoint every
// `every` lines, and closes it unless open; it returns the log's lines.
func writeLog(t *testing.T, s Signer, n, every int, open bool) [][]byte {
	t.Helper()
	sink := &memSink{}
	a := New(Options{Sinks: []Sink{sink}, Signer: s, CheckpointEvery: every, CheckpointInterval: time.Hour, Instance: "pod-a"})
	for i := range n {
		r := &Record{Time: time.Now(), RequestID: fmt.Sprintf("req-%03d", i), Org: "org_a", Method: "GET", Path: "/m", Decision: DecisionAllow, Status: 200}
		if err := a.Record(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if !open {
		a.Close()
	}
	var lines [][]byte
	for l := range bytes.Lines([]byte(sink.String())) {
		lines = append(lines, l)
	}
	return lines
}

func join(lines [][]byte) []byte { return bytes.Join(lines, nil) }

func verify(t *testing.T, v SigVerifier, o VerifyOptions, files ...[]byte) *Report {
	t.Helper()
	var in []Input
	for i, f := range files {
		in = append(in, Input{Name: fmt.Sprintf("audit-%d.jsonl", i), R: bytes.NewReader(f)})
	}
	rep, err := Verify(in, v, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// lineOf is the index of the line holding s.
func lineOf(t *testing.T, lines [][]byte, s string) int {
	t.Helper()
	for i, l := range lines {
		if bytes.Contains(l, []byte(s)) {
			return i
		}
	}
	t.Fatalf("no line holds %q", s)
	return -1
}

// rehash recomputes every prev from line i on, as someone without the
// signing key would after changing the log.
func rehash(t *testing.T, lines [][]byte, from int) {
	t.Helper()
	for i := max(from, 1); i < len(lines); i++ {
		prev := LineHash(bytes.TrimSuffix(lines[i-1], []byte("\n")))
		j := bytes.LastIndex(lines[i], []byte(`,"prev":"`))
		lines[i] = append(append(bytes.Clone(lines[i][:j]), `,"prev":"`+prev+`"}`...), '\n')
	}
}

func TestVerifyIntact(t *testing.T) {
	s, v := signingKey(t)
	lines := writeLog(t, s, 25, 10, false)
	rep := verify(t, v, VerifyOptions{RequireClosed: true}, join(lines))
	if !rep.OK() || len(rep.Chains) != 1 {
		t.Fatalf("intact log: %+v %v", rep, rep.Problem)
	}
	c := rep.Chains[0]
	// chain_start, 25 records, a checkpoint after each 10 lines, a final one.
	if c.Records != 25 || c.Lines != uint64(len(lines)) || c.Verified != c.Lines || c.Unverified != 0 || !c.Closed || c.Checkpoints != 3 || c.Instance != "pod-a" {
		t.Errorf("report %+v", c)
	}
}

// TestVerifyFindsTampering: each way of changing a log is found, and the
// report names the line.
func TestVerifyFindsTampering(t *testing.T) {
	s, v := signingKey(t)
	for _, c := range []struct {
		name   string
		change func(lines [][]byte) [][]byte
		kind   string
		at     string // the line the problem names holds this
	}{
		{"one byte edited", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-007")
			l[i] = bytes.Replace(l[i], []byte("req-007"), []byte("req-00X"), 1)
			return l
		}, ProblemAltered, "req-00X"},
		{"a record deleted", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-012")
			return append(l[:i:i], l[i+1:]...)
		}, ProblemDeleted, "req-013"},
		{"a forged record inserted", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-004")
			forged := bytes.Replace(l[i], []byte("req-004"), []byte("forged1"), 1)
			return append(l[:i+1:i+1], append([][]byte{forged}, l[i+1:]...)...)
		}, ProblemInserted, "forged1"},
		{"a line without chain fields inserted", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-004")
			return append(l[:i:i], append([][]byte{[]byte(`{"request_id":"forged2"}` + "\n")}, l[i:]...)...)
		}, ProblemInserted, "forged2"},
		{"two records swapped", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-015")
			l[i], l[i+1] = l[i+1], l[i]
			return l
		}, ProblemReordered, "req-015"},
		{"a record edited and the chain re-hashed without the key", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-002")
			l[i] = bytes.Replace(l[i], []byte(`"status":200`), []byte(`"status":403`), 1)
			rehash(t, l, i+1)
			return l
		}, ProblemSignature, `"event":"checkpoint"`},
		{"a record deleted, the rest renumbered and re-hashed", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-020")
			l = append(l[:i:i], l[i+1:]...)
			for j := i; j < len(l); j++ {
				var seq struct{ Seq int }
				json.Unmarshal(l[j], &seq)
				l[j] = bytes.Replace(l[j], fmt.Appendf(nil, `"seq":%d,`, seq.Seq), fmt.Appendf(nil, `"seq":%d,`, seq.Seq-1), 1)
			}
			rehash(t, l, i)
			return l
		}, ProblemSignature, `"final":"true"`},
		{"the tail truncated", func(l [][]byte) [][]byte {
			return l[:lineOf(t, l, "req-022")+1]
		}, ProblemOpen, "req-022"},
		{"a line torn", func(l [][]byte) [][]byte {
			i := lineOf(t, l, "req-009")
			l[i] = append(l[i][:40:40], '\n')
			return l
		}, ProblemUnreadable, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			lines := c.change(writeLog(t, s, 25, 10, false))
			rep := verify(t, v, VerifyOptions{RequireClosed: true}, join(lines))
			p := rep.Problem
			if p == nil {
				t.Fatalf("not found: %+v", rep.Chains[0])
			}
			if p.Kind != c.kind || p.File != "audit-0.jsonl" || p.Line < 1 || p.Line > len(lines) || !bytes.Contains(lines[p.Line-1], []byte(c.at)) {
				t.Errorf("problem %v; want %s at the line holding %q", p, c.kind, c.at)
			}
		})
	}
}

// TestVerifyOtherKey: a log signed by another key does not verify.
func TestVerifyOtherKey(t *testing.T) {
	s, _ := signingKey(t)
	_, other := signingKey(t)
	rep := verify(t, other, VerifyOptions{}, join(writeLog(t, s, 3, 10, false)))
	if rep.Problem == nil || rep.Problem.Kind != ProblemSignature {
		t.Fatalf("verified with another key: %v", rep.Problem)
	}
}

// TestVerifyOpenTail: lines after the last checkpoint of a chain still
// being written are counted unverified, not accepted; with RequireClosed
// the chain's end is a problem.
func TestVerifyOpenTail(t *testing.T) {
	s, v := signingKey(t)
	lines := writeLog(t, s, 15, 10, true)
	rep := verify(t, v, VerifyOptions{}, join(lines))
	if !rep.OK() {
		t.Fatal(rep.Problem)
	}
	c := rep.Chains[0]
	// chain_start + 9 records, checkpoint, 6 more records.
	if c.Closed || c.Verified != 11 || c.Unverified != 6 || c.Records != 15 {
		t.Errorf("open chain: %+v", c)
	}
	if rep := verify(t, v, VerifyOptions{RequireClosed: true}, join(lines)); rep.Problem == nil || rep.Problem.Kind != ProblemOpen {
		t.Errorf("RequireClosed: %v", rep.Problem)
	}
}

// TestVerifyAcrossFilesAndRestarts: a chain split across rotated files
// verifies whatever order the files are given in; chains of two runs
// (a restart) in one file verify each.
func TestVerifyAcrossFilesAndRestarts(t *testing.T) {
	s, v := signingKey(t)
	lines := writeLog(t, s, 30, 10, false)
	mid := len(lines) / 2
	rep := verify(t, v, VerifyOptions{RequireClosed: true}, join(lines[mid:]), join(lines[:mid]))
	if !rep.OK() || rep.Chains[0].Records != 30 || rep.Files != 2 {
		t.Fatalf("rotated files: %+v %v", rep, rep.Problem)
	}
	// A missing middle file is a gap.
	third := len(lines) / 3
	rep = verify(t, v, VerifyOptions{}, join(lines[:third]), join(lines[2*third:]))
	if rep.Problem == nil || rep.Problem.Kind != ProblemDeleted || rep.Problem.File != "audit-1.jsonl" || rep.Problem.Line != 1 {
		t.Errorf("a rotated file left out: %v", rep.Problem)
	}
	restart := append(join(writeLog(t, s, 5, 10, false)), join(writeLog(t, s, 7, 10, false))...)
	rep = verify(t, v, VerifyOptions{RequireClosed: true}, restart)
	if !rep.OK() || len(rep.Chains) != 2 || rep.Chains[0].Records+rep.Chains[1].Records != 12 {
		t.Errorf("two runs in one file: %+v %v", rep.Chains, rep.Problem)
	}
}

// TestIdleCheckpoints: with nothing to record, the chain still signs a
// checkpoint every interval, so a log whose tail was deleted shows a gap
// in time rather than silence.
func TestIdleCheckpoints(t *testing.T) {
	s, v := signingKey(t)
	sink := &memSink{}
	a := New(Options{Sinks: []Sink{sink}, Signer: s, CheckpointInterval: 20 * time.Millisecond})
	if err := a.Event(context.Background(), "start"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(sink.String(), `"event":"checkpoint","lines":"0"`) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no two idle checkpoints within 10s:\n%s", sink.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.Close()
	rep := verify(t, v, VerifyOptions{RequireClosed: true}, []byte(sink.String()))
	if !rep.OK() || rep.Chains[0].Checkpoints < 3 {
		t.Fatalf("%v %+v", rep.Problem, rep.Chains)
	}
}

// TestHasher: keyed hashes are stable for one key, differ between keys
// and values, and hold nothing of the value.
func TestHasher(t *testing.T) {
	mk := func() *Hasher {
		kh, err := keyset.NewHandle(mac.HMACSHA256Tag256KeyTemplate())
		if err != nil {
			t.Fatal(err)
		}
		m, err := mac.New(kh)
		if err != nil {
			t.Fatal(err)
		}
		return NewHasher(m)
	}
	a, b := mk(), mk()
	v := "+15555550123"
	h := a.Hash(v)
	if h != a.Hash(v) || h == a.Hash("+15555550124") || h == b.Hash(v) || !strings.HasPrefix(h, "h1:") || len(h) != 3+28 || strings.Contains(h, "5555") {
		t.Errorf("Hash(%q) = %q (other key %q)", v, h, b.Hash(v))
	}
}

package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// SigVerifier checks a checkpoint's signature: a tink.Verifier over the
// public keyset of the auditors' signing key.
type SigVerifier interface {
	Verify(sig, data []byte) error
}

// Input is one audit file to verify.
type Input struct {
	Name string
	R    io.Reader
}

// Problems Verify reports, by kind.
const (
	ProblemUnreadable = "unreadable" // not a line of any chain
	ProblemAltered    = "altered"    // a line's content no longer hashes to what the next line says
	ProblemInserted   = "inserted"   // a line the chain did not write
	ProblemDeleted    = "deleted"    // lines missing from the chain
	ProblemReordered  = "reordered"  // lines out of their order
	ProblemSignature  = "signature"  // a checkpoint whose signature does not verify
	ProblemOpen       = "open"       // (with RequireClosed) a chain without its final checkpoint
)

// Problem is the first thing Verify found wrong: where, and what.
type Problem struct {
	File   string `json:"file"`
	Line   int    `json:"line"` // 1-based, in File
	Chain  string `json:"chain,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string {
	where := fmt.Sprintf("%s:%d", p.File, p.Line)
	if p.Chain != "" {
		where += fmt.Sprintf(" (chain %s, seq %d)", p.Chain, p.Seq)
	}
	return fmt.Sprintf("%s: %s: %s", where, p.Kind, p.Detail)
}

// ChainReport is what Verify found of one chain.
type ChainReport struct {
	ID       string `json:"chain"`
	Instance string `json:"instance,omitempty"`
	// First and Last are the sequence numbers seen; Lines how many.
	First, Last uint64 `json:"-"`
	Lines       uint64 `json:"lines"`
	// Verified lines are covered by a checkpoint whose signature holds;
	// the rest (after the last one) are unverified, not accepted.
	Verified    uint64    `json:"verified"`
	Unverified  uint64    `json:"unverified"`
	Checkpoints int       `json:"checkpoints"`
	Closed      bool      `json:"closed"` // ends with its final checkpoint
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	// LastCheckpoint is the time of the last valid checkpoint.
	LastCheckpoint time.Time `json:"last_checkpoint,omitzero"`
	// Records counts lines that are requests' records (not events).
	Records uint64 `json:"records"`
}

// Report is the outcome of Verify.
type Report struct {
	Files   int            `json:"files"`
	Lines   int            `json:"lines"`
	Chains  []*ChainReport `json:"chains"`
	Problem *Problem       `json:"problem,omitempty"`
}

// OK reports whether nothing was found wrong.
func (r *Report) OK() bool { return r.Problem == nil }

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// RequireClosed reports a chain that does not end with its final
	// checkpoint (a writer that crashed, a tail deleted) as a problem;
	// otherwise it is reported open, its tail unverified.
	RequireClosed bool
}

// chainLine is what Verify reads of a line.
type chainLine struct {
	Time     string  `json:"time"`
	Event    string  `json:"event"`
	Chain    string  `json:"chain"`
	Seq      uint64  `json:"seq"`
	Prev     *string `json:"prev"`
	Sig      string  `json:"sig"`
	Lines    string  `json:"lines"`
	Final    string  `json:"final"`
	Instance string  `json:"instance"`
}

// chainState is a chain as Verify walks it.
type chainState struct {
	rep       *ChainReport
	lastHash  string
	lastFile  string
	lastLine  int
	sinceCP   uint64 // lines since the last checkpoint
	final     bool   // the last line was the final checkpoint
	gap       *Problem
	gapExpect uint64
}

// maxLine bounds one line of an audit file.
const maxLine = 4 << 20

// Verify checks audit files: every line belongs to a chain, in order,
// linked by hash to the line before; every checkpoint's signature holds
// over the chain head it names. Files may be given in any order; each
// is read in the order of its first line's chain time. It stops at the
// first problem. Lines after a chain's last checkpoint are counted
// unverified.
func Verify(files []Input, sv SigVerifier, o VerifyOptions) (*Report, error) {
	rep := &Report{Files: len(files)}
	ordered, err := orderFiles(files)
	if err != nil {
		return nil, err
	}
	chains := map[string]*chainState{}
	for _, f := range ordered {
		sc := bufio.NewScanner(bytes.NewReader(f.data))
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		n := 0
		for sc.Scan() {
			n++
			rep.Lines++
			if p := verifyLine(chains, rep, sv, f.name, n, sc.Bytes()); p != nil {
				rep.Problem = p
				return rep, nil
			}
		}
		if err := sc.Err(); err != nil {
			rep.Problem = &Problem{File: f.name, Line: n + 1, Kind: ProblemUnreadable, Detail: err.Error()}
			return rep, nil
		}
	}
	for _, c := range chains {
		if c.gap != nil {
			rep.Problem = c.gap
			return rep, nil
		}
		c.rep.Unverified = c.rep.Lines - c.rep.Verified
		c.rep.Closed = c.final
		if !c.final && o.RequireClosed {
			rep.Problem = &Problem{File: c.lastFile, Line: c.lastLine, Chain: c.rep.ID, Seq: c.rep.Last, Kind: ProblemOpen,
				Detail: fmt.Sprintf("the chain ends here without its final checkpoint: the writer crashed or is still writing, or the lines after it were deleted; %d lines after the last checkpoint are unverified", c.rep.Unverified)}
		}
	}
	return rep, nil
}

type fileData struct {
	name  string
	data  []byte
	first time.Time
	seq   uint64
}

// orderFiles reads the files and orders them by their first chain line's
// time, then sequence number: rotated files in the order written.
func orderFiles(files []Input) ([]fileData, error) {
	out := make([]fileData, 0, len(files))
	for _, f := range files {
		data, err := io.ReadAll(f.R)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		fd := fileData{name: f.Name, data: data}
		if i := bytes.IndexByte(data, '\n'); i > 0 {
			var l chainLine
			if json.Unmarshal(data[:i], &l) == nil {
				fd.first, _ = time.Parse(time.RFC3339Nano, l.Time)
				fd.seq = l.Seq
			}
		}
		out = append(out, fd)
	}
	slices.SortStableFunc(out, func(a, b fileData) int {
		if c := a.first.Compare(b.first); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return out, nil
}

func verifyLine(chains map[string]*chainState, rep *Report, sv SigVerifier, file string, n int, raw []byte) *Problem {
	at := func(kind, format string, args ...any) *Problem {
		return &Problem{File: file, Line: n, Kind: kind, Detail: fmt.Sprintf(format, args...)}
	}
	var l chainLine
	if err := json.Unmarshal(raw, &l); err != nil {
		return at(ProblemUnreadable, "not a JSON object (a torn or foreign line)")
	}
	if l.Chain == "" || l.Seq == 0 || l.Prev == nil || !bytes.HasSuffix(raw, []byte(`,"prev":"`+*l.Prev+`"}`)) {
		return at(ProblemInserted, "the line carries no chain fields at its end: the chain did not write it")
	}
	p := func(kind, format string, args ...any) *Problem {
		pr := at(kind, format, args...)
		pr.Chain, pr.Seq = l.Chain, l.Seq
		return pr
	}
	c := chains[l.Chain]
	if c == nil {
		if l.Seq != 1 {
			return p(ProblemDeleted, "the chain's first line here is seq %d: lines 1 to %d are missing (or in files not given)", l.Seq, l.Seq-1)
		}
		if l.Event != EventChainStart || *l.Prev != "" {
			return p(ProblemInserted, "a chain's first line must be its chain_start event")
		}
		c = &chainState{rep: &ChainReport{ID: l.Chain, Instance: l.Instance, First: 1}}
		c.rep.Start, _ = time.Parse(time.RFC3339Nano, l.Time)
		chains[l.Chain] = c
		rep.Chains = append(rep.Chains, c.rep)
	} else {
		expect := c.rep.Last + 1
		switch {
		case c.gap != nil && l.Seq == c.gapExpect:
			return p(ProblemReordered, "seq %d comes after seq %d (%s)", l.Seq, c.rep.Last, c.gap.where())
		case c.gap != nil:
			return c.gap
		case c.final:
			return p(ProblemInserted, "a line after the chain's final checkpoint (%s:%d)", c.lastFile, c.lastLine)
		case l.Seq == expect && *l.Prev != c.lastHash:
			return &Problem{File: c.lastFile, Line: c.lastLine, Chain: l.Chain, Seq: c.rep.Last, Kind: ProblemAltered,
				Detail: fmt.Sprintf("the line no longer hashes to the prev the next line (%s:%d) carries: it was changed (or that prev was)", file, n)}
		case l.Seq > expect:
			// A gap, unless the missing line comes next (two lines swapped).
			c.gap = p(ProblemDeleted, "seq %d to %d are missing before this line", expect, l.Seq-1)
			c.gapExpect = expect
		case l.Seq < expect:
			return p(ProblemInserted, "seq %d was already seen (last at %s:%d): one of the two was not written by the chain", l.Seq, c.lastFile, c.lastLine)
		}
	}
	c.rep.Last = l.Seq
	c.rep.Lines++
	c.sinceCP++
	if l.Event == "" {
		c.rep.Records++
	}
	c.lastHash = LineHash(raw)
	c.lastFile, c.lastLine = file, n
	if end, err := time.Parse(time.RFC3339Nano, l.Time); err == nil {
		c.rep.End = end
	}
	if l.Event != EventCheckpoint {
		return nil
	}
	// A checkpoint: its signature covers the chain head before it.
	lines, err := strconv.ParseUint(l.Lines, 10, 64)
	if err != nil {
		return p(ProblemSignature, "a checkpoint without its line count")
	}
	sig, err := base64.RawURLEncoding.DecodeString(l.Sig)
	if err != nil || sv == nil {
		return p(ProblemSignature, "a checkpoint without a readable signature")
	}
	final := l.Final == "true"
	if err := sv.Verify(sig, CheckpointMessage(l.Chain, l.Seq, *l.Prev, l.Time, lines, final)); err != nil {
		return p(ProblemSignature, "the signature does not hold: the %d lines it covers (since seq %d) were altered, inserted or removed and the chain re-hashed, or the key is not the one given", lines, l.Seq-lines)
	}
	if lines != c.sinceCP-1 {
		return p(ProblemSignature, "the checkpoint covers %d lines, but %d came since the previous one", lines, c.sinceCP-1)
	}
	c.rep.Checkpoints++
	c.rep.Verified = c.rep.Lines
	c.sinceCP = 0
	c.final = final
	c.rep.LastCheckpoint, _ = time.Parse(time.RFC3339Nano, l.Time)
	return nil
}

func (p *Problem) where() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

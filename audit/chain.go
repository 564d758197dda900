package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The hash chain.
//
// Every line an Auditor writes (records, events, checkpoints) passes
// through one sequencer, which numbers it and links it to the line before:
// before the closing brace it appends
//
//	,"instance":"NAME","chain":"ID","seq":N,"prev":"HASH"
//
// (instance only when the auditor has one) where ID names this run of the auditor, N counts from 1 and HASH is the
// SHA-256 (base64url, no padding) of the whole previous line of the chain,
// its newline excluded. Line 1 is a chain_start event (prev ""). Every
// CheckpointEvery lines and every CheckpointInterval, idle or not, a
// checkpoint event signs the chain head with the auditor's Signer
// (Ed25519, through Tink); Close writes a final one. Lines are written in
// chain order to every sink, in batches: the sequencer gathers what
// callers submitted while the previous batch was being written.

// Signer signs checkpoints: a tink.Signer (Ed25519).
type Signer interface {
	Sign(data []byte) ([]byte, error)
}

// Chain events.
const (
	EventChainStart = "chain_start"
	EventCheckpoint = "checkpoint"
	// EventSinkDown and EventSinkUp: a sink failed a write, and took one
	// again (the other sinks record it; the one down misses lines).
	EventSinkDown = "audit_sink_down"
	EventSinkUp   = "audit_sink_up"
)

// Defaults of checkpoints.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
)

// CheckpointMessage is what a checkpoint's signature covers: the chain,
// the checkpoint's own sequence number, the hash of the line before it,
// its time as written, how many lines it covers since the previous
// checkpoint, and whether it closes the chain.
func CheckpointMessage(chain string, seq uint64, prev, time string, lines uint64, final bool) []byte {
	return fmt.Appendf(nil, "phiguard audit checkpoint v1\nchain %s\nseq %d\nprev %s\ntime %s\nlines %d\nfinal %t\n", chain, seq, prev, time, lines, final)
}

// LineHash is the hash the next line of a chain carries as prev: the
// SHA-256 of line (without its newline), base64url without padding.
func LineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// entry is a line submitted to the sequencer, and where its outcome goes.
type entry struct {
	line  []byte // a JSON object ending in "}\n"
	done  chan error
	timer *time.Timer // bounds the wait; stopped while pooled
}

var entries = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &entry{done: make(chan error, 1), timer: t}
}}

// sequencer numbers, links, signs and writes lines.
type sequencer struct {
	a        *Auditor
	queue    chan *entry
	stop     chan struct{}
	stopped  chan struct{}
	signer   Signer
	every    uint64
	interval time.Duration
	instance string

	// Used by the loop only.
	id      string
	seq     uint64
	prev    []byte // base64url SHA-256 of the last line; empty before line 1
	sinceCP uint64 // lines since the last checkpoint
	lastCP  time.Time
	buf     []byte
	lines   int // in buf
	batch   []*entry
}

func newChainID() string {
	var b [10]byte
	rand.Read(b[:])
	return "c_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// maxBatchLines bounds the lines of one batch.
const maxBatchLines = 512

func (q *sequencer) run() {
	defer close(q.stopped)
	tick := time.NewTicker(q.interval)
	defer tick.Stop()
	for {
		select {
		case e := <-q.queue:
			q.batch = append(q.batch[:0], e)
		gather:
			for len(q.batch) < maxBatchLines {
				select {
				case e := <-q.queue:
					q.batch = append(q.batch, e)
				default:
					break gather
				}
			}
			q.flush(noCheckpoint)
		case <-tick.C:
			if q.seq > 0 && q.signer != nil && time.Since(q.lastCP) >= q.interval/2 {
				q.batch = q.batch[:0]
				q.flush(checkpointNow)
			}
		case <-q.stop:
			// Lines submitted before Close are written, then the final checkpoint.
			q.batch = q.batch[:0]
			for {
				select {
				case e := <-q.queue:
					q.batch = append(q.batch, e)
					continue
				default:
				}
				break
			}
			if len(q.batch) > 0 || q.seq > 0 {
				q.flush(finalCheckpoint)
			}
			return
		}
	}
}

// Checkpoints a flush adds after its batch, besides those due by count.
const (
	noCheckpoint = iota
	checkpointNow
	finalCheckpoint
)

// flush writes the batch, with the checkpoints due (and cp), to every
// sink, and tells each caller the outcome.
func (q *sequencer) flush(cp int) {
	q.buf, q.lines = q.buf[:0], 0
	if q.seq == 0 {
		q.appendStart()
	}
	for _, e := range q.batch {
		q.appendLine(e.line)
		if q.signer != nil && q.sinceCP >= q.every {
			q.appendCheckpoint(false)
		}
	}
	if cp != noCheckpoint && q.signer != nil {
		q.appendCheckpoint(cp == finalCheckpoint)
	}
	if len(q.buf) == 0 {
		return
	}
	err := q.writeNoting()
	for _, e := range q.batch {
		e.done <- err
	}
	if cap(q.buf) > 1<<20 {
		q.buf = nil
	}
}

// writeNoting writes q.buf to every sink, and, when that took a sink
// down or brought it back, writes an event saying so (which the sink
// that is down misses, and the others keep).
func (q *sequencer) writeNoting() error {
	sinks := q.a.sinks
	var was [8]bool
	downBefore := was[:0]
	for i := range sinks {
		downBefore = append(downBefore, sinks[i].isDown())
	}
	err := q.a.writeAll(q.buf, q.lines)
	q.buf, q.lines = q.buf[:0], 0
	for i := range sinks {
		switch down := sinks[i].isDown(); {
		case down && !downBefore[i]:
			q.appendLine(q.a.event(EventSinkDown, "sink", sinks[i].name))
		case !down && downBefore[i]:
			q.appendLine(q.a.event(EventSinkUp, "sink", sinks[i].name))
		}
	}
	if q.lines > 0 {
		q.a.writeAll(q.buf, q.lines)
		q.buf, q.lines = q.buf[:0], 0
	}
	return err
}

// appendLine links line (a JSON object and its newline) into the chain.
func (q *sequencer) appendLine(line []byte) {
	q.seq++
	start := len(q.buf)
	q.buf = append(q.buf, line[:len(line)-2]...) // without "}\n"
	if q.instance != "" {
		q.buf = append(q.buf, `,"instance":`...)
		q.buf = appendString(q.buf, q.instance)
	}
	q.buf = append(q.buf, `,"chain":"`...)
	q.buf = append(q.buf, q.id...)
	q.buf = append(q.buf, `","seq":`...)
	q.buf = strconv.AppendUint(q.buf, q.seq, 10)
	q.buf = append(q.buf, `,"prev":"`...)
	q.buf = append(q.buf, q.prev...)
	q.buf = append(q.buf, `"}`...)
	sum := sha256.Sum256(q.buf[start:])
	q.prev = base64.RawURLEncoding.AppendEncode(q.prev[:0], sum[:])
	q.buf = append(q.buf, '\n')
	q.lines++
	q.sinceCP++
}

func (q *sequencer) appendStart() {
	q.id = newChainID()
	q.lastCP = q.a.now()
	line := q.a.event(EventChainStart, "signed", strconv.FormatBool(q.signer != nil))
	q.appendLine(line)
}

// appendCheckpoint signs the chain head. A signer that fails leaves the
// checkpoint out (the lines stay in the chain, unverified until the next
// one) and is logged.
func (q *sequencer) appendCheckpoint(final bool) {
	now := q.a.now().UTC().Format(time.RFC3339Nano)
	lines := q.sinceCP
	sig, err := q.signer.Sign(CheckpointMessage(q.id, q.seq+1, string(q.prev), now, lines, final))
	if err != nil {
		q.a.log.Error("audit checkpoint not signed", "err", err)
		return
	}
	attrs := []string{"lines", strconv.FormatUint(lines, 10)}
	if final {
		attrs = append(attrs, "final", "true")
	}
	attrs = append(attrs, "sig", base64.RawURLEncoding.EncodeToString(sig))
	q.appendLine(q.a.eventAt(now, EventCheckpoint, attrs...))
	q.sinceCP = 0
	q.lastCP = q.a.now()
}

// submit hands line to the sequencer and waits for it to be written to
// every sink, at most within: a line not yet taken by then is not
// written. kept reports that the sequencer may still read line (the wait
// ended after it was taken): the caller must not reuse it.
func (q *sequencer) submit(line []byte, within time.Duration) (kept bool, err error) {
	e := entries.Get().(*entry)
	e.line = line
	e.timer.Reset(within)
	select {
	case q.queue <- e:
	case <-q.stopped:
		e.timer.Stop()
		entries.Put(e)
		return false, errAuditorClosed
	case <-e.timer.C:
		entries.Put(e)
		return false, fmt.Errorf("the audit trail did not take the line within %s", within)
	}
	select {
	case err := <-e.done:
		e.timer.Stop()
		e.line = nil
		entries.Put(e)
		return false, err
	case <-e.timer.C:
		// The line will still be written; its entry is not reused.
		return true, fmt.Errorf("the audit trail did not write the line within %s", within)
	}
}

var errAuditorClosed = errors.New("audit trail closed")

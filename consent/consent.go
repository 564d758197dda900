package consent

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"

	"github.com/phiguard/phiguard/internal/orgid"
)

// State is a number's consent in an org.
type State uint8

// States. Unknown is never recorded: it is what Get answers for a number
// with no entry.
const (
	Unknown State = iota
	Granted
	Revoked
)

// String names s: "unknown", "granted" or "revoked".
func (s State) String() string {
	switch s {
	case Unknown:
		return "unknown"
	case Granted:
		return "granted"
	case Revoked:
		return "revoked"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Entry is one consent event. A number's latest entry in an org is its
// consent there.
type Entry struct {
	// Org is the organization whose messages the consent is for.
	Org string
	// Ref is the keyed hash of the normalized number ("h1:…"), never the
	// number itself.
	Ref string
	// State is Granted or Revoked.
	State State
	// At is when the event happened. Stores keep milliseconds.
	At time.Time
	// Source is how it arrived: "keyword" (an inbound SMS), "cli",
	// "admin"…; 1 to MaxSource printable ASCII characters, never a number
	// or a name.
	Source string
}

// MaxSource is the longest Source accepted.
const MaxSource = 64

// maxRef is the longest Ref accepted ("h1:" and 28 characters today).
const maxRef = 128

// Check reports what is wrong with e, if anything. Its errors name no
// value but the org id.
func (e Entry) Check() error {
	if err := orgid.Check(e.Org); err != nil {
		return err
	}
	if err := checkRef(e.Ref); err != nil {
		return err
	}
	switch {
	case e.State != Granted && e.State != Revoked:
		return fmt.Errorf("a consent entry is granted or revoked, not %v", e.State)
	case e.At.UnixMilli() <= 0:
		return errors.New("a consent entry needs the time of its event")
	case e.Source == "":
		return errors.New("a consent entry needs its source (keyword, cli, admin…)")
	case len(e.Source) > MaxSource:
		return fmt.Errorf("a consent entry's source is longer than %d characters", MaxSource)
	case !printable(e.Source):
		return errors.New("a consent entry's source holds a character that is not printable ASCII")
	}
	return nil
}

// checkRef refuses an empty or overlong ref, white space and control
// characters, and a ref that reads as a phone number: a caller that
// forgot to hash would otherwise store the number.
func checkRef(ref string) error {
	switch {
	case ref == "":
		return errors.New("a consent entry needs its number's ref")
	case len(ref) > maxRef:
		return fmt.Errorf("a consent ref is longer than %d characters", maxRef)
	case !printable(ref) || hasSpace(ref):
		return errors.New("a consent ref holds white space or a character that is not printable ASCII")
	}
	if _, err := Normalize(ref); err == nil {
		return errors.New("a consent ref must be the number's keyed hash, not the number")
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func hasSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if unicode.IsSpace(rune(s[i])) {
			return true
		}
	}
	return false
}

// Store keeps consent entries. Implementations are safe for concurrent
// use, and keep entries until they are replaced: an opt-out never
// expires.
type Store interface {
	// Get returns the ref's latest entry in org; State Unknown (and zero
	// At) when none. An error means the store could not tell: callers
	// refuse.
	Get(ctx context.Context, org, ref string) (Entry, error)
	// Record stores e unless an entry with a later At is already stored
	// for (org, ref): events may arrive out of order, and the latest
	// wins; at equal At, e wins. It reports whether e was applied. An At
	// more than MaxAhead past the store's clock is recorded as the
	// clock's time, so one event from a wrong clock cannot outrank every
	// later one.
	Record(ctx context.Context, e Entry) (applied bool, err error)
	// List returns org's entries sorted by Ref: all of them when limit
	// <= 0, else the first limit.
	List(ctx context.Context, org string, limit int) ([]Entry, error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	Close() error
}

// MaxAhead is how far past a store's clock an event may be dated: the
// skew allowed between replicas' clocks.
const MaxAhead = time.Minute

// ErrFull is the memory store refusing a new entry it has no room for.
var ErrFull = errors.New("consent store is full")

// stamp is e's time as stored, in Unix milliseconds: no later than now
// plus MaxAhead, else now.
func stamp(e Entry, now time.Time) int64 {
	at := e.At.UnixMilli()
	if at > now.Add(MaxAhead).UnixMilli() {
		return now.UnixMilli()
	}
	return at
}

// checkGet refuses what Get and List cannot be asked.
func checkGet(org, ref string) error {
	if err := orgid.Check(org); err != nil {
		return err
	}
	return checkRef(ref)
}

// atTime is the time of a stored Unix millisecond, in UTC.
func atTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// Filter selects lines of the trail for an auditor. Empty fields select
// everything.
type Filter struct {
	Org, User, Route, Action string
	// Since and Until bound the line's time: Since <= time < Until.
	Since, Until time.Time
	// Events selects event lines too (start, reload, revocations…);
	// otherwise only requests' records.
	Events bool
}

// Line is a line of the trail as an auditor reads it: the record's
// fields, the event's name, the chain's, and the line itself.
type Line struct {
	Record
	Event string `json:"event"`
	Chain string `json:"chain"`
	Seq   uint64 `json:"seq"`
	// Raw is the line as written, without its newline.
	Raw []byte `json:"-"`
}

// ParseLine reads one line of the trail.
func ParseLine(raw []byte) (Line, error) {
	var l Line
	err := json.Unmarshal(raw, &l)
	l.Raw = raw
	return l, err
}

// Match reports whether f selects l. The chain's own lines (chain_start,
// checkpoint) are never selected.
func (f Filter) Match(l Line) bool {
	switch {
	case l.Event == EventChainStart || l.Event == EventCheckpoint:
		return false
	case l.Event != "" && !f.Events:
		return false
	case f.Org != "" && l.Org != f.Org,
		f.User != "" && l.User != f.User,
		f.Route != "" && l.Route != f.Route,
		f.Action != "" && !slices.Contains(l.Actions, f.Action) && l.Event != f.Action,
		!f.Since.IsZero() && l.Time.Before(f.Since),
		!f.Until.IsZero() && !l.Time.Before(f.Until):
		return false
	}
	return true
}

// Columns are the table and CSV columns of a line.
var Columns = []string{"time", "chain", "seq", "event", "org", "user", "role", "route", "method", "path", "actions", "decision", "status", "reason"}

// Row is l's values for Columns.
func (l Line) Row() []string {
	actions := ""
	for i, a := range l.Actions {
		if i > 0 {
			actions += ","
		}
		actions += a
	}
	status := ""
	if l.Status != 0 {
		status = strconv.Itoa(l.Status)
	}
	return []string{l.Time.UTC().Format(time.RFC3339Nano), l.Chain, strconv.FormatUint(l.Seq, 10), l.Event, l.Org, l.User, l.Role,
		l.Route, l.Method, l.Path, actions, l.Decision, status, l.Reason}
}

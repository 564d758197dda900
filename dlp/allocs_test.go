// The race detector makes sync.Pool drop what it is given, so the regexp
// package's matchers are allocated afresh: counting allocations means
// something only without it.

//go:build !race

package dlp

import "testing"

// TestScanAllocs holds Scan to its promise: a message with nothing a
// detector must weigh (a date but no birth keyword, a vitamin but no
// diagnosis keyword) costs no allocation.
func TestScanAllocs(t *testing.T) {
	set := benchSet(t)
	msg := []byte(noMatchMessage)
	if got := set.Scan(msg); got != 0 {
		t.Fatalf("Scan: got %v, want 0", got.Names(set))
	}
	if got := testing.AllocsPerRun(100, func() { set.Scan(msg) }); got != 0 {
		t.Errorf("Scan allocations: got %v, want 0", got)
	}
}

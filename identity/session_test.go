package identity

import (
	"strings"
	"testing"
)

func TestSessionRef(t *testing.T) {
	r := SessionRef("sid:abc")
	if !ValidSessionRef(r) || r == SessionRef("sid:abd") || strings.Contains(r, "abc") || r != SessionRef("sid:abc") {
		t.Fatalf("SessionRef: %q", r)
	}
	for _, bad := range []string{"", "sid:abc", "ses_", "ses_short", r + "x", "ses_" + strings.Repeat("!", 22)} {
		if ValidSessionRef(bad) {
			t.Errorf("ValidSessionRef(%q)", bad)
		}
	}
}

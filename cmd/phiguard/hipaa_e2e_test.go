package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestHIPAAModeEndToEnd: behind the demo policy (org_a in HIPAA mode since
// 2026-01-01, contacts for agents and admins), each control answers with
// its status and code, the app is never called, and the audit record
// names the caller, the org and the reason.
func TestHIPAAModeEndToEnd(t *testing.T) {
	s := startStack(t, false)
	msgs := s.proxyURL + "/api/v1/conversations/cv_1/messages"
	for _, c := range []struct {
		user, url string
		status    int
		code      string
	}{
		{"alice", msgs, 200, ""},
		{"mallory", msgs, 403, "mfa_required"},
		{"olivia", msgs, 401, "session_terminated"},
		{"victor", s.proxyURL + "/api/v1/contacts", 403, "role_not_allowed"},
		{"alice", s.proxyURL + "/api/v1/contacts", 200, ""},
		{"bob", msgs, 200, ""}, // org_b is not in HIPAA mode
	} {
		hits := s.appHits.Load()
		status, body := s.do(t, "GET", c.url, c.user, "", nil)
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(body, &e)
		if status != c.status || e.Error.Code != c.code {
			t.Errorf("%s GET %s: %d %s, want %d %s", c.user, c.url, status, body, c.status, c.code)
		}
		if c.status != 200 && s.appHits.Load() != hits {
			t.Errorf("%s: the app was called", c.user)
		}
	}
	var found int
	for _, line := range bytes.Split(s.read(t, "audit.jsonl"), []byte("\n")) {
		var rec struct{ User, Org, Decision, Reason string }
		if json.Unmarshal(line, &rec) != nil || rec.Decision != "deny" {
			continue
		}
		switch {
		case rec.User == "mallory" && rec.Org == "org_a" && strings.Contains(rec.Reason, "second factor"),
			rec.User == "olivia" && rec.Org == "org_a" && strings.Contains(rec.Reason, "sign in again"),
			rec.User == "victor" && rec.Org == "org_a" && strings.Contains(rec.Reason, "role"):
			found++
		}
	}
	if found != 3 {
		t.Errorf("%d of the 3 refusals audited with user, org and reason:\n%s", found, s.read(t, "audit.jsonl"))
	}
}

package engine

import (
	"bytes"
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
)

const recordPolicy = `version: 1
ingress: {upstream: "http://app.invalid"}
identity: {jwt: {jwks: unused.json}}
keys: {keyring: unused}
orgs: [{id: org_a}]
routes:
  - name: change-role
    match: {methods: [PATCH], path: "/users/{id}/role"}
    record:
      request: [{name: new_role, field: "$.role"}, {name: reason, field: "$.why"}]
      response: [{name: user, field: "$.user_id"}, {name: old_role, field: "$.previous_role"}]
`

// TestPermissionChangeRecorded: a route's recorded fields reach its audit
// record, before (the app's answer) and after (the request), with the
// caller who made the change; bodies pass unchanged; objects are not
// copied, long values are cut, control characters dropped; a failed
// change records no answer.
func TestPermissionChangeRecorded(t *testing.T) {
	r := newRigWith(t, recordPolicy, "org_a")
	ctx := context.Background()
	change := func(body, answer string, status int) audit.Record {
		t.Helper()
		req := request("PATCH", "/users/u_12/role", "alice")
		req.Header.Set("Content-Type", "application/json")
		x, err := r.eng.Begin(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		sealed, err := x.SealRequest(ctx, req.Header, strings.NewReader(body), int64(len(body)))
		if err != nil || string(sealed) != body {
			t.Fatalf("sealed %s (%v), want the body as sent", sealed, err)
		}
		out, _, err := x.OpenResponse(ctx, status, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader([]byte(answer)), int64(len(answer)))
		if err != nil || string(out) != answer {
			t.Fatalf("opened %s (%v), want the answer as sent", out, err)
		}
		if err := x.Allow(ctx, status); err != nil {
			t.Fatal(err)
		}
		return r.aud.last(t)
	}
	rec := change(`{"role":"admin","why":{"ticket":1}}`, `{"user_id":"u_12","previous_role":"agent","x":1}`, 200)
	want := []audit.Value{{Name: "new_role", Value: "admin"}, {Name: "reason", Value: "(not recorded: not a single value)"}, {Name: "user", Value: "u_12"}, {Name: "old_role", Value: "agent"}}
	if !reflect.DeepEqual(rec.Recorded, want) || rec.User != "alice" || rec.Route != "change-role" {
		t.Errorf("record %+v, want recorded %v by alice", rec, want)
	}
	rec = change(`{"role":"`+strings.Repeat("a", 200)+`\u0007"}`, `{"error":"no such user"}`, 404)
	if len(rec.Recorded) != 1 || rec.Recorded[0].Value != strings.Repeat("a", 128) {
		t.Errorf("a long value, and a failed change: %+v", rec.Recorded)
	}
	rec = change(`{"role":null}`, `{"user_id":42}`, 200)
	if !reflect.DeepEqual(rec.Recorded, []audit.Value{{Name: "new_role", Value: "null"}, {Name: "user", Value: "42"}}) {
		t.Errorf("null and a number: %+v", rec.Recorded)
	}
}

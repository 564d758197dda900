package audit

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.jsonl")

// TestGoldenRecords: each kind of record and event, encoded, is exactly
// what testdata/golden.jsonl holds (docs/audit.md documents it): a change
// to the schema shows in review. Regenerate with -update.
func TestGoldenRecords(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 30, 0, 123456789, time.UTC)
	base := func() Record {
		return Record{Time: at, RequestID: "4f1c2a9e0b7d3c5a6e8f9012", Org: "org_a", User: "alice", Role: "agent",
			Session: "ses_RkfaVg8_0hR_faCXlsh4PA", ClientIP: "203.0.113.7", UserAgent: "Clinic/2.1 (iOS 18)",
			Route: "send-message", Method: "POST", Path: "/api/v1/conversations/{id}/messages",
			Params: []Value{{Name: "id", Value: "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJl"}}, Policy: "9cefe7f5bea963a0"}
	}
	var kinds []Record
	// The intent of a PHI write, before the app is called.
	intent := base()
	intent.Phase, intent.Decision, intent.LatencyMS = PhaseIntent, DecisionAllow, 0.29
	intent.AddField(ActionEncrypt, "$.body", "", 1)
	intent.AddField(ActionIndex, "$.body", "", 6)
	kinds = append(kinds, intent)
	// Its outcome.
	outcome := intent
	outcome.Phase, outcome.Status, outcome.UpstreamStatus, outcome.LatencyMS = "", 201, 201, 4.182
	outcome.Fields = append([]Field(nil), intent.Fields...)
	outcome.Actions = append([]string(nil), intent.Actions...)
	outcome.AddField(ActionDecrypt, "$.body", "", 1)
	kinds = append(kinds, outcome)
	// A read by a non-reader: masked.
	mask := base()
	mask.User, mask.Role, mask.Method, mask.Route, mask.Decision, mask.Status, mask.UpstreamStatus = "victor", "viewer", "GET", "list-messages", DecisionAllow, 200, 200
	mask.AddField(ActionMask, "$.data[*].body", "the caller's role may not read it", 12)
	kinds = append(kinds, mask)
	// A refusal.
	deny := base()
	deny.User, deny.Decision, deny.Reason, deny.Status = "mallory", DecisionDeny, "this organization requires a login with a second factor (MFA)", 403
	deny.AddAction(ActionDeny)
	kinds = append(kinds, deny)
	// A failure: the keys could not be reached.
	failure := base()
	failure.Decision, failure.Reason, failure.Status = DecisionError, "the organization's keys are unavailable; retry shortly", 503
	kinds = append(kinds, failure)
	// A break-glass read.
	glass := base()
	glass.User, glass.Role, glass.Method, glass.Decision, glass.Status, glass.UpstreamStatus = "carla", "clinician", "GET", DecisionAllow, 200, 200
	glass.BreakGlass = "patient unresponsive in ED"
	glass.AddAction(ActionBreakGlass)
	glass.AddField(ActionDecrypt, "$.data[*].body", "", 3)
	kinds = append(kinds, glass)
	// An integration's high-risk access.
	integ := base()
	integ.User, integ.Method, integ.Decision, integ.Status, integ.UpstreamStatus = "svc-ehr", "GET", DecisionAllow, 200, 200
	integ.Integration, integ.Scope = "ehr-sync", "messages.read"
	integ.AddAction(ActionHighRisk)
	kinds = append(kinds, integ)
	// A permission change, with its before and after.
	role := base()
	role.User, role.Role, role.Method, role.Route, role.Path = "adam", "admin", "PATCH", "change-role", "/api/v1/users/{id}/role"
	role.Decision, role.Status, role.UpstreamStatus = DecisionAllow, 200, 200
	role.Recorded = []Value{{Name: "new_role", Value: "agent"}, {Name: "user", Value: "victor"}, {Name: "old_role", Value: "viewer"}}
	kinds = append(kinds, role)
	// A request no route took, without a caller.
	lost := Record{Time: at, RequestID: "0a0b0c0d0e0f101112131415", ClientIP: "198.51.100.4", Method: "GET", Path: "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJm",
		Decision: DecisionDeny, Reason: "no route matches and the policy default is deny", Status: 403, Policy: "9cefe7f5bea963a0"}
	lost.AddAction(ActionDeny)
	kinds = append(kinds, lost)

	// An egress call to a carrier under a BAA: tokens opened for it, the
	// recipient's consent checked.
	sms := Record{Time: at, RequestID: "1b2c3d4e5f60718293a4b5c6", Org: "org_a", ClientIP: "127.0.0.1", UserAgent: "twilio-go/1.26",
		Route: "carrier-send", Destination: "api.twilio.com", Method: "POST", Path: "/2010-04-01/Accounts/{account}/Messages.json",
		Params: []Value{{Name: "account", Value: "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJn"}}, Decision: DecisionAllow, Status: 201, UpstreamStatus: 201,
		LatencyMS: 85.112, Policy: "9cefe7f5bea963a0"}
	sms.AddField(ActionDecrypt, "form:Body", "", 1)
	sms.AddField(ActionConsent, "form:To", "granted", 1)
	sms.Recorded = []Value{{Name: "consent_ref", Value: "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJo"}}
	kinds = append(kinds, sms)
	// A push notification, sanitized and redacted.
	push := Record{Time: at, RequestID: "2c3d4e5f60718293a4b5c6d7", ClientIP: "127.0.0.1", Route: "fcm-send", Destination: "fcm.googleapis.com",
		Method: "POST", Path: "/v1/projects/{project}/messages:send", Decision: DecisionAllow, Status: 200, UpstreamStatus: 200, LatencyMS: 41.5, Policy: "9cefe7f5bea963a0"}
	push.AddField(ActionDrop, "$.message.data", "", 1)
	push.AddField(ActionReplace, "$..body", "", 2)
	push.AddField(ActionDLPRedact, "$.message.android.notification.tag", "phone", 1)
	kinds = append(kinds, push)
	// A call to a host no egress route names.
	exfil := Record{Time: at, RequestID: "3d4e5f60718293a4b5c6d7e8", ClientIP: "127.0.0.1", Destination: "collector.example.net", Method: "POST", Path: "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJp",
		Decision: DecisionDeny, Reason: "no egress route takes this destination: the vendor was not contacted", Status: 403, Policy: "9cefe7f5bea963a0"}
	exfil.AddAction(ActionDeny)
	kinds = append(kinds, exfil)
	// A patient's STOP on the carrier's webhook.
	stop := Record{Time: at, RequestID: "4e5f60718293a4b5c6d7e8f9", Org: "org_a", ClientIP: "54.172.60.1", UserAgent: "TwilioProxy/1.1",
		Route: "sms-inbound", Method: "POST", Path: "/webhooks/sms/{org}", Params: []Value{{Name: "org", Value: "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJq"}},
		Decision: DecisionAllow, Status: 200, UpstreamStatus: 200, LatencyMS: 6.25, Policy: "9cefe7f5bea963a0"}
	stop.AddField(ActionOptOut, "form:From", "", 1)
	stop.AddField(ActionEncrypt, "form:Body", "", 1)
	stop.Recorded = []Value{{Name: "consent_ref", Value: "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJo"}}
	kinds = append(kinds, stop)

	var got bytes.Buffer
	for i := range kinds {
		got.Write(kinds[i].AppendJSON(nil))
		got.WriteByte('\n')
	}
	a := NewAuditor(nil, true)
	stamp := at.Format(time.RFC3339Nano)
	for _, ev := range [][]string{
		{EventChainStart, "signed", "true"},
		{EventStart, "version", "1.4.0", "policy_sha256", "9cefe7f5bea963a069b0206f487550f6f13fe44db8fcd81eec97db42b9bda613"},
		{EventPolicyReload, "result", "success", "cause", "file changed", "sha256", "9cefe7f5bea963a069b0206f487550f6f13fe44db8fcd81eec97db42b9bda613"},
		{EventSessionRevoke, "org", "org_a", "user", "dana", "at", stamp, "via", "cli", "result", "success"},
		{EventConsentChange, "org", "org_a", "ref", "h1:AVt2dXJ1eV9vbmVfaGFzaF9oZXJo", "state", "granted", "source", "front-desk-form", "at", stamp, "result", "success", "via", "cli"},
		{EventSinkDown, "sink", "/var/log/phiguard/audit.jsonl"},
		{EventSinkUp, "sink", "/var/log/phiguard/audit.jsonl"},
		{EventCheckpoint, "lines", "1000", "sig", "AaBbCc"},
		{EventStop},
	} {
		got.Write(a.eventAt(stamp, ev[0], ev[1:]...))
	}
	a.Close()
	path := filepath.Join("testdata", "golden.jsonl")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("records differ from %s (go test ./audit -run TestGoldenRecords -update, then review):\ngot:\n%s\nwant:\n%s", path, got.Bytes(), want)
	}
}

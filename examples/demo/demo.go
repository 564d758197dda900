package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

type options struct {
	bin    string
	policy string
	check  bool
	out    io.Writer
}

const (
	demoProxy = "127.0.0.1:8443"
	demoApp   = "127.0.0.1:8080"
	demoAdmin = "127.0.0.1:9901"
	// demoEgress is egress.listen in configs/demo.yaml; demoCarrier and
	// demoPush are its egress_routes' upstreams, replaced by the fake
	// vendors' free ports.
	demoEgress  = "127.0.0.1:8081"
	demoCarrier = "127.0.0.1:9443"
	demoPush    = "127.0.0.1:9444"
	patient     = "+15558675309" // J. Doe's phone, the contact of step 8
	convID      = "cv_demo"
	secret      = "Biopsy shows early melanoma; call Dr. Rivera"
	caption     = "pathology report for J. Doe"
)

// demoUsers: name → org, role, the login's authentication methods (amr)
// and how long ago the token was issued (iat) and, where set, the user
// authenticated (auth_time). org_a is in HIPAA mode since 2026-01-01.
var demoUsers = []struct {
	name, org, role string
	amr             []any
	age             time.Duration
	authAge         time.Duration
}{
	{"alice", "org_a", "agent", []any{"pwd", "otp"}, time.Minute, 0},             // a care agent of org_a
	{"victor", "org_a", "viewer", []any{"pwd", "hwk"}, time.Minute, 0},           // org_a staff who may not read PHI
	{"bob", "org_b", "agent", []any{"pwd"}, time.Minute, 0},                      // an agent of another clinic (not HIPAA mode)
	{"mallory", "org_a", "agent", []any{"pwd"}, time.Minute, 0},                  // signed in with a password only
	{"olivia", "org_a", "agent", []any{"pwd", "otp"}, 400 * 24 * time.Hour, 0},   // a login from before HIPAA mode
	{"carla", "org_a", "clinician", []any{"pwd", "otp"}, time.Minute, 0},         // not a reader; may break the glass
	{"mkt", "org_a", "agent", []any{"hwk"}, time.Minute, 0},                      // a marketing integration without a BAA (azp)
	{"adam", "org_a", "admin", []any{"pwd", "otp"}, time.Minute, 0},              // an admin who changes roles
	{"nora", "org_a", "agent", []any{"pwd", "otp"}, time.Minute, 13 * time.Hour}, // a fresh token of a login made 13 hours ago
	{"dana", "org_a", "agent", []any{"pwd", "otp"}, time.Minute, 0},              // an agent whose phone is lost
}

type env struct {
	dir, proxy, app, admin string
	egress                 string // phiguard's egress listener
	carrier, push          string // the fake vendors, over TLS
	bin                    string // the binaries' folder, absolute
}

// step is one demo action: printed as a curl line, and checked with -check.
type step struct {
	title  string
	method string
	direct bool      // call the app directly, bypassing phiguard
	admin  bool      // call phiguard's admin listener
	egress bool      // path is a vendor's absolute URL, called through phiguard's egress listener as the app does
	vendor string    // "carrier" or "push": call that fake vendor directly, over TLS
	ctype  string    // the body's Content-Type; default application/json
	pipe   string    // shown after the curl line, e.g. "| grep x"
	header [2]string // one more request header: name, value
	path   string
	user   string
	body   string
	shell  string // a shell command instead of a request
	run    bool   // -check runs shell too ($D, $B and the app's $A set), rather than only printing it; check gets its output
	check  func(e env, status int, body []byte) error
}

func steps() []step {
	msg := fmt.Sprintf(`{"body":%q,"attachments":[{"url":"https://files.example/r.pdf","caption":%q}]}`, secret, caption)
	msgs := "/api/v1/conversations/" + convID + "/messages"
	notify := "/api/v1/conversations/" + convID + "/notify"
	const hook = "/webhooks/sms/org_a"
	stop := url.Values{"AccountSid": {carrierAccount}, "From": {patient}, "To": {"+15005550006"}, "Body": {"STOP"}}
	return []step{
		{title: "Send a message with PHI through phiguard (as alice, an agent of org_a)", method: "POST", path: msgs, user: "alice", body: msg,
			check: func(e env, status int, body []byte) error {
				return want(status == 201 && bytes.Contains(body, []byte(secret)), "want 201 echoing the plaintext, got %d %s", status, body)
			}},
		{title: "The app's store holds only ciphertext tokens, each followed by index words for search", shell: "cat $D/store.json",
			check: func(e env, _ int, _ []byte) error {
				raw, err := os.ReadFile(filepath.Join(e.dir, "store.json"))
				if err != nil {
					return err
				}
				return want(!bytes.Contains(raw, []byte(secret)) && !bytes.Contains(raw, []byte(caption)) &&
					bytes.Count(raw, []byte(`"ephi:v1:org_a:`)) == 2, "store.json does not hold exactly two org_a tokens and no plaintext:\n%s", raw)
			}},
		{title: "Read it back through phiguard: plaintext, JSON types intact", method: "GET", path: msgs, user: "alice",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(secret)) && bytes.Contains(body, []byte(caption)), "want 200 with the plaintext, got %d %s", status, body)
			}},
		{title: "Read it from the app directly: tokens only", method: "GET", path: msgs, direct: true,
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte("ephi:v1:org_a:")) && !bytes.Contains(body, []byte(secret)), "want tokens, got %d %s", status, body)
			}},
		{title: "Search the app's own full-text index (SQLite FTS5) through phiguard: the term becomes index words, the match comes back in plaintext",
			method: "GET", path: "/api/v1/messages/search?q=Melanoma", user: "alice",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(secret)), "want 200 with the message, got %d %s", status, body)
			}},
		{title: "Another clinic (bob, org_b) searching for the same word finds nothing: its index words differ", method: "GET", path: "/api/v1/messages/search?q=melanoma", user: "bob",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(`"data":[]`)), "want 200 with no result, got %d %s", status, body)
			}},
		{title: "The app's access log and database saw index words, never the word", shell: `grep search $D/app-access.log; grep -q -i melanoma $D/app-access.log $D/store.db || echo 'no "melanoma" in the access log or the database'`,
			check: func(e env, _ int, _ []byte) error {
				log, err := os.ReadFile(filepath.Join(e.dir, "app-access.log"))
				if err != nil {
					return err
				}
				db, err := os.ReadFile(filepath.Join(e.dir, "store.db"))
				if err != nil {
					return err
				}
				return want(bytes.Contains(log, []byte("q=w9")) && !bytes.Contains(bytes.ToLower(log), []byte("melanoma")) && !bytes.Contains(db, []byte("melanoma")) && !bytes.Contains(db, []byte("Melanoma")),
					"want index words in the access log and no plaintext word in it or the database:\n%s", log)
			}},
		{title: "Add a contact: the phone number is stored as an exact-match token (E.164, then AES-SIV)", method: "POST", path: "/api/v1/contacts", user: "alice",
			body: `{"name":"J. Doe","phone":"(555) 867-5309","notes":"prefers texts"}`,
			check: func(e env, status int, body []byte) error {
				return want(status == 201 && bytes.Contains(body, []byte(`"phone":"+15558675309"`)), "want 201 with the normalized number, got %d %s", status, body)
			}},
		{title: "Look the contact up by its number, written another way: the app's SQL equality finds it", method: "GET", path: "/api/v1/contacts?phone=555.867.5309", user: "alice",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(`"name":"J. Doe"`)) && bytes.Contains(body, []byte("prefers texts")), "want the contact, got %d %s", status, body)
			}},
		{title: "Another clinic's agent (bob, org_b) reads it through the app's IDOR bug: masked", method: "GET", path: msgs, user: "bob",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte("[protected]")) && !bytes.Contains(body, []byte(secret)), "want the mask, got %d %s", status, body)
			}},
		{title: "org_a staff without a reader role (victor, viewer): masked", method: "GET", path: msgs, user: "victor",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte("[protected]")) && !bytes.Contains(body, []byte(secret)), "want the mask, got %d %s", status, body)
			}},
		{title: "HIPAA mode: a login without a second factor (mallory, password only) gets 403 mfa_required", method: "GET", path: msgs, user: "mallory",
			check: func(e env, status int, body []byte) error {
				return want(status == 403 && bytes.Contains(body, []byte(`"mfa_required"`)), "want 403 mfa_required, got %d %s", status, body)
			}},
		{title: "HIPAA mode: a login from before the org switched it on (olivia) gets 401 session_terminated", method: "GET", path: msgs, user: "olivia",
			check: func(e env, status int, body []byte) error {
				return want(status == 401 && bytes.Contains(body, []byte(`"session_terminated"`)), "want 401 session_terminated, got %d %s", status, body)
			}},
		{title: "Automatic logoff: nora's token is fresh, but she signed in 13 hours ago, past org_a's 12h session lifetime: 401 session_expired", method: "GET", path: msgs, user: "nora",
			check: func(e env, status int, body []byte) error {
				return want(status == 401 && bytes.Contains(body, []byte(`"session_expired"`)), "want 401 session_expired, got %d %s", status, body)
			}},
		{title: "dana reads her messages", method: "GET", path: msgs, user: "dana", pipe: "| head -c 120; echo",
			check: func(e env, status int, body []byte) error {
				return want(status == 200, "want 200, got %d %s", status, body)
			}},
		{title: "Remote wipe: dana lost her phone; end her sessions now (with state.store redis, in every replica)",
			shell: "$B/phiguard sessions revoke -config $D/policy.yaml -org org_a -user dana", run: true,
			check: func(e env, _ int, _ []byte) error {
				raw, _ := os.ReadFile(filepath.Join(e.dir, "audit.jsonl"))
				return want(bytes.Contains(raw, []byte(`"event":"session_revoke"`)), "no session_revoke event in the audit trail")
			}},
		{title: "dana's stolen token now gets 401 session_revoked; she signs in again for a new one", method: "GET", path: msgs, user: "dana",
			check: func(e env, status int, body []byte) error {
				return want(status == 401 && bytes.Contains(body, []byte(`"session_revoked"`)), "want 401 session_revoked, got %d %s", status, body)
			}},
		{title: "allow_roles: a viewer (victor) may not list contacts, 403 role_not_allowed", method: "GET", path: "/api/v1/contacts", user: "victor",
			check: func(e env, status int, body []byte) error {
				return want(status == 403 && bytes.Contains(body, []byte(`"role_not_allowed"`)), "want 403 role_not_allowed, got %d %s", status, body)
			}},
		{title: "HIPAA mode: an API key in the X-Api-Key header gets 403 pat_disabled, audited with alice's name, never the key", method: "GET", path: msgs, user: "alice",
			header: [2]string{"X-Api-Key", "mmpat_4f9c2d"},
			check: func(e env, status int, body []byte) error {
				return want(status == 403 && bytes.Contains(body, []byte(`"pat_disabled"`)), "want 403 pat_disabled, got %d %s", status, body)
			}},
		{title: "Break-glass: a clinician (carla, not a reader) reads the message by giving a reason, audited as break_glass", method: "GET", path: msgs, user: "carla",
			header: [2]string{"X-Break-Glass-Reason", "patient unresponsive in ED"},
			check: func(e env, status int, body []byte) error {
				raw, _ := os.ReadFile(filepath.Join(e.dir, "audit.jsonl"))
				return want(status == 200 && bytes.Contains(body, []byte(secret)) && bytes.Contains(raw, []byte(`"break_glass":"patient unresponsive in ED"`)),
					"want 200 with the plaintext and a break_glass record, got %d %s", status, body)
			}},
		{title: "An integration without a BAA (mkt, a marketing tool) may not act for a HIPAA org: 403 integration_not_covered", method: "GET", path: msgs, user: "mkt",
			check: func(e env, status int, body []byte) error {
				return want(status == 403 && bytes.Contains(body, []byte(`"integration_not_covered"`)), "want 403 integration_not_covered, got %d %s", status, body)
			}},
		{title: "A permission change (adam, an admin, makes victor an agent) lands in the audit trail with the old and new role", method: "PATCH", path: "/api/v1/users/victor/role", user: "adam",
			body: `{"role":"agent"}`,
			check: func(e env, status int, body []byte) error {
				raw, _ := os.ReadFile(filepath.Join(e.dir, "audit.jsonl"))
				return want(status == 201 && bytes.Contains(raw, []byte(`"recorded":[{"name":"new_role","value":"agent"},{"name":"user","value":"victor"},{"name":"old_role","value":""}]`)),
					"want 201 and a record with the change, got %d %s", status, body)
			}},
		{title: "A denied route: personal access tokens", method: "POST", path: "/api/v1/tokens", user: "alice", body: `{"name":"ci"}`,
			check: func(e env, status int, body []byte) error {
				return want(status == 403 && bytes.Contains(body, []byte("personal access tokens are disabled")), "want 403 with the reason, got %d %s", status, body)
			}},
		{title: "Malformed JSON never reaches the app", method: "POST", path: msgs, user: "alice", body: `{"body":"unfinished`,
			check: func(e env, status int, body []byte) error {
				return want(status == 400, "want 400, got %d %s", status, body)
			}},
		{title: "No token, no PHI", method: "GET", path: msgs,
			check: func(e env, status int, body []byte) error {
				return want(status == 401, "want 401, got %d %s", status, body)
			}},
		{title: "The app texts the stored message (a token) to J. Doe and pushes it to her phone (as alice), through phiguard's egress listener; the carrier's echo comes back sealed",
			method: "POST", path: notify, user: "alice", body: `{"to":"` + patient + `","device":"fcm-device-1","title":"New message for 555-867-5309"}`,
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(`"sms":{"status":201`)) && bytes.Contains(body, []byte(`"push":{"status":200`)) &&
					bytes.Contains(body, []byte(`"body":"ephi:v1:org_a:`)) && !bytes.Contains(body, []byte(secret)),
					"want 200 with the carrier's 201, its echo of the text sealed, and the push provider's 200, got %d %s", status, body)
			}},
		{title: "What the SMS carrier received (a BAA covers it): the plaintext", method: "GET", path: "/received", vendor: "carrier",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(`"Body":"`+secret+`"`)) && bytes.Contains(body, []byte(`"To":"`+patient+`"`)) && !bytes.Contains(body, []byte("ephi:")),
					"want the plaintext, got %d %s", status, body)
			}},
		{title: "What the push provider received (no BAA): the generic text, no data, the number in the title redacted", method: "GET", path: "/received", vendor: "push",
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(`"body":"You have a new message"`)) && bytes.Contains(body, []byte(`"title":"New message for [REDACTED]"`)) &&
					!bytes.Contains(body, []byte(`"data"`)) && !bytes.Contains(body, []byte("ephi:")) && !bytes.Contains(body, []byte("867-5309")) && !bytes.Contains(body, []byte("melanoma")),
					"want the generic text and no data, got %d %s", status, body)
			}},
		{title: "J. Doe texts STOP: phiguard checks the carrier's signature, records the opt-out, and forwards the SMS encrypted and signed for the app",
			method: "POST", path: hook, ctype: "application/x-www-form-urlencoded", body: stop.Encode(),
			header: [2]string{"X-Twilio-Signature", twilioSignature(publicURL+hook, stop)},
			check: func(e env, status int, body []byte) error {
				return want(status == 201 && bytes.Contains(body, []byte(`"from":"ephi:`)) && bytes.Contains(body, []byte(`"contact_id":"ct_`)) && !bytes.Contains(body, []byte("STOP")),
					"want 201, the SMS encrypted and filed under J. Doe's contact, got %d %s", status, body)
			}},
		{title: "The same STOP posted to the app directly has no X-Phiguard-Signature: the app refuses it (401)",
			method: "POST", path: hook, direct: true, ctype: "application/x-www-form-urlencoded", body: stop.Encode(),
			check: func(e env, status int, body []byte) error {
				return want(status == 401, "want 401, got %d %s", status, body)
			}},
		{title: "alice texts J. Doe again: 403 no_consent, and the carrier is never called", method: "POST", path: notify, user: "alice", body: `{"to":"` + patient + `"}`,
			check: func(e env, status int, body []byte) error {
				if err := want(status == 502 && bytes.Contains(body, []byte(`"sms":{"status":403`)) && bytes.Contains(body, []byte(`"code":"no_consent"`)),
					"want the carrier call refused with 403 no_consent, got %d %s", status, body); err != nil {
					return err
				}
				got, err := received(e, e.carrier)
				if err != nil {
					return err
				}
				return want(len(got) == 1, "the carrier received %d messages, want only the one before STOP", len(got))
			}},
		{title: "The app calls a host no egress route lists (curl -x: as the app's HTTP client would): 403 destination_not_allowed, nothing leaves",
			method: "POST", path: "http://analytics.example.net/v1/track", egress: true, body: `{"event":"sms_sent","to":"` + patient + `"}`,
			check: func(e env, status int, body []byte) error {
				return want(status == 403 && bytes.Contains(body, []byte(`"code":"destination_not_allowed"`)), "want 403 destination_not_allowed, got %d %s", status, body)
			}},
		{title: "Writing the policy: compare it with the API spec the app serves (operations no route covers, selectors that can never match, sensitive fields left in plaintext)",
			shell: "curl -s $A/openapi.yaml -o $D/openapi.yaml && $B/phiguard check -config $D/policy.yaml -openapi $D/openapi.yaml", run: true,
			check: func(e env, _ int, out []byte) error {
				return want(bytes.Contains(out, []byte("0 error(s)")) && bytes.Contains(out, []byte("covered by a route")), "want a coverage report without errors, got:\n%s", out)
			}},
		{title: "Writing the policy: explain what phiguard does to a sample request, selector by selector (types and lengths, never a value)",
			shell: `printf '%s\n' 'POST /api/v1/conversations/` + convID + `/messages HTTP/1.1' 'Content-Type: application/json' '' '{"body":"` + secret + `","attachments":[{"url":"https://files.example/r.pdf","caption":"` + caption + `"}],"urgent":true}' | $B/phiguard explain -config $D/policy.yaml -request - -role agent`, run: true,
			check: func(e env, _ int, out []byte) error {
				return want(bytes.Contains(out, []byte("send-message")) && bytes.Contains(out, []byte("$.attachments[0].caption")) && !bytes.Contains(out, []byte(secret)) && !bytes.Contains(out, []byte(caption)),
					"want the route and the caption's place, no value; got:\n%s", out)
			}},
		{title: "Readiness, on the admin port (never the proxy's)", method: "GET", path: "/readyz", admin: true,
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && bytes.Contains(body, []byte(`"ready"`)), "want 200 ready, got %d %s", status, body)
			}},
		{title: "Metrics: requests, fields and selector coverage by route; names and counts only", method: "GET", path: "/metrics", admin: true,
			pipe: `| grep -E '^phiguard_(requests_total|fields_total|route_coverage_ratio)'`,
			check: func(e env, status int, body []byte) error {
				return want(status == 200 && !bytes.Contains(body, []byte(secret)) &&
					bytes.Contains(body, []byte(`phiguard_route_coverage_ratio{direction="request",route="send-message"} 1`)) &&
					bytes.Contains(body, []byte(`phiguard_fields_total{action="mask",reason="the caller's role may not read it",route="list-messages"}`)),
					"want coverage and mask counts, no PHI; got %d %s", status, body)
			}},
		{title: "The audit trail: route templates, keyed hashes of path parameters and counts, never values; each line chained to the one before", shell: "cat $D/audit.jsonl",
			check: func(e env, _ int, _ []byte) error {
				raw, err := os.ReadFile(filepath.Join(e.dir, "audit.jsonl"))
				if err != nil {
					return err
				}
				return want(!bytes.Contains(raw, []byte(secret)) && !bytes.Contains(raw, []byte(caption)) && !bytes.Contains(raw, []byte(convID)) &&
					bytes.Contains(raw, []byte(`"action":"mask"`)) && bytes.Contains(raw, []byte(`"decision":"deny"`)) && bytes.Contains(raw, []byte(`"phase":"intent"`)),
					"audit trail is missing records or holds PHI or a path identifier:\n%s", raw)
			}},
		{title: "Find the records of a conversation by its id, with the deployment's hash key", shell: `grep -c -F "$($B/phiguard audit hash -key $D/audit-keys/hash.json ` + convID + `)" $D/audit.jsonl`, run: true,
			check: func(e env, _ int, _ []byte) error { return nil }},
		{title: "An auditor proves the trail whole with the public key alone (open: phiguard is still writing it)", shell: "$B/phiguard audit verify -pub $D/audit-keys/verify.json $D/audit.jsonl", run: true,
			check: func(e env, _ int, _ []byte) error { return nil }},
	}
}

func want(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func runDemo(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "phiguard-demo-")
	if err != nil {
		return err
	}
	e := env{dir: dir, proxy: demoProxy, app: demoApp, admin: demoAdmin, egress: demoEgress}
	if o.check {
		if e, err = freeEnv(dir); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else {
		for _, addr := range []*string{&e.carrier, &e.push} { // the vendors are on free ports always
			if *addr, err = freeAddr(); err != nil {
				return err
			}
		}
	}
	if e.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	if err := prepare(ctx, o, e); err != nil {
		return err
	}
	stopAll, err := start(ctx, o, e)
	defer stopAll()
	if err != nil {
		return err
	}
	if o.check {
		return checkSteps(ctx, o, e)
	}
	printSteps(o.out, e)
	<-ctx.Done()
	fmt.Fprintln(o.out, "\nstopping; the demo folder stays at", dir)
	return nil
}

// prepare creates the keyring, the demo identities and the policy in e.dir.
func prepare(ctx context.Context, o options, e env) error {
	pg := filepath.Join(o.bin, "phiguard")
	keyring := filepath.Join(e.dir, "keyring")
	for _, args := range [][]string{
		{"keys", "init", "-keyring", keyring},
		{"keys", "create", "-keyring", keyring, "-org", "org_a"},
		{"keys", "create", "-keyring", keyring, "-org", "org_b"},
		{"audit", "keygen", "-out", filepath.Join(e.dir, "audit-keys")},
	} {
		if out, err := exec.CommandContext(ctx, pg, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("phiguard %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := writeIdentities(e.dir); err != nil {
		return err
	}
	pol, err := os.ReadFile(o.policy)
	if err != nil {
		return err
	}
	// At once, so that no address put in is taken for a placeholder.
	r := strings.NewReplacer(demoProxy, e.proxy, demoApp, e.app, demoAdmin, e.admin, demoEgress, e.egress, demoCarrier, e.carrier, demoPush, e.push)
	return os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(r.Replace(string(pol))), 0o600)
}

// writeIdentities makes an ES256 issuer: jwks.json, and a token file per demo user.
func writeIdentities(dir string) error {
	kh, err := keyset.NewHandle(jwt.ES256Template())
	if err != nil {
		return err
	}
	signer, err := jwt.NewSigner(kh)
	if err != nil {
		return err
	}
	pub, err := kh.Public()
	if err != nil {
		return err
	}
	jwks, err := jwt.JWKSetFromPublicKeysetHandle(pub)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o644); err != nil {
		return err
	}
	iss, aud := "https://auth.demo.example", "messaging-app"
	exp := time.Now().Add(12 * time.Hour)
	for _, u := range demoUsers {
		iat := time.Now().Add(-u.age)
		custom := map[string]any{"org_id": u.org, "role": u.role, "amr": u.amr}
		if u.name == "mkt" {
			custom["azp"] = "marketing-tool"
		}
		if u.authAge > 0 {
			custom["auth_time"] = float64(time.Now().Add(-u.authAge).Unix())
		}
		raw, err := jwt.NewRawJWT(&jwt.RawJWTOptions{Issuer: &iss, Audience: &aud, Subject: &u.name, ExpiresAt: &exp, IssuedAt: &iat,
			CustomClaims: custom})
		if err != nil {
			return err
		}
		tok, err := signer.SignAndEncode(raw)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, u.name+".jwt"), []byte(tok), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// start runs the fake vendors, the app and phiguard, and waits until
// phiguard answers.
func start(ctx context.Context, o options, e env) (func(), error) {
	var procs []*exec.Cmd
	stopVendors := func() {}
	stopAll := func() {
		for _, p := range procs {
			p.Process.Signal(os.Interrupt)
			p.Wait()
		}
		stopVendors()
	}
	logf, err := os.Create(filepath.Join(e.dir, "processes.log"))
	if err != nil {
		return stopAll, err
	}
	if stopVendors, err = startVendors(e); err != nil {
		return stopAll, fmt.Errorf("fake vendors: %w", err)
	}
	for _, p := range []struct {
		args []string
		env  []string
	}{
		{[]string{filepath.Join(o.bin, "messaging-app"), "-listen", e.app, "-store", filepath.Join(e.dir, "store.json"), "-access-log", filepath.Join(e.dir, "app-access.log"),
			"-egress", "http://" + e.egress, "-carrier-account", carrierAccount}, appEnv()},
		{[]string{filepath.Join(o.bin, "phiguard"), "serve", "-config", filepath.Join(e.dir, "policy.yaml")}, phiguardEnv()},
	} {
		cmd := exec.Command(p.args[0], p.args[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = p.env
		if err := cmd.Start(); err != nil {
			return stopAll, err
		}
		procs = append(procs, cmd)
	}
	client := &http.Client{Timeout: time.Second}
	for range 100 {
		resp, err := client.Get("http://" + e.proxy + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stopAll, nil
			}
		}
		select {
		case <-ctx.Done():
			return stopAll, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	log, _ := os.ReadFile(logf.Name())
	return stopAll, fmt.Errorf("phiguard did not become ready on %s (ports %s, %s, %s and %s must be free):\n%s", e.proxy, e.proxy, e.app, e.admin, e.egress, log)
}

// freeEnv is an env in dir on free loopback ports, for runs beside others.
func freeEnv(dir string) (env, error) {
	e := env{dir: dir}
	for _, addr := range []*string{&e.proxy, &e.app, &e.admin, &e.egress, &e.carrier, &e.push} {
		var err error
		if *addr, err = freeAddr(); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (s step) url(e env) string {
	switch {
	case s.admin:
		return "http://" + e.admin + s.path
	case s.direct:
		return "http://" + e.app + s.path
	case s.egress:
		return s.path
	case s.vendor == "carrier":
		return "https://" + e.carrier + s.path
	case s.vendor == "push":
		return "https://" + e.push + s.path
	}
	return "http://" + e.proxy + s.path
}

func (s step) contentType() string {
	if s.ctype != "" {
		return s.ctype
	}
	return "application/json"
}

func printSteps(w io.Writer, e env) {
	fmt.Fprintf(w, "\n# phiguard is on http://%s in front of the messaging app on http://%s.\n", e.proxy, e.app)
	fmt.Fprintf(w, "# The app's vendor calls go through phiguard's egress listener (http://%s) to a fake\n# SMS carrier (https://%s) and push provider (https://%s).\n", e.egress, e.carrier, e.push)
	fmt.Fprintf(w, "# Keyring, tokens, store and audit trail are in %s.\n# Paste these lines into another shell:\n\n", e.dir)
	fmt.Fprintf(w, "D=%s\nB=%s\nA=http://%s\n\n", e.dir, e.bin, e.app)
	for i, s := range steps() {
		fmt.Fprintf(w, "# %d. %s\n", i+1, s.title)
		if s.shell != "" {
			fmt.Fprintln(w, s.shell)
		} else {
			fmt.Fprint(w, "curl -s")
			if s.egress {
				fmt.Fprintf(w, " -x http://%s", e.egress)
			}
			if s.vendor != "" {
				fmt.Fprintf(w, " --cacert $D/%s", vendorCA)
			}
			fmt.Fprintf(w, " -X %s %s", s.method, s.url(e))
			if s.user != "" {
				fmt.Fprintf(w, ` -H "Authorization: Bearer $(cat $D/%s.jwt)"`, s.user)
			}
			if s.header[0] != "" {
				fmt.Fprintf(w, ` -H '%s: %s'`, s.header[0], s.header[1])
			}
			if s.body != "" {
				fmt.Fprintf(w, ` -H 'Content-Type: %s' -d '%s'`, s.contentType(), s.body)
			}
			if s.pipe != "" {
				fmt.Fprintln(w, " "+s.pipe)
			} else {
				fmt.Fprintln(w, "; echo")
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "# Ctrl-C here stops the demo.")
}

func checkSteps(ctx context.Context, o options, e env) error {
	var failed []string
	for i, s := range steps() {
		status, body := 0, []byte(nil)
		switch {
		case s.shell == "":
			client, err := s.client(e)
			if err != nil {
				return err
			}
			status, body, err = send(ctx, client, e, s)
			if err != nil {
				return err
			}
		case s.run:
			sh := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", s.shell)
			sh.Env = append(os.Environ(), "D="+e.dir, "B="+e.bin, "A=http://"+e.app)
			out, err := sh.CombinedOutput()
			if err != nil {
				return fmt.Errorf("step %d: %s: %v\n%s", i+1, s.shell, err, out)
			}
			body = out
		}
		if err := s.check(e, status, body); err != nil {
			failed = append(failed, fmt.Sprintf("step %d (%s): %v", i+1, s.title, err))
			fmt.Fprintf(o.out, "FAIL %d. %s\n", i+1, s.title)
			continue
		}
		fmt.Fprintf(o.out, "ok   %d. %s\n", i+1, s.title)
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "\n"))
	}
	return nil
}

func send(ctx context.Context, client *http.Client, e env, s step) (int, []byte, error) {
	var body io.Reader
	if s.body != "" {
		body = strings.NewReader(s.body)
	}
	req, err := http.NewRequestWithContext(ctx, s.method, s.url(e), body)
	if err != nil {
		return 0, nil, err
	}
	if s.body != "" {
		req.Header.Set("Content-Type", s.contentType())
	}
	if s.header[0] != "" {
		req.Header.Set(s.header[0], s.header[1])
	}
	if s.user != "" {
		tok, err := os.ReadFile(filepath.Join(e.dir, s.user+".jwt"))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+string(tok))
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// client is the HTTP client a step's request goes out with: through the
// egress listener, or trusting the fake vendors' CA, or plain.
func (s step) client(e env) (*http.Client, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	switch {
	case s.egress:
		c.Transport = &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: e.egress})}
	case s.vendor != "":
		tr, err := vendorTransport(e)
		if err != nil {
			return nil, err
		}
		c.Transport = tr
	}
	return c, nil
}

// vendorTransport trusts the CA of the fake vendors' certificates.
func vendorTransport(e env) (*http.Transport, error) {
	pem, err := os.ReadFile(filepath.Join(e.dir, vendorCA))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", vendorCA)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, nil
}

// received is what the fake vendor at addr received, oldest first.
func received(e env, addr string) ([]json.RawMessage, error) {
	tr, err := vendorTransport(e)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + addr + "/received")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var got []json.RawMessage
	return got, json.NewDecoder(resp.Body).Decode(&got)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

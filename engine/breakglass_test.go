package engine

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
)

const breakGlassPolicy = `version: 1
ingress: {upstream: "http://app.invalid"}
identity: {jwt: {jwks: unused.json}}
keys: {keyring: unused}
orgs: [{id: org_a}]
routes:
  - name: chart
    match: {path: "/chart"}
    encrypt_request: ["$.note"]
    decrypt_response: ["$.note"]
    readers: [agent]
    break_glass: [clinician]
`

// clinicians verifies "Bearer NAME:ROLE" as a caller of org_a.
type clinicians struct{}

func (clinicians) Verify(_ context.Context, auth []string) (*identity.Caller, error) {
	if len(auth) != 1 {
		return nil, identity.ErrNoToken
	}
	user, role, _ := strings.Cut(strings.TrimPrefix(auth[0], "Bearer "), ":")
	return &identity.Caller{Org: "org_a", User: user, Role: role}, nil
}

// TestBreakGlass: a break-glass role reads plaintext only with a reason,
// and each such read is audited as break_glass with it; the reason header
// never reaches the app; other roles and readers are unaffected.
func TestBreakGlass(t *testing.T) {
	r := newRigWith(t, breakGlassPolicy, "org_a")
	eng, err := New(Options{Policy: r.eng.pol, Keys: r.keys, Verifier: clinicians{}, Auditor: r.aud})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, _ := r.keys.Encrypt(ctx, "org_a", []byte(`"`+canary+`"`))
	stored := []byte(`{"note":"` + tok + `"}`)
	for _, c := range []struct {
		name, caller, reason, wantReason string
		plaintext                        bool
	}{
		{"reader", "ann:agent", "", "", true},
		{"break-glass role with a reason", "cal:clinician", "  patient unresponsive in ED,\tno chart access ", "patient unresponsive in ED, no chart access", true},
		{"break-glass role without a reason", "cal:clinician", "", "", false},
		{"break-glass role with a blank reason", "cal:clinician", " \t ", "", false},
		{"another role with a reason", "bo:billing", "audit", "", false},
		{"a long reason is cut", "cal:clinician", strings.Repeat("é", 300), strings.Repeat("é", 200), true},
	} {
		req := request("GET", "/chart", "")
		req.Header.Set("Authorization", "Bearer "+c.caller)
		if c.reason != "" {
			req.Header.Set("X-Break-Glass-Reason", c.reason)
		}
		x, err := eng.Begin(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if req.Header.Get("X-Break-Glass-Reason") != "" {
			t.Errorf("%s: the reason header would reach the app", c.name)
		}
		out, _, err := x.OpenResponse(ctx, 200, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(stored), int64(len(stored)))
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(out, []byte(canary)); got != c.plaintext {
			t.Errorf("%s: plaintext %v, want %v: %s", c.name, got, c.plaintext, out)
		}
		if err := x.Allow(ctx, 200); err != nil {
			t.Fatal(err)
		}
		x.Close()
		rec := r.aud.last(t)
		glass := slices.Contains(rec.Actions, audit.ActionBreakGlass)
		if glass != (c.wantReason != "") || rec.BreakGlass != c.wantReason {
			t.Errorf("%s: actions %v, break_glass %q; want %q", c.name, rec.Actions, rec.BreakGlass, c.wantReason)
		}
	}
}

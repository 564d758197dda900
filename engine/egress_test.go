package engine

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/consent"
	"github.com/phiguard/phiguard/policy"
)

// TestEgressDLP: each detector, on a route that blocks and on one that
// redacts: the call is refused (403 phi_blocked) or the match replaced;
// the refusal, the record and the redacted body never hold the match.
func TestEgressDLP(t *testing.T) {
	for _, c := range []struct {
		detector, extra, text, match string
	}{
		{"ssn", "", "patient SSN 123-45-6789, thanks", "123-45-6789"},
		{"mrn", `, mrn_patterns: ["MRN-?[0-9]{7}"]`, "chart MRN-0048213 is ready", "MRN-0048213"},
		{"dob", "", "Dana, DOB 03/04/1961, called", "03/04/1961"},
		{"phone", "", "call me at (555) 123-4567 today", "123-4567"},
		{"email", "", "write to dana.r@example.org please", "dana.r@example.org"},
		{"icd10", "", "dx E11.9 confirmed", "E11.9"},
	} {
		for _, action := range []string{"block", "redact"} {
			t.Run(c.detector+"/"+action, func(t *testing.T) {
				src := `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
egress_routes:
  - name: push
    host: push.example
    baa: false
    dlp: {detectors: [` + c.detector + `]` + c.extra + `, fields: ["$.title", "form:title"], action: ` + action + `}
`
				r := newRigWith(t, src, "org_a")
				for _, kind := range []string{"json", "form"} {
					body, ctype := `{"title":`+quote(c.text)+`,"n":1}`, "application/json"
					if kind == "form" {
						body, ctype = "title="+strings.ReplaceAll(c.text, " ", "+")+"&n=1", "application/x-www-form-urlencoded"
					}
					out, ref := egressCall(t, r, "push.example", "POST", "/send", ctype, body)
					rec := r.aud.last(t)
					trail, _ := json.Marshal(rec)
					if strings.Contains(string(trail), c.match) {
						t.Errorf("%s: the record holds the match: %s", kind, trail)
					}
					if action == "block" {
						if ref == nil || ref.ClientCode() != "phi_blocked" || !strings.Contains(ref.Reason, c.detector) || strings.Contains(ref.Reason, c.match) {
							t.Errorf("%s: got %v, want phi_blocked naming %s and not the match", kind, ref, c.detector)
						}
						if !strings.Contains(string(trail), `"dlp_block"`) {
							t.Errorf("%s: record %s", kind, trail)
						}
						continue
					}
					if ref != nil {
						t.Fatalf("%s: refused: %v", kind, ref)
					}
					if strings.Contains(string(out), c.match) || !strings.Contains(string(out), "REDACTED") || !strings.Contains(string(out), map[string]string{"json": `"n":1`, "form": "n=1"}[kind]) {
						t.Errorf("%s: the vendor would get %s", kind, out)
					}
					if f := rec.Fields; len(f) != 1 || f[0].Action != audit.ActionDLPRedact || f[0].Reason != c.detector {
						t.Errorf("%s: record fields %+v", kind, f)
					}
				}
			})
		}
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// failingConsent is a registry that does not answer.
type failingConsent struct{ consent.Store }

func (failingConsent) Get(context.Context, string, string) (consent.Entry, error) {
	return consent.Entry{}, errors.New("connection refused")
}
func (failingConsent) Record(context.Context, consent.Entry) (bool, error) {
	return false, errors.New("connection refused")
}

// TestEgressConsentFailsClosed: a registry that does not answer refuses
// the SMS (503 state_unavailable); a call without a body, whose recipient
// cannot be read, is refused (400); so is one with two recipients.
func TestEgressConsentFailsClosed(t *testing.T) {
	src := `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
audit: {hash_key: unused.json}
orgs: [{id: org_a}]
egress_routes:
  - name: sms
    host: api.carrier.example
    baa: true
    consent: {to: "form:To"}
`
	pol, err := policy.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	kh, _ := keyset.NewHandle(mac.HMACSHA256Tag256KeyTemplate())
	m, _ := mac.New(kh)
	r := newRig(t)
	for _, c := range []struct {
		name   string
		store  consent.Store
		body   string
		status int
	}{
		{"registry down", failingConsent{}, "To=%2B15555550100&Body=hi", 503},
		{"no body", consent.NewMemory(10), "", 400},
		{"two recipients", consent.NewMemory(10), "To=%2B15555550100&To=%2B15555550101&Body=hi", 400},
		{"no recipient", consent.NewMemory(10), "Body=hi", 400},
		{"allowed", consent.NewMemory(10), "To=%2B15555550100&Body=hi", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			eng, err := New(Options{Policy: pol, Auditor: r.aud, Hasher: audit.NewHasher(m), Consent: c.store})
			if err != nil {
				t.Fatal(err)
			}
			r.eng = eng
			ctx := context.Background()
			h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
			x, err := eng.BeginEgress(ctx, &Request{Method: "POST", Path: "/send", Header: h, Host: "api.carrier.example"})
			defer x.Close()
			if err == nil && c.body != "" {
				_, err = x.SealEgress(ctx, h, strings.NewReader(c.body), int64(len(c.body)))
			}
			if err == nil {
				err = x.Intend(ctx)
			}
			if c.status == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if got := Status(x.Refuse(ctx, err).Kind); got != c.status {
				t.Errorf("got %d (%v), want %d", got, err, c.status)
			}
		})
	}
}

// TestEgressCapacityApart: a request the app is serving holds an ingress
// slot while the app calls out; its egress call takes a slot of its own
// kind, so a full ingress does not refuse the app's calls, and egress
// calls are bounded by the same limit.
func TestEgressCapacityApart(t *testing.T) {
	r := newRigWith(t, `version: 1
ingress: {upstream: "http://127.0.0.1:8080", max_concurrent_requests: 1}
routes:
  - name: health
    match: {path: /healthz}
    auth: none
egress_routes:
  - name: partner
    host: partner.example
    baa: false
`, "org_a")
	ctx := context.Background()
	in, err := r.eng.Begin(ctx, request("GET", "/healthz", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if x, err := r.eng.Begin(ctx, request("GET", "/healthz", "")); !errors.Is(err, ErrBusy) {
		t.Errorf("a second ingress request: %v, want ErrBusy", err)
		x.Close()
	}
	out, err := r.eng.BeginEgress(ctx, &Request{Method: "GET", Path: "/x", Header: http.Header{}, Host: "partner.example"})
	if err != nil {
		t.Fatalf("an egress call while ingress is full: %v", err)
	}
	defer out.Close()
	x, err := r.eng.BeginEgress(ctx, &Request{Method: "GET", Path: "/x", Header: http.Header{}, Host: "partner.example"})
	x.Close()
	if !errors.Is(err, ErrBusy) {
		t.Errorf("a second egress call: %v, want ErrBusy", err)
	}
}

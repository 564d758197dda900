package engine

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/refusal"
)

// outcomes keeps a copy of every Outcome it is told.
type outcomes struct{ got []Outcome }

func (o *outcomes) Observe(out *Outcome) {
	c := *out
	c.Fields = append([]audit.Field(nil), out.Fields...)
	o.got = append(o.got, c)
}

func (r *rig) observed(t *testing.T) *outcomes {
	t.Helper()
	obs := &outcomes{}
	var err error
	r.eng, err = r.eng.Successor(Options{Policy: r.eng.Policy(), Keys: r.keys, Verifier: r.ver, Auditor: r.aud, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// TestObserverSeesEachExchangeOnce: Close tells the observer how the
// exchange ended, once, with its route, decision, status, refusal code,
// fields and which selectors found a value.
func TestObserverSeesEachExchangeOnce(t *testing.T) {
	r := newRig(t)
	obs := r.observed(t)
	ctx := context.Background()

	x, _, _ := r.sendMessage(t, canary)
	if err := x.Allow(ctx, 201); err != nil {
		t.Fatal(err)
	}
	x.Close()
	x.Close()
	if len(obs.got) != 1 {
		t.Fatalf("observed %d outcomes after two Close, want 1", len(obs.got))
	}
	o := obs.got[0]
	if o.Route == nil || o.Route.Name != "send-message" || o.Decision != audit.DecisionAllow || o.Status != 201 || o.Refusal != "" {
		t.Errorf("outcome %+v, want send-message allowed 201", o)
	}
	if !o.Request.Checked || !o.Request.Complete(1) || !o.Response.Checked || !o.Response.Complete(1) {
		t.Errorf("coverage %+v / %+v, want both checked and complete", o.Request, o.Response)
	}
	if len(o.Fields) != 2 || o.Duration <= 0 {
		t.Errorf("fields %+v, duration %v", o.Fields, o.Duration)
	}

	// A refusal: no route body work, the refusal's code.
	x, err := r.eng.Begin(ctx, request("GET", "/api/v1/tokens/9", "alice"))
	x.Refuse(ctx, err)
	x.Close()
	if o := obs.got[1]; o.Route == nil || o.Route.Name != "tokens" || o.Decision != audit.DecisionDeny || o.Status != 403 || o.Refusal != "denied" || o.Request.Checked {
		t.Errorf("refusal outcome %+v", o)
	}

	// No route: nil Route; saturation is a refusal like any other.
	x, err = r.eng.Begin(ctx, request("GET", "/nowhere", "alice"))
	x.Refuse(ctx, err)
	x.Close()
	if o := obs.got[2]; o.Route != nil || o.Refusal != "denied" {
		t.Errorf("unmatched outcome %+v", o)
	}
}

// TestCoverageMissedSelector: a body in which a selector finds nothing is
// checked but not complete; an answer that is not 2xx is not checked.
func TestCoverageMissedSelector(t *testing.T) {
	r := newRig(t)
	obs := r.observed(t)
	ctx := context.Background()
	req := request("POST", msgPath, "alice")
	req.Header.Set("Content-Type", "application/json")
	x, err := r.eng.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"text":"` + canary + `"}` // no $.body
	if _, err := x.SealRequest(ctx, req.Header, strings.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	answer := []byte(`{"error":"conversation closed"}`)
	if _, _, err := x.OpenResponse(ctx, 409, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(answer), int64(len(answer))); err != nil {
		t.Fatal(err)
	}
	x.Allow(ctx, 409)
	x.Close()
	o := obs.got[0]
	if !o.Request.Checked || o.Request.Complete(1) || o.Request.Found != 0 {
		t.Errorf("request coverage %+v, want checked and missing selector 0", o.Request)
	}
	if o.Response.Checked {
		t.Errorf("a 409 answer was counted for coverage: %+v", o.Response)
	}
}

func TestCoverageComplete(t *testing.T) {
	for _, tc := range []struct {
		n     int
		found uint64
		want  bool
	}{
		{1, 1, true}, {1, 0, false}, {3, 0b111, true}, {3, 0b101, false},
		{64, ^uint64(0), true}, {64, ^uint64(0) >> 1, false},
		{70, ^uint64(0), true}, // past 63 selectors share the last bit
	} {
		if got := (Coverage{Checked: true, Found: tc.found}).Complete(tc.n); got != tc.want {
			t.Errorf("Complete(%d) with %b = %v, want %v", tc.n, tc.found, got, tc.want)
		}
	}
	var c Coverage
	c.found(0)
	c.found(80)
	if c.Found != 1|1<<63 {
		t.Errorf("found(0), found(80): %b", c.Found)
	}
}

// TestSuccessorSharesSlots: an engine put in force by a reload shares the
// capacity of the one before, so a reload never doubles the requests in
// flight.
func TestSuccessorSharesSlots(t *testing.T) {
	r := newRig(t) // max_concurrent_requests: 2
	ctx := context.Background()
	next, err := r.eng.Successor(Options{Policy: r.eng.Policy(), Keys: r.keys, Verifier: r.ver, Auditor: r.aud})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := r.eng.Begin(ctx, request("GET", "/healthz", ""))
	b, _ := next.Begin(ctx, request("GET", "/healthz", ""))
	if next.InFlight() != 2 || r.eng.InFlight() != 2 {
		t.Errorf("in flight: %d and %d, want 2 in both", r.eng.InFlight(), next.InFlight())
	}
	c, err := next.Begin(ctx, request("GET", "/healthz", ""))
	if !errors.Is(err, refusal.Busy) {
		t.Errorf("a third request across the two engines: %v, want busy", err)
	}
	c.Close()
	a.Close()
	if d, err := next.Begin(ctx, request("GET", "/healthz", "")); err != nil {
		t.Errorf("after the old engine's request ended: %v", err)
	} else {
		d.Close()
	}
	b.Close()
}

// TestShreddedOrg: once an org's keys are shredded, its stored tokens show
// the mask with reason key_shredded, never a 503 for the whole answer, and
// its new PHI is refused for good (403).
func TestShreddedOrg(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	x, sealed, _ := r.sendMessage(t, canary)
	stored := bytes.Clone(sealed)
	x.Close()

	lp, err := keys.OpenLocal(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Shred(ctx, r.dir, "org_a", lp); err != nil {
		t.Fatal(err)
	}
	kr, err := keys.Open(ctx, r.dir, lp)
	if err != nil {
		t.Fatal(err)
	}
	r.keys.Keyring = kr

	x, err = r.eng.Begin(ctx, request("GET", msgPath, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	list := append(append([]byte(`{"data":[`), stored...), "]}"...)
	out, _, err := x.OpenResponse(ctx, 200, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(list), int64(len(list)))
	if err != nil {
		t.Fatalf("answer with a shredded org's token: %v, want it masked", err)
	}
	if !bytes.Contains(out, []byte(`"body":"[protected]"`)) || bytes.Contains(out, []byte(canary)) {
		t.Errorf("answer %s, want the mask", out)
	}
	x.Allow(ctx, 200)
	x.Close()
	if f := r.aud.last(t).Fields; len(f) != 1 || f[0].Reason != MaskShredded {
		t.Errorf("audit fields %+v, want one mask with reason %s", f, MaskShredded)
	}

	req := request("POST", msgPath, "alice")
	req.Header.Set("Content-Type", "application/json")
	x, err = r.eng.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"body":"` + canary + `"}`
	_, err = x.SealRequest(ctx, req.Header, strings.NewReader(body), int64(len(body)))
	if ref, ok := refusal.As(err); !ok || ref.Kind != refusal.Forbidden {
		t.Errorf("new PHI for a shredded org: %v, want a 403 refusal", err)
	}
	x.Close()
}

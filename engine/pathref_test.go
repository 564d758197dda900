package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"

	"github.com/phiguard/phiguard/audit"
)

// TestRecordsHoldNoPathIdentifiers: a record names the route's path
// template, never the path sent; path parameters are keyed-hashed (or
// left out without a hash key), and a path no route took is hashed whole
// (or "-"). An identifier in a path (an MRN, a phone number) never
// reaches the trail.
func TestRecordsHoldNoPathIdentifiers(t *testing.T) {
	kh, err := keyset.NewHandle(mac.HMACSHA256Tag256KeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	m, err := mac.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	hasher := audit.NewHasher(m)
	const id, lost = "MRN-CANARY-77", "MRN-CANARY-88"
	for _, h := range []*audit.Hasher{nil, hasher} {
		r := newRig(t)
		eng, err := New(Options{Policy: r.eng.pol, Keys: r.keys, Verifier: r.ver, Auditor: r.aud, Hasher: h})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, path := range []string{"/api/v1/conversations/" + id + "/messages", "/unknown/" + lost} {
			req := request("POST", path, "alice")
			req.Header.Set("Content-Type", "application/json")
			x, err := eng.Begin(ctx, req)
			if err == nil {
				err = x.Intend(ctx)
			} else {
				x.Refuse(ctx, err)
			}
			x.Close()
		}
		for _, rec := range r.aud.list {
			line := string(rec.AppendJSON(nil))
			if strings.Contains(line, "CANARY") {
				t.Errorf("hasher %v: a record holds a path identifier: %s", h != nil, line)
			}
		}
		matched, unmatched := r.aud.list[0], r.aud.list[len(r.aud.list)-1]
		if matched.Path != "/api/v1/conversations/{id}/messages" {
			t.Errorf("matched path %q, want the template", matched.Path)
		}
		switch {
		case h == nil && (len(matched.Params) != 0 || unmatched.Path != "-"):
			t.Errorf("without a hash key: params %v, unmatched path %q", matched.Params, unmatched.Path)
		case h != nil && (len(matched.Params) != 1 || matched.Params[0] != audit.Value{Name: "id", Value: h.Hash(id)} || unmatched.Path != h.Hash("/unknown/"+lost)):
			t.Errorf("with a hash key: params %v, unmatched path %q", matched.Params, unmatched.Path)
		}
	}
}

// TestRecordNamesClientAndPolicy: a record carries the client's user
// agent (control characters dropped, at most 200 characters) and the
// policy that decided.
func TestRecordNamesClientAndPolicy(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	req := request("GET", "/api/v1/tokens/x", "alice")
	req.Header.Set("User-Agent", "Clinic/2.1 (iOS)\x1b[31m"+strings.Repeat("x", 300))
	x, err := r.eng.Begin(ctx, req)
	x.Refuse(ctx, err)
	x.Close()
	rec := r.aud.last(t)
	if !strings.HasPrefix(rec.UserAgent, "Clinic/2.1 (iOS)[31mxxx") || len([]rune(rec.UserAgent)) != 200 {
		t.Errorf("user_agent %q", rec.UserAgent)
	}
	if rec.Policy == "" || rec.Policy != r.eng.pol.SHA256[:16] {
		t.Errorf("policy %q, want %s", rec.Policy, r.eng.pol.SHA256[:16])
	}
}

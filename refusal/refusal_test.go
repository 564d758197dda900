package refusal

import (
	"errors"
	"fmt"
	"testing"
)

func TestKinds(t *testing.T) {
	seen := map[string]Kind{}
	for k := BadRequest; k <= Internal; k++ {
		code := k.Code()
		if code == "" || code == "internal" && k != Internal {
			t.Errorf("kind %d has no code of its own", k)
		}
		if prev, dup := seen[code]; dup {
			t.Errorf("kinds %d and %d share the code %q", prev, k, code)
		}
		seen[code] = k
	}
	if Kind(0).Code() != "internal" || Kind(200).Code() != "internal" {
		t.Error("an unknown kind must read as internal")
	}
	for _, k := range []Kind{BadRequest, Forbidden, Denied, UnsupportedEncoding} {
		if k.Failure() {
			t.Errorf("%v is a refusal of the request, not a failure", k)
		}
	}
	for _, k := range []Kind{Busy, KeysUnavailable, AuditUnavailable, UpstreamTooLarge, Internal} {
		if !k.Failure() {
			t.Errorf("%v is a failure", k)
		}
	}
}

func TestErrorMatching(t *testing.T) {
	detail := errors.New("malformed body")
	err := fmt.Errorf("judging: %w", &Error{Kind: BadRequest, Reason: "malformed body: duplicate key at byte 9", Detail: detail})
	if !errors.Is(err, BadRequest) || !errors.Is(err, detail) || errors.Is(err, Forbidden) {
		t.Errorf("errors.Is does not read the kind and detail of %v", err)
	}
	r, ok := As(err)
	if !ok || r.Reason != "malformed body: duplicate key at byte 9" || r.Error() != r.Reason {
		t.Errorf("As(%v) = %v, %v", err, r, ok)
	}
	if _, ok := As(errors.New("plain")); ok {
		t.Error("As found a refusal in a plain error")
	}
	if got := New(Denied, "route %s is closed", "x").Error(); got != "route x is closed" {
		t.Errorf("New: got %q", got)
	}
}

package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/phiguard/phiguard/refusal"
)

// TestCookieCredential: with identity.jwt.cookie, a browser session's
// cookie identifies the caller when there is no Authorization header; the
// header wins when both come; two such cookies are refused; the cookie
// still reaches the app.
func TestCookieCredential(t *testing.T) {
	r := newRigWith(t, enginePolicy, "org_a")
	r.eng.pol.File.Identity.JWT.Cookie = "sess"
	for _, c := range []struct {
		name, auth string
		cookies    []string
		user       string
		err        error
	}{
		{"cookie alone", "", []string{"theme=dark; sess=alice"}, "alice", nil},
		{"header wins", "Bearer vic", []string{"sess=alice"}, "vic", nil},
		{"no credential", "", []string{"theme=dark"}, "", refusal.Unauthenticated},
		{"two session cookies", "", []string{"sess=alice", "sess=vic"}, "", refusal.Unauthenticated},
		{"a bad cookie", "", []string{"sess=mallory"}, "", refusal.Unauthenticated},
	} {
		req := request("GET", msgPath, "")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		req.Header["Cookie"] = c.cookies
		x, err := r.eng.Begin(context.Background(), req)
		x.Close()
		switch {
		case c.err != nil && !errors.Is(err, c.err):
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		case c.err == nil && (err != nil || x.rec.User != c.user):
			t.Errorf("%s: %v, user %q, want %q", c.name, err, x.rec.User, c.user)
		case c.err == nil && len(req.Header["Cookie"]) == 0:
			t.Errorf("%s: the cookie would not reach the app", c.name)
		}
	}
}

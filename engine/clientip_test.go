package engine

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/phiguard/phiguard/audit"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, c := range []struct {
		name, peer string
		hdr        http.Header
		want       string
	}{
		{"untrusted peer: its headers are ignored", "203.0.113.9", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.9"},
		{"one trusted hop", "10.0.0.5", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"rightmost untrusted wins over a spoofed left", "10.0.0.5", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.1.1.1"}}, "198.51.100.7"},
		{"several header lines", "10.0.0.5", http.Header{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7"}}, "198.51.100.7"},
		{"all trusted: the leftmost", "10.0.0.5", http.Header{"X-Forwarded-For": {"10.2.2.2, 10.1.1.1"}}, "10.2.2.2"},
		{"garbage stops at the hop that wrote it", "10.0.0.5", http.Header{"X-Forwarded-For": {"198.51.100.7, nonsense"}}, "10.0.0.5"},
		{"garbage further left is never reached", "10.0.0.5", http.Header{"X-Forwarded-For": {"nonsense, 198.51.100.7"}}, "198.51.100.7"},
		{"with a port", "10.0.0.5", http.Header{"X-Forwarded-For": {"198.51.100.7:4711"}}, "198.51.100.7"},
		{"IPv6 in brackets", "10.0.0.5", http.Header{"X-Forwarded-For": {"[2001:db8::1]"}}, "2001:db8::1"},
		{"no header", "10.0.0.5", http.Header{}, "10.0.0.5"},
		{"Forwarded", "fd00::1", http.Header{"Forwarded": {`for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"Forwarded, IPv4 last", "10.0.0.5", http.Header{"Forwarded": {`for="[2001:db8:cafe::17]:4711", For=192.0.2.60`}}, "192.0.2.60"},
		{"X-Forwarded-For first", "10.0.0.5", http.Header{"Forwarded": {"for=192.0.2.60"}, "X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"Forwarded obfuscated identifier", "10.0.0.5", http.Header{"Forwarded": {"for=_hidden"}}, "10.0.0.5"},
		{"IPv4-mapped peer", "::ffff:10.0.0.5", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
	} {
		got := clientAddr(netip.MustParseAddr(c.peer).Unmap(), c.hdr, trusted)
		if got.String() != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if got := clientAddr(netip.MustParseAddr("10.0.0.5"), http.Header{"X-Forwarded-For": {"198.51.100.7"}}, nil); got.String() != "10.0.0.5" {
		t.Errorf("no trusted proxies: %s", got)
	}
}

// TestDeniedCallerRecorded: a request refused by a deny route is audited
// with the caller its valid token names (the token decides nothing), and
// with the client's address behind a trusted proxy.
func TestDeniedCallerRecorded(t *testing.T) {
	r := newRigWith(t, enginePolicy+"  - {name: public, match: {path: /public}, auth: none}\n", "org_a")
	pol := r.eng.pol
	pol.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	req := request("POST", "/api/v1/tokens", "alice")
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Peer = netip.MustParseAddrPort("10.1.2.3:5555")
	x, err := r.eng.Begin(context.Background(), req)
	if err == nil {
		t.Fatal("the deny route allowed the request")
	}
	x.Refuse(context.Background(), err)
	x.Close()
	rec := r.aud.last(t)
	if rec.Decision != audit.DecisionDeny || rec.User != "alice" || rec.Org != "org_a" || rec.ClientIP != "198.51.100.7" {
		t.Errorf("record %+v: want alice of org_a from 198.51.100.7", rec)
	}
	// A bad token on a deny route is still a deny, with no user.
	req = request("POST", "/api/v1/tokens", "nobody")
	x, err = r.eng.Begin(context.Background(), req)
	x.Refuse(context.Background(), err)
	x.Close()
	if rec := r.aud.last(t); rec.Decision != audit.DecisionDeny || rec.User != "" || rec.ClientIP != "10.1.2.3" {
		t.Errorf("record %+v", rec)
	}
}

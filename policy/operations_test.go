package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOperationsDefaults: the admin listener is on, on loopback; the file
// is watched; a drain waits 20s and does not linger; "off" turns the admin
// listener off.
func TestOperationsDefaults(t *testing.T) {
	const src = "version: 1\ningress: {upstream: \"http://127.0.0.1:8080\"}\ndefault: allow\n"
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f := p.File
	if f.Admin == nil || f.Admin.Listen != "127.0.0.1:9901" || f.Admin.CheckUpstream || f.Admin.Pprof {
		t.Errorf("admin default %+v, want listen 127.0.0.1:9901 only", f.Admin)
	}
	if f.Reload.Watch == nil || !*f.Reload.Watch || f.Reload.Interval != 5*time.Second {
		t.Errorf("reload default %+v, want watch every 5s", f.Reload)
	}
	if f.Ingress.DrainTimeout != 20*time.Second || f.Ingress.DrainDelay != 0 {
		t.Errorf("drain defaults %s / %s, want 20s timeout, no delay", f.Ingress.DrainTimeout, f.Ingress.DrainDelay)
	}
	if len(p.SHA256) != 64 || p.SHA256 != Digest([]byte(src)) {
		t.Errorf("SHA256 %q, want the hex digest of the text", p.SHA256)
	}

	p, err = Parse("p.yaml", []byte(src+"admin: {listen: \"off\"}\nreload: {watch: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.File.Admin != nil || *p.File.Reload.Watch {
		t.Errorf("admin %+v, watch %v; want no admin listener and no watch", p.File.Admin, *p.File.Reload.Watch)
	}
}

func TestSameAddr(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:9901", "127.0.0.1:9901", true},
		{":9901", "127.0.0.1:9901", true},
		{"0.0.0.0:9901", "10.0.0.1:9901", true},
		{"[::]:9901", "127.0.0.1:9901", true},
		{"127.0.0.1:9901", "127.0.0.2:9901", false},
		{"127.0.0.1:9901", "127.0.0.1:8443", false},
	} {
		if got := sameAddr(tc.a, tc.b); got != tc.want {
			t.Errorf("sameAddr(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestSelectorListLimit: a list of more than MaxSelectors selectors is
// refused with its path; MaxSelectors is accepted.
func TestSelectorListLimit(t *testing.T) {
	list := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "\"$.f%d\",", i)
		}
		return strings.TrimSuffix(b.String(), ",")
	}
	src := func(n int) string {
		return "version: 1\ningress: {upstream: \"http://127.0.0.1:8080\"}\nidentity: {jwt: {jwks: j.json}}\nkeys: {keyring: k}\norgs: [{id: org_a}]\nroutes:\n  - {name: r, match: {path: /r}, encrypt_request: [" + list(n) + "]}\n"
	}
	if _, err := Parse("p.yaml", []byte(src(MaxSelectors))); err != nil {
		t.Errorf("%d selectors: %v", MaxSelectors, err)
	}
	_, err := Parse("p.yaml", []byte(src(MaxSelectors+1)))
	if err == nil || !strings.Contains(err.Error(), "routes[0].encrypt_request (route r): 65 selectors; at most 64 per list") {
		t.Errorf("%d selectors: %v", MaxSelectors+1, err)
	}
}

// TestDurationsInDays: key schedules are written in days; a bad day count
// is refused with its path.
func TestDurationsInDays(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * 24 * time.Hour, true},
		{"2190d", 2190 * 24 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"-3d", 0, false},
		{"99999999d", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	src := "version: 1\ningress: {upstream: \"http://127.0.0.1:8080\"}\ndefault: allow\norgs: [{id: org_a, rotate_every: 30d, retain: 20d}]\n"
	if _, err := Parse("p.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "orgs[0].retain") {
		t.Errorf("retain below rotate_every: %v", err)
	}
}

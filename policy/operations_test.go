package policy

import (
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

package codec

import "testing"

func TestHasTokenMarker(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"ephi:v1:org_a:00000001:AAAA", true},
		{"  EPHI:V1", true},
		{"note ephi: inside", true},
		{"ephi%3Av1", true},
		{`ephi\u003av1`, true},
		{"ephi&#58;v1", true},
		{"%65phi%3Av1", true},
		{"%45PHI:", true},
		{`\u0065phi:v1`, true},
		{`\x65phi\x3av1`, true},
		{"&#101;phi&#x3a;v1", true},
		{"&#x65phi&colon;v1", true},
		{"%2565phi%253A", true}, // encoded twice
		{"%252565phi%25253A", true},
		{"&#0000101;phi:v1", true},
		{"&#x0000065;phi:v1", true},
		{"%u0065phi%u003av1", true},
		{"Hi,ephi:v1", true},
		{"(ephi:v1)", true},
		{"Stephi: call me", false},
		{"Stephi&#39;s phone", false},
		{"ephippium", false},
		{"zephir and ephi without a colon", false},
		{"100% ephi-like", false},
		{"https://files.example/a%20b.png?x=1&y=2", false},
		{`C:\\path\\ephi`, false},
		{"&#9999;phi:", false},
		{"", false},
	} {
		if got := HasTokenMarker(tc.in); got != tc.want {
			t.Errorf("HasTokenMarker(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if got := HasTokenMarker([]byte(tc.in)); got != tc.want {
			t.Errorf("HasTokenMarker([]byte(%q)) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzHasTokenMarker: whatever surrounds it, a marker that starts a word is
// reported, in plain text and percent-encoded.
func FuzzHasTokenMarker(f *testing.F) {
	f.Add("ephi:v1", "x")
	f.Add("%65phi%3a", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		if HasTokenMarker(a) != HasTokenMarker([]byte(a)) {
			t.Fatalf("string and bytes disagree on %q", a)
		}
		if !HasTokenMarker(a + " ephi:" + b) {
			t.Fatalf("plain marker missed in %q", a+" ephi:"+b)
		}
		if !HasTokenMarker(a + " %65%70%68%69%3A" + b) {
			t.Fatalf("percent-encoded marker missed")
		}
	})
}

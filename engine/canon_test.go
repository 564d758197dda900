package engine

import "testing"

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct{ in, dec, esc string }{
		{"/", "/", "/"},
		{"/api/v1/tokens", "/api/v1/tokens", "/api/v1/tokens"},
		{"/api//v1///tokens", "/api/v1/tokens", "/api/v1/tokens"},
		{"/api/./v1/tokens", "/api/v1/tokens", "/api/v1/tokens"},
		{"/api/x/../v1/tokens", "/api/v1/tokens", "/api/v1/tokens"},
		{"/api/v1/%74okens", "/api/v1/tokens", "/api/v1/tokens"},
		{"/api/v1/x/%2e%2e/tokens", "/api/v1/tokens", "/api/v1/tokens"},
		{"/api/v1/x/.%2E/tokens", "/api/v1/tokens", "/api/v1/tokens"},
		{"/a/b/", "/a/b/", "/a/b/"},
		{"/a/b/.", "/a/b/", "/a/b/"},
		{"/a/b/..", "/a/", "/a/"},
		{"/a/hello%20world", "/a/hello world", "/a/hello%20world"},
		{"/a/%c3%a9", "/a/é", "/a/%C3%A9"},
		{"/a/%3f", "/a/?", "/a/%3F"},
		{"/a/~user", "/a/~user", "/a/~user"},
	} {
		got, err := canonicalize(tc.in)
		if err != nil {
			t.Errorf("canonicalize(%q): %v", tc.in, err)
			continue
		}
		if got.decoded != tc.dec || got.escaped != tc.esc {
			t.Errorf("canonicalize(%q) = %q / %q, want %q / %q", tc.in, got.decoded, got.escaped, tc.dec, tc.esc)
		}
	}
}

func TestCanonicalizeRefuses(t *testing.T) {
	for _, in := range []string{
		"", "api", "/api%2Fv1/tokens", "/api%2fv1", "/api%5Cv1", "/api\\v1", "/api/v1/tokens;jsessionid=1",
		"/api/v1/tokens%3Bx", "/a%00b", "/a%0a", "/a%7f", "/a%zz", "/a%2", "/a%", "/..", "/../api", "/a/../../b",
		"/a/%2e%2e/%2e%2e/b", "/a b", "/a\x01", "/é", "/a/%ff",
	} {
		if got, err := canonicalize(in); err == nil {
			t.Errorf("canonicalize(%q) = %+v, want an error", in, got)
		}
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{"/a/b", "/a/../b", "/%2e%2e/x", "/a//b/", "/a%2Fb", "/%41"} {
		f.Add(s)
	}
	for _, s := range []string{"/", "/a/", "/a.b/c-d_e~f", "/a/./b", "/a/..", "/./", "/a:b@c!$&'()*+,=", "/a//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		// The fast path agrees with the full normalization.
		if alreadyCanonical(in) {
			if slow, err := normalize(in); err != nil || slow.decoded != in || slow.escaped != in {
				t.Fatalf("alreadyCanonical(%q), but normalize gives %+v, %v", in, slow, err)
			}
		}
		c, err := canonicalize(in)
		if err != nil {
			return
		}
		// Canonical output is a fixed point: normalizing it again changes nothing.
		again, err := canonicalize(c.escaped)
		if err != nil || again != c {
			t.Fatalf("canonicalize(%q) = %+v, but again gives %+v, %v", in, c, again, err)
		}
	})
}

func TestAlreadyCanonical(t *testing.T) {
	for in, want := range map[string]bool{
		"/": true, "/api/v1/conversations/c_1/messages": true, "/a/": true, "/file.json": true, "/a:b@c": true,
		"": false, "a": false, "//": false, "/a//b": false, "/./a": false, "/a/..": false, "/a/../": false,
		"/%41": false, "/a;b": false, "/a\\b": false, "/a b": false, "/caf\xc3\xa9": false,
	} {
		if got := alreadyCanonical(in); got != want {
			t.Errorf("alreadyCanonical(%q) = %v, want %v", in, got, want)
		}
	}
}

package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// routes200 is a policy of 200 routes, a mix of literal paths, {param}
// paths and trailing ** paths over several methods, some with field actions.
func routes200() string {
	var b strings.Builder
	b.WriteString(`version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity:
  jwt: {jwks: jwks.json}
keys: {keyring: keyring}
orgs: [{id: org_a}]
routes:
`)
	for i := range 200 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - {name: r%d, match: {methods: [GET], path: /api/v1/r%d/items}}\n", i, i)
		case 1:
			fmt.Fprintf(&b, "  - {name: r%d, match: {methods: [POST, PUT], path: \"/api/v1/r%d/{id}/messages\"}, encrypt_request: [$.body]}\n", i, i)
		case 2:
			fmt.Fprintf(&b, "  - {name: r%d, match: {path: \"/api/v1/r%d/files/**\"}}\n", i, i)
		case 3:
			fmt.Fprintf(&b, "  - {name: r%d, match: {methods: [GET, DELETE], path: \"/api/v1/r%d/{a}/notes/{b}\"}, decrypt_response: [$.note], readers: [agent]}\n", i, i)
		}
	}
	return b.String()
}

// BenchmarkMatch200Routes matches requests against a 200-route policy
// loaded from a file: one taken by an early route, one by the last, and one
// no route takes (every route is tried).
func BenchmarkMatch200Routes(b *testing.B) {
	path := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(routes200()), 0o600); err != nil {
		b.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Routes) != 200 {
		b.Fatalf("got %d routes, want 200", len(p.Routes))
	}
	for _, tc := range []struct {
		name, method, path, route string
	}{
		{"early", "POST", "/api/v1/r1/cv_1001/messages", "r1"},
		{"late", "GET", "/api/v1/r199/cv_1001/notes/n_7", "r199"},
		{"none", "GET", "/api/v1/nowhere/cv_1001/messages", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r, _ := p.Match(tc.method, tc.path)
			if got := routeName(r); got != tc.route || r != scan(p, tc.method, tc.path) {
				b.Fatalf("Match(%s %s) = route %q, want %q", tc.method, tc.path, got, tc.route)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Match(tc.method, tc.path)
			}
		})
	}
}

func routeName(r *Route) string {
	if r == nil {
		return ""
	}
	return r.Name
}

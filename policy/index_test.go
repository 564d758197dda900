package policy

import (
	"strings"
	"testing"
)

// indexPolicy mixes what the index must get right: shared prefixes,
// routes filed at the root ({param} or ** first), non-ASCII literals,
// letter case, and a route that takes only "/".
const indexPolicy = `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
default: allow
CASE
routes:
  - {name: root, match: {path: /}, auth: none}
  - {name: msgs, match: {methods: [POST], path: "/api/v1/conversations/{id}/messages"}, auth: none}
  - {name: any-first, match: {path: "/{tenant}/status"}, auth: none}
  - {name: conv, match: {path: "/api/v1/conversations/**"}, auth: none}
  - {name: status, match: {path: "/api/v1/status"}, auth: none}
  - {name: long-s, match: {path: "/api/v1/ſtats"}, auth: none}
  - {name: kelvin, match: {path: "/api/\u212aeys"}, auth: none}
  - {name: rest, match: {path: "/files/**"}, auth: none}
  - {name: upper, match: {path: "/API/V2/Items"}, auth: none}
  - {name: all, match: {path: "/**"}, auth: none}
`

// scan is Match without the index: every route, in file order.
func scan(p *Policy, method, path string) *Route {
	segs := splitPath(path)
	for _, r := range p.Routes {
		if r.takesMethod(method) {
			if _, ok := r.Path.match(segs, p.File.CaseSensitivePaths); ok {
				return r
			}
		}
	}
	return nil
}

var indexPaths = []string{
	"/", "/api", "/api/v1", "/api/v1/status", "/API/V1/STATUS", "/api/v1/conversations/c1/messages",
	"/Api/V1/Conversations/c1/Messages", "/api/v1/conversations", "/api/v1/conversations/x/y/z", "/org_a/status",
	"/api/status", "/api/v1/stats", "/api/v1/ſtats", "/api/v1/STATS", "/api/keys", "/api/Keys", "/api/\u212aeys",
	"/files", "/files/a/b", "/FILES/a", "/api/v1/ſtatus", "/ſiles/a", "/api/v1/\u212a", "/api/v2/items", "/API/V2/Items", "/nowhere", "/ſ/status", "/\u212a",
}

func TestIndexAgreesWithScan(t *testing.T) {
	for _, cs := range []string{"case_sensitive_paths: false", "case_sensitive_paths: true"} {
		p, err := Parse("p.yaml", []byte(strings.Replace(indexPolicy, "CASE", cs, 1)))
		if err != nil {
			t.Fatal(err)
		}
		for _, method := range []string{"GET", "POST"} {
			for _, path := range indexPaths {
				got, _ := p.Match(method, path)
				if want := scan(p, method, path); got != want {
					t.Errorf("%s: Match(%s %s) = %s, a scan of every route gives %s", cs, method, path, routeName(got), routeName(want))
				}
			}
		}
	}
}

// FuzzMatchIndex: for any path, the index picks the route a scan of every
// route would.
func FuzzMatchIndex(f *testing.F) {
	for _, s := range indexPaths {
		f.Add(s, false)
	}
	ps := map[bool]*Policy{}
	for _, cs := range []bool{false, true} {
		src := strings.Replace(indexPolicy, "CASE", "case_sensitive_paths: "+map[bool]string{false: "false", true: "true"}[cs], 1)
		p, err := Parse("p.yaml", []byte(src))
		if err != nil {
			f.Fatal(err)
		}
		ps[cs] = p
	}
	f.Fuzz(func(t *testing.T, path string, caseSensitive bool) {
		p := ps[caseSensitive]
		for _, method := range []string{"GET", "POST"} {
			got, _ := p.Match(method, path)
			if want := scan(p, method, path); got != want {
				t.Fatalf("Match(%s %q) = %s, a scan gives %s", method, path, routeName(got), routeName(want))
			}
		}
	})
}

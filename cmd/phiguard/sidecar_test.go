package main

import (
	"reflect"
	"slices"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

// TestRestartOnlyKeepsRunningSections: a reloaded policy that changes the
// ingress, admin, audit and reload sections runs with the values in force
// and names each section; the routes it changes are its own.
func TestRestartOnlyKeepsRunningSections(t *testing.T) {
	parse := func(src string) *policy.Policy {
		t.Helper()
		p, err := policy.Parse("p.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cur := parse(`version: 1
ingress: {upstream: "http://127.0.0.1:8080", max_body_bytes: 1000}
admin: {listen: "127.0.0.1:9901"}
audit: {sinks: [{type: stdout}]}
routes: [{name: a, match: {path: /a}, auth: none}]
`)
	next := parse(`version: 1
ingress: {upstream: "http://127.0.0.1:9090", upstream_proxy: "http://proxy:3128", max_body_bytes: 2000}
admin: {listen: "127.0.0.1:9902"}
audit: {sinks: [{type: stderr}]}
reload: {interval: 1s}
routes: [{name: b, match: {path: /b}, auth: none}]
`)
	changed := restartOnly(cur, next)
	if want := []string{"ingress", "admin", "audit", "reload"}; !slices.Equal(changed, want) {
		t.Errorf("changed %v, want %v", changed, want)
	}
	if !reflect.DeepEqual(next.File.Ingress, cur.File.Ingress) || next.File.Ingress.MaxBodyBytes != 1000 {
		t.Errorf("ingress in the new policy: %+v, want the running one", next.File.Ingress)
	}
	if next.Upstream.String() != "http://127.0.0.1:8080" || next.UpstreamProxy != nil {
		t.Errorf("upstream %v via %v, want the running app without a proxy", next.Upstream, next.UpstreamProxy)
	}
	if next.File.Admin.Listen != "127.0.0.1:9901" || next.File.Audit.Sinks[0].Type != "stdout" || !reflect.DeepEqual(next.File.Reload, cur.File.Reload) {
		t.Errorf("admin %+v, audit %+v, reload %+v: want the running ones", next.File.Admin, next.File.Audit, next.File.Reload)
	}
	if next.Routes[0].Name != "b" {
		t.Errorf("routes: %s, want the new policy's", next.Routes[0].Name)
	}
	if again := restartOnly(cur, next); len(again) != 0 {
		t.Errorf("the same sections again: %v, want none changed", again)
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

// TestRestartOnlyKeepsRunningSections: a reloaded policy that changes the
// ingress, admin, audit, reload and state sections runs with the values in force
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
state: {store: redis, redis: {url: "redis://127.0.0.1:6379/0"}}
routes: [{name: b, match: {path: /b}, auth: none}]
`)
	changed := restartOnly(cur, next)
	if want := []string{"ingress", "admin", "audit", "reload", "state"}; !slices.Equal(changed, want) {
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
	if next.File.State.Store != policy.StoreMemory || next.File.State.Redis != nil {
		t.Errorf("state %+v: want the running one", next.File.State)
	}
	if next.Routes[0].Name != "b" {
		t.Errorf("routes: %s, want the new policy's", next.Routes[0].Name)
	}
	if again := restartOnly(cur, next); len(again) != 0 {
		t.Errorf("the same sections again: %v, want none changed", again)
	}
}

// TestReloadErrorPaths: the watch logs an unreadable policy file once and
// keeps the policy in force; SIGHUP on an unreadable file is a failed
// reload; an audit file that cannot be reopened is logged and the sink
// keeps its file.
func TestReloadErrorPaths(t *testing.T) {
	dir := t.TempDir()
	auditDir := filepath.Join(dir, "logs")
	os.Mkdir(auditDir, 0o700)
	polPath := filepath.Join(dir, "policy.yaml")
	src := `version: 1
ingress: {upstream: "http://127.0.0.1:1"}
audit: {sinks: [{type: file, path: "` + filepath.Join(auditDir, "audit.jsonl") + `"}]}
default: allow
`
	if err := os.WriteFile(polPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	ctx := context.Background()
	sc, err := newSidecar(ctx, polPath, pol, io.Discard, io.Discard, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	os.Remove(polPath)
	for range 3 {
		if err := sc.reload(ctx, causeWatch, true); err != nil {
			t.Errorf("watch on a missing file: %v, want nothing done", err)
		}
	}
	if n := strings.Count(logs.String(), "policy file unreadable"); n != 1 {
		t.Errorf("an unreadable file was logged %d times, want once:\n%s", n, logs)
	}
	if err := sc.reload(ctx, "SIGHUP", false); err == nil || !strings.Contains(err.Error(), "read policy") {
		t.Errorf("SIGHUP with the file missing: %v, want a read error", err)
	}
	if sc.Policy() != pol {
		t.Error("the policy in force changed")
	}

	if err := os.Rename(auditDir, auditDir+".moved"); err != nil {
		t.Fatal(err)
	}
	sc.hangup(ctx)
	if !strings.Contains(logs.String(), "audit files not reopened; records go to the files open before") {
		t.Errorf("a failed reopen was not logged:\n%s", logs)
	}
}

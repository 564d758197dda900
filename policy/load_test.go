package policy

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the expected messages of testdata/load cases")

// TestLoadCases runs every testdata/load case: a policy, a separator line,
// then the exact messages Parse must report: its problems, or, for a
// policy that loads, its warnings (nothing for a clean one).
func TestLoadCases(t *testing.T) {
	golden.Run(t, "testdata/load/*.txt", 1, *update, func(t *testing.T, in []string) string {
		p, err := Parse("policy.yaml", []byte(in[0]))
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Parse returned %T, want *LoadError: %v", err, err)
			}
			return err.Error() + "\n"
		}
		got := ""
		for _, w := range p.Warnings {
			got += w.String() + "\n"
		}
		return got
	})
}

func TestDefaultsAndResolvedPaths(t *testing.T) {
	src := `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: jwks.json}}
keys: {keyring: ./keyring}
audit: {sinks: [{type: file, path: /var/log/a.jsonl}]}
orgs: [{id: org_a}]
routes:
  - name: r
    match: {path: /r}
    encrypt_request: ["$.x"]
`
	p, err := Parse("/etc/phiguard/policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f := p.File
	for _, c := range []struct{ name, got, want string }{
		{"listen", f.Ingress.Listen, DefaultListen},
		{"default", f.Default, "deny"},
		{"mask", f.Mask, DefaultMask},
		{"claims.org", f.Identity.Claims.Org, "org_id"},
		{"claims.user", f.Identity.Claims.User, "sub"},
		{"claims.role", f.Identity.Claims.Role, "role"},
		{"jwks", f.Identity.JWT.JWKS, "/etc/phiguard/jwks.json"},
		{"keyring", f.Keys.Keyring, "/etc/phiguard/keyring"},
		{"keys.provider", f.Keys.Provider, "local"},
		{"audit path", f.Audit.Sinks[0].Path, "/var/log/a.jsonl"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if f.Ingress.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("max_body_bytes: got %d, want %d", f.Ingress.MaxBodyBytes, DefaultMaxBodyBytes)
	}
	if !*f.Audit.FailClosed {
		t.Error("fail_closed defaults to false, want true")
	}
	if p.defaultAllow {
		t.Error("default is allow, want deny")
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml")); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load of a missing file: got %v", err)
	}
}

// FuzzLoad checks that no input makes the loader panic and that every
// refusal is a *LoadError with at least one located problem.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/load/*.txt")
	for _, file := range files {
		raw, _ := os.ReadFile(file)
		input, _, _ := strings.Cut(string(raw), golden.Separator)
		f.Add(input)
	}
	f.Fuzz(func(t *testing.T, src string) {
		_, err := Parse("p.yaml", []byte(src))
		if err == nil {
			return
		}
		var le *LoadError
		if !errors.As(err, &le) || len(le.Problems) == 0 {
			t.Fatalf("Parse error is not a located *LoadError: %v", err)
		}
	})
}

// TestFieldSetsExpand: a field set's name in a route stands for its
// selectors, in place, in every list that takes them.
func TestFieldSetsExpand(t *testing.T) {
	p, err := Parse("p.yaml", []byte(`version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: j.json}}
keys: {keyring: k}
orgs: [{id: org_a}]
fields:
  message_fields: ["$.message", "$.props.attachments[*].text"]
routes:
  - name: posts
    match: {path: /posts}
    encrypt_request: ["$.title", message_fields, "$.tail"]
    decrypt_response: [message_fields]
    readers: [agent]
egress_routes:
  - name: push
    host: push.example
    baa: false
    drop_request: [message_fields]
`))
	if err != nil {
		t.Fatal(err)
	}
	texts := func(sels []Selector) string {
		var out []string
		for _, s := range sels {
			out = append(out, s.Text)
		}
		return strings.Join(out, " ")
	}
	r := p.Routes[0]
	for _, c := range []struct{ got, want string }{
		{texts(r.EncryptRequest), "$.title $.message $.props.attachments[*].text $.tail"},
		{texts(r.DecryptResponse), "$.message $.props.attachments[*].text"},
		{texts(p.EgressRoutes[0].Egress.Drop), "$.message $.props.attachments[*].text"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings: %v", p.Warnings)
	}
}

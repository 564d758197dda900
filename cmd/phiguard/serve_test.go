package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeStartupFailures: serve refuses to start, naming the cause,
// rather than start without what a PHI route needs.
func TestServeStartupFailures(t *testing.T) {
	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring")
	for _, args := range [][]string{{"keys", "init", "-keyring", keyring}, {"keys", "create", "-keyring", keyring, "-org", "org_a"}} {
		if _, _, err := runCLI(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	os.WriteFile(filepath.Join(dir, "jwks.json"), []byte(`{"keys":[]}`), 0o644)

	policy := func(listen, keyringPath, jwks, auditPath string) string {
		src := `version: 1
ingress: {listen: "` + listen + `", upstream: "http://127.0.0.1:1"}
admin: {listen: "127.0.0.1:0"}
identity: {jwt: {jwks: "` + jwks + `"}}
keys: {keyring: "` + keyringPath + `"}
audit: {sinks: [{type: file, path: "` + auditPath + `"}]}
orgs: [{id: org_a}]
routes:
  - name: r
    match: {path: /r}
    encrypt_request: ["$.x"]
`
		p := filepath.Join(t.TempDir(), "policy.yaml")
		os.WriteFile(p, []byte(src), 0o600)
		return p
	}
	goodJWKS := writeTestJWKS(t)
	for _, tc := range []struct {
		name, config, want string
	}{
		{"invalid policy", policy("127.0.0.1:0", keyring, goodJWKS, filepath.Join(dir, "a.jsonl")) + ".missing", "read policy"},
		{"keyring without master key", policy("127.0.0.1:0", t.TempDir(), goodJWKS, filepath.Join(dir, "a.jsonl")), "keys init"},
		{"unusable JWKS", policy("127.0.0.1:0", keyring, filepath.Join(dir, "jwks.json"), filepath.Join(dir, "a.jsonl")), "JWKS"},
		{"missing JWKS", policy("127.0.0.1:0", keyring, filepath.Join(dir, "none.json"), filepath.Join(dir, "a.jsonl")), "JWKS"},
		{"audit file unwritable", policy("127.0.0.1:0", keyring, goodJWKS, filepath.Join(dir, "no", "such", "a.jsonl")), "audit file"},
		{"address in use", policy(busy.Addr().String(), keyring, goodJWKS, filepath.Join(dir, "a.jsonl")), "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errb strings.Builder
			err := run(ctx, []string{"serve", "-config", tc.config}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("serve: got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	if _, _, err := runCLI(t, "serve"); exitCode(err) != 2 {
		t.Errorf("serve without -config: exit %d, want 2", exitCode(err))
	}
}

func writeTestJWKS(t *testing.T) string {
	t.Helper()
	s := &stack{dir: t.TempDir(), tokens: map[string]string{}}
	s.writeIdentities(t)
	return filepath.Join(s.dir, "jwks.json")
}

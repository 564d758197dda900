package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const appSpec = "../../examples/messaging-app/app/openapi.yaml"

// TestCheckOpenAPI: check -openapi prints the policy's line, then one
// line per finding and a summary; errors exit 1, warnings alone 0.
func TestCheckOpenAPI(t *testing.T) {
	for _, cfg := range []string{"../../configs/demo.yaml", "../../configs/reference.yaml"} {
		out, stderr, err := runCLI(t, "check", "-config", cfg, "-openapi", appSpec)
		if err != nil {
			t.Errorf("%s: %v\n%s%s", cfg, err, out, stderr)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if !strings.HasPrefix(lines[0], cfg+": ok (") || !strings.HasPrefix(lines[len(lines)-1], appSpec+": 14 operations, ") ||
			!strings.HasSuffix(lines[len(lines)-1], "; 0 error(s), "+strconv.Itoa(len(lines)-2)+" warning(s)") {
			t.Errorf("%s: output\n%s", cfg, out)
		}
		for _, l := range lines[1 : len(lines)-1] {
			if !strings.HasPrefix(l, "warning ") {
				t.Errorf("%s: %q is not a warning line", cfg, l)
			}
		}
	}
	out, _, _ := runCLI(t, "check", "-config", "../../configs/demo.yaml", "-openapi", appSpec)
	if !strings.Contains(out, "warning GET /openapi.yaml: no route covers it: it is refused with 403 (default: deny)\n") {
		t.Errorf("the demo policy leaves GET /openapi.yaml to the default, the output does not say so:\n%s", out)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: jwks.json}}
keys: {keyring: keyring}
orgs: [{id: org_a}]
routes:
  - name: send-message
    match: {methods: [POST], path: "/api/v1/conversations/{id}/messages"}
    encrypt_request: ["$.bdy", "$.attachments[*].caption"]
`), 0o600)
	out, stderr, err := runCLI(t, "check", "-config", bad, "-openapi", appSpec)
	want := `error routes[0] (send-message) encrypt_request "$.bdy": can never match: in POST /api/v1/conversations/{id}/messages, the request body (application/json): $ (MessageInput) has no member "bdy"; the schema has attachments, body` + "\n"
	if err == nil || exitCode(err) != 1 || !strings.Contains(out, want) || !strings.Contains(out, "; 1 error(s), ") || stderr != "" {
		t.Errorf("a selector that cannot match: exit %d (%v)\nstdout:\n%s\nstderr:\n%s", exitCode(err), err, out, stderr)
	}
	if !strings.Contains(out, "warning POST /api/v1/conversations/{id}/messages routes[0] (send-message): request member $.body looks sensitive") {
		t.Errorf("the uncovered body is not reported:\n%s", out)
	}

	// -sensitive replaces the list, +NAMES adds to it.
	out, _, err = runCLI(t, "check", "-config", "../../configs/demo.yaml", "-openapi", appSpec, "-sensitive", "+NumMedia")
	if err != nil || !strings.Contains(out, "request field form:NumMedia looks sensitive") || !strings.Contains(out, "$.data[*].name looks sensitive") {
		t.Errorf("-sensitive +NumMedia: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "check", "-config", "../../configs/demo.yaml", "-openapi", appSpec, "-sensitive", "NumMedia")
	if err != nil || !strings.Contains(out, "form:NumMedia") || strings.Contains(out, "$.data[*].name") {
		t.Errorf("-sensitive NumMedia: %v\n%s", err, out)
	}

	for _, args := range [][]string{
		{"check", "-config", "../../configs/demo.yaml", "-sensitive", "zip"},                      // no -openapi
		{"check", "-config", "../../configs/demo.yaml", "-openapi", appSpec, "-sensitive", "a b"}, // not a name
	} {
		if _, _, err := runCLI(t, args...); exitCode(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, exitCode(err), err)
		}
	}
	if _, _, err := runCLI(t, "check", "-config", "../../configs/demo.yaml", "-openapi", filepath.Join(dir, "none.yaml")); err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("a missing spec: %v", err)
	}
}

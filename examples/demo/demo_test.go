package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildBinaries builds what make build builds, into a temporary bin folder.
func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for name, pkg := range map[string]string{"phiguard": "../../cmd/phiguard", "messaging-app": "../messaging-app"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return bin
}

// TestDemo runs the demo as make demo does, with the real binaries: the
// checked steps, then the printed copy-paste lines through bash.
func TestDemo(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for the demo's copy-paste lines; .ci/run installs it")
	}
	bin := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var out bytes.Buffer
	o := options{bin: bin, policy: "../../configs/demo.yaml", check: true, out: &out}
	if err := runDemo(ctx, o); err != nil {
		t.Fatalf("demo steps failed: %v\n%s", err, out.String())
	}

	// The printed lines, pasted into a shell, show what the README promises.
	dir := t.TempDir()
	e, err := freeEnv(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e.bin, err = filepath.Abs(bin); err != nil {
		t.Fatal(err)
	}
	if err := prepare(ctx, o, e); err != nil {
		t.Fatal(err)
	}
	stop, err := start(ctx, o, e)
	defer stop()
	if err != nil {
		t.Fatal(err)
	}
	var script bytes.Buffer
	printSteps(&script, e)
	sh := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script.String())
	got, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed lines failed in bash: %v\n%s\n--- script ---\n%s", err, got, script.String())
	}
	for _, want := range []string{secret, "ephi:v1:org_a:", "[protected]", "personal access tokens are disabled", `"code":"session_expired"`, `"code":"session_revoked"`, "revoked every session of user dana in org org_a", "ok: 1 files", `"code":"bad_request"`, `"code":"unauthenticated"`, `"action":"encrypt"`, `{"status":"ready"}`, `phiguard_route_coverage_ratio{direction="request",route="send-message"} 1`,
		`"Body":"` + secret + `"`, `"body":"You have a new message"`, `"title":"New message for [REDACTED]"`, `"contact_id":"ct_`,
		`"code":"no_consent"`, `"code":"destination_not_allowed"`, "0 error(s)", "not taken by any selector"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the printed lines' output lacks %q:\n%s", want, got)
		}
	}
	store, _ := os.ReadFile(filepath.Join(dir, "store.json"))
	if bytes.Contains(store, []byte(secret)) {
		t.Errorf("the store holds plaintext:\n%s", store)
	}
}

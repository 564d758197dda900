package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestCheck(t *testing.T) {
	if out, _, err := runCLI(t, "check", "-config", "../../configs/reference.yaml"); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("check reference.yaml: %v %s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\ningress: {upstream: \"http://x\", listn: 1}\nroutes:\n  - name: a\n    match: {path: /a}\n    encrypt_request: [\"$.a[?\"]\n"), 0o600)
	_, stderr, err := runCLI(t, "check", "-config", bad)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("check of a bad policy: err %v", err)
	}
	for _, want := range []string{bad + ":2:33: ingress.listn: unknown key", bad + ":6:23: routes[0].encrypt_request[0] (route a): unknown selector syntax", "3 problem(s)", ":1:1: identity: routes need a caller"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, args := range [][]string{{"check"}, {"check", "-nope"}, {"bogus"}, {}, {"check", "-config", "a", "extra"}} {
		if _, _, err := runCLI(t, args...); exitCode(err) != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, exitCode(err))
		}
	}
	if _, _, err := runCLI(t, "check", "-config", "/nonexistent.yaml"); err == nil {
		t.Error("check of a missing file succeeded")
	}
}

func TestKeysCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keyring")
	if _, _, err := runCLI(t, "keys", "create", "-keyring", dir, "-org", "org_a"); err == nil || !strings.Contains(err.Error(), "keys init") {
		t.Errorf("create before init: %v", err)
	}
	steps := [][]string{
		{"keys", "init", "-keyring", dir},
		{"keys", "create", "-keyring", dir, "-org", "org_a"},
		{"keys", "create", "-keyring", dir, "-org", "org_b"},
	}
	for _, s := range steps {
		if _, stderr, err := runCLI(t, s...); err != nil {
			t.Fatalf("%v: %v %s", s, err, stderr)
		}
	}
	out, _, err := runCLI(t, "keys", "list", "-keyring", dir)
	listed := regexp.MustCompile(`(?m)^(org_\w+)\twrapped by local master:[0-9a-f]{8}\tprimary ([0-9a-f]{8})\n  key ([0-9a-f]{8})\tcreated \d{4}-\d\d-\d\dT[0-9:]+Z\tenabled$`).FindAllStringSubmatch(out, -1)
	if err != nil || len(listed) != 2 || listed[0][1] != "org_a" || listed[1][1] != "org_b" || listed[0][2] != listed[0][3] {
		t.Errorf("keys list = %q, %v; want org_a and org_b, each with its one key, primary, created, enabled", out, err)
	}
	for _, s := range steps {
		if _, _, err := runCLI(t, s...); err == nil || !strings.Contains(err.Error(), "refusing to replace") {
			t.Errorf("%v a second time: %v", s, err)
		}
	}
	for _, args := range [][]string{{"keys"}, {"keys", "rotate", "-keyring", dir}, {"keys", "init"}, {"keys", "create", "-keyring", dir}} {
		if _, _, err := runCLI(t, args...); exitCode(err) != 2 {
			t.Errorf("%v: exit %d, want 2", args, exitCode(err))
		}
	}
	if _, _, err := runCLI(t, "keys", "create", "-keyring", dir, "-org", "bad/org"); err == nil {
		t.Error("created keys for a bad org id")
	}
}

func TestVersion(t *testing.T) {
	if out, _, err := runCLI(t, "version"); err != nil || !strings.HasPrefix(out, "phiguard ") {
		t.Errorf("version: %q %v", out, err)
	}
}

// TestEveryCommandAnswersHelp: -h (and -help, --help) prints the command's
// usage on stdout and succeeds, for the top level and every subcommand.
func TestEveryCommandAnswersHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the usage
	}{
		{[]string{"-h"}, "phiguard serve -config FILE"},
		{[]string{"help"}, "phiguard keys init"},
		{[]string{"serve", "-h"}, "Usage: phiguard serve -config FILE"},
		{[]string{"serve", "--help"}, "SIGHUP"},
		{[]string{"check", "-help"}, "Usage: phiguard check -config FILE"},
		{[]string{"keys", "-h"}, "Subcommands:"},
		{[]string{"keys", "help"}, "Subcommands:"},
		{[]string{"keys", "init", "-h"}, "Usage: phiguard keys init [-keyring DIR] [-master FILE]"},
		{[]string{"keys", "create", "-h"}, "Usage: phiguard keys create [-config FILE] [-keyring DIR] [-master FILE] -org ID"},
		{[]string{"keys", "list", "-h"}, "Usage: phiguard keys list [-config FILE] [-keyring DIR] [-master FILE]"},
		{[]string{"version", "-h"}, "Usage: phiguard version"},
	} {
		out, errOut, err := runCLI(t, tc.args...)
		if err != nil || !strings.Contains(out, tc.want) || errOut != "" {
			t.Errorf("%v: err %v, stdout %q, stderr %q; want %q on stdout only", tc.args, err, out, errOut, tc.want)
		}
	}
	// A wrong flag still prints the usage, on stderr, and exits 2.
	out, errOut, err := runCLI(t, "keys", "init", "-keyrng", "x")
	if exitCode(err) != 2 || out != "" || !strings.Contains(errOut, "Usage: phiguard keys init") {
		t.Errorf("bad flag: exit %d, stdout %q, stderr %q", exitCode(err), out, errOut)
	}
}

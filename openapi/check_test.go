package openapi

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

var update = flag.Bool("update", false, "rewrite the expected findings of testdata/check cases")

const caseSeparator = "-----\n"

// TestCheckCases runs every testdata/check case: a policy, a separator
// line, an OpenAPI description, a separator line, then the exact report
// Check must write. A policy whose first line is "# sensitive: ARG" runs
// with -sensitive ARG.
func TestCheckCases(t *testing.T) {
	files, err := filepath.Glob("testdata/check/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(raw), caseSeparator, 3)
			if len(parts) != 3 {
				t.Fatalf("%s: want a policy, a description and a report, between two %q lines", file, caseSeparator)
			}
			pol, err := policy.Parse("policy.yaml", []byte(parts[0]))
			if err != nil {
				t.Fatalf("policy: %v", err)
			}
			var o Options
			if first, _, _ := strings.Cut(parts[0], "\n"); strings.HasPrefix(first, "# sensitive: ") {
				if o.Sensitive, err = ParseSensitive(strings.TrimPrefix(first, "# sensitive: ")); err != nil {
					t.Fatal(err)
				}
			}
			spec := filepath.Join(t.TempDir(), "openapi.yaml")
			if err := os.WriteFile(spec, []byte(parts[1]), 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := Check(context.Background(), pol, spec, o)
			if err != nil {
				t.Fatal(err)
			}
			rep.Spec = "openapi.yaml"
			var got bytes.Buffer
			rep.WriteText(&got)
			if *update {
				if err := os.WriteFile(file, []byte(parts[0]+caseSeparator+parts[1]+caseSeparator+got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got.String() != parts[2] {
				t.Errorf("report differs\n got:\n%s\nwant:\n%s", got.String(), parts[2])
			}
		})
	}
}

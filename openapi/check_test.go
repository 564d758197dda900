package openapi

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/internal/golden"
	"github.com/phiguard/phiguard/policy"
)

var update = flag.Bool("update", false, "rewrite the expected findings of testdata/check cases")

// TestCheckCases runs every testdata/check case: a policy, a separator
// line, an OpenAPI description, a separator line, then the exact report
// Check must write. A policy whose first line is "# sensitive: ARG" runs
// with -sensitive ARG.
func TestCheckCases(t *testing.T) {
	golden.Run(t, "testdata/check/*.txt", 2, *update, func(t *testing.T, in []string) string {
		pol, err := policy.Parse("policy.yaml", []byte(in[0]))
		if err != nil {
			t.Fatalf("policy: %v", err)
		}
		var o Options
		if first, _, _ := strings.Cut(in[0], "\n"); strings.HasPrefix(first, "# sensitive: ") {
			if o.Sensitive, err = ParseSensitive(strings.TrimPrefix(first, "# sensitive: ")); err != nil {
				t.Fatal(err)
			}
		}
		spec := filepath.Join(t.TempDir(), "openapi.yaml")
		if err := os.WriteFile(spec, []byte(in[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Check(context.Background(), pol, spec, o)
		if err != nil {
			t.Fatal(err)
		}
		rep.Spec = "openapi.yaml"
		var got bytes.Buffer
		rep.WriteText(&got)
		return got.String()
	})
}

// Package golden runs data-driven test cases kept in files: inputs and
// the exact expected output, separated by "-----" lines, rewritten with
// the output got when the test runs with -update.
package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Separator ends each part of a case but the last.
const Separator = "-----\n"

// Run runs each file glob matches as a subtest: its first inputs parts
// are given to got, whose result must equal the last part exactly. With
// update, the file is rewritten with got's result instead.
func Run(t *testing.T, glob string, inputs int, update bool, got func(t *testing.T, in []string) string) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in %s: %v", glob, err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(raw), Separator, inputs+1)
			if len(parts) != inputs+1 {
				t.Fatalf("%s: want %d part(s) and the expected output, each ended by a %q line", file, inputs, Separator)
			}
			out := got(t, parts[:inputs])
			if update {
				if err := os.WriteFile(file, []byte(strings.Join(parts[:inputs], Separator)+Separator+out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if out != parts[inputs] {
				t.Errorf("%s: output differs\n got:\n%s\nwant:\n%s", file, out, parts[inputs])
			}
		})
	}
}

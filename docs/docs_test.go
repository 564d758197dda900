// Package docs holds phiguard's longer documents; its test keeps them
// honest.
package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHIPAAMapNamesRealTests: every test hipaa.md cites as proof exists,
// so a reviewer who runs it runs something.
func TestHIPAAMapNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("hipaa.md")
	if err != nil {
		t.Fatal(err)
	}
	cited := map[string]bool{}
	for _, m := range regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllSubmatch(doc, -1) {
		cited[string(m[1])] = true
	}
	if len(cited) < 20 {
		t.Fatalf("hipaa.md cites %d tests; the map has lost its proofs", len(cited))
	}
	defined := map[string]bool{}
	filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`).FindAllSubmatch(src, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	for name := range cited {
		if !defined[name] {
			t.Errorf("hipaa.md cites %s, which no test file defines", name)
		}
	}
}

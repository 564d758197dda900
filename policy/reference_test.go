package policy

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestShippedPolicies loads the policies in configs/: they must stay valid.
func TestShippedPolicies(t *testing.T) {
	for _, f := range []string{"../configs/reference.yaml", "../configs/demo.yaml"} {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestReferenceDocumentsEveryKey: every key the policy structs know appears
// in configs/reference.yaml, so the reference cannot drift from the code.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../configs/reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ref := string(raw)
	seen := map[reflect.Type]bool{}
	var walk func(rt reflect.Type, path string)
	walk = func(rt reflect.Type, path string) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || seen[rt] {
			return
		}
		seen[rt] = true
		idx, names := fieldsOf(rt)
		for _, name := range names {
			if !strings.Contains(ref, name+":") {
				t.Errorf("configs/reference.yaml does not document %s%s", path, name)
			}
			walk(rt.Field(idx[name]).Type, path+name+".")
		}
	}
	walk(reflect.TypeOf(File{}), "")
}

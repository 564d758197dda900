package codec

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

func mustSelectors(t *testing.T, texts ...string) []policy.Selector {
	t.Helper()
	var sels []policy.Selector
	for _, s := range texts {
		sel, err := policy.ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		sels = append(sels, sel)
	}
	return sels
}

func TestDropJSON(t *testing.T) {
	for _, c := range []struct {
		name, in string
		sels     []string
		want     string
		counts   []int
	}{
		{"member", `{"message":{"token":"t","data":{"body":"x"},"n":1}}`, []string{"$.message.data"}, `{"message":{"token":"t","n":1}}`, []int{1}},
		{"first and last members", `{"a":1,"b":2,"c":3}`, []string{"$.a", "$.c"}, `{"b":2}`, []int{1, 1}},
		{"every member", `{"a":{"x":1}}`, []string{"$.a"}, `{}`, []int{1}},
		{"in every element", `{"list":[{"k":1,"secret":"s"},{"secret":"t"},3]}`, []string{"$.list[*].secret"}, `{"list":[{"k":1},{},3]}`, []int{2}},
		{"at any depth", `{"a":{"data":1,"b":{"data":[2]}},"data":3}`, []string{"$..data"}, `{"a":{"b":{}}}`, []int{3}},
		{"another letter case", `{"Data":{"body":"x"},"data":1}`, []string{"$.data"}, `{}`, []int{2}},
		{"nothing to drop", `{"a":[1,2,{"b":null}]}`, []string{"$.x"}, `{"a":[1,2,{"b":null}]}`, []int{0}},
		{"whitespace", "{ \"a\" : 1 ,\n \"b\" : [ true ] }", []string{"$.a"}, `{"b":[true]}`, []int{1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, counts, err := DropJSON([]byte(c.in), mustSelectors(t, c.sels...))
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != c.want || !slices.Equal(counts, c.counts) {
				t.Errorf("got %s %v, want %s %v", out, counts, c.want, c.counts)
			}
		})
	}
}

func TestDropJSONRefuses(t *testing.T) {
	for _, in := range []string{`{"a":1,"a":2}`, `{"a":1} x`, `{"a":`, `{"a":"\xff"}`, ``} {
		_, _, err := DropJSON([]byte(in), mustSelectors(t, "$.b"))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
}

func TestDropForm(t *testing.T) {
	for _, c := range []struct {
		name, in string
		sels     []string
		want     string
		counts   []int
	}{
		{"field", "To=%2B1555&Body=hi&Data=x", []string{"form:Data"}, "To=%2B1555&Body=hi", []int{1}},
		{"first field", "Data=x&Body=hi", []string{"form:Data"}, "Body=hi", []int{1}},
		{"prefix", "MediaUrl0=a&Body=hi&MediaUrl1=b", []string{"form:MediaUrl*"}, "Body=hi", []int{2}},
		{"other readings", "data%5Bx%5D=1&DATA=2&Body=hi", []string{"form:data"}, "Body=hi", []int{2}},
		{"empty pairs", "&Body=hi&&", []string{"form:Data"}, "Body=hi", []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, counts, err := DropForm([]byte(c.in), mustSelectors(t, c.sels...))
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != c.want || !slices.Equal(counts, c.counts) {
				t.Errorf("got %s %v, want %s %v", out, counts, c.want, c.counts)
			}
		})
	}
	for _, in := range []string{"a=1;b=2", "a%zz=1"} {
		if _, _, err := DropForm([]byte(in), mustSelectors(t, "form:b")); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
}

// FuzzDropJSON: DropJSON never panics; what it returns is valid JSON, and
// dropping again removes nothing more.
func FuzzDropJSON(f *testing.F) {
	for _, s := range []string{`{"message":{"data":{"a":1},"notification":{"body":"x"}}}`, `[{"data":1},{"Data":[2]}]`, `{"a":{"b":{"data":null}}}`, `"x"`, `{`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	sels := []policy.Selector{}
	for _, s := range []string{"$.message.data", "$..data", "$[*].x"} {
		sel, err := policy.ParseSelector(s)
		if err != nil {
			f.Fatal(err)
		}
		sels = append(sels, sel)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := DropJSON(in, sels)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%q gave invalid JSON %q", in, out)
		}
		again, counts, err := DropJSON(out, sels)
		if err != nil || string(again) != string(out) || slices.ContainsFunc(counts, func(n int) bool { return n > 0 }) {
			t.Fatalf("dropping %q again: %q %v %v", out, again, counts, err)
		}
	})
}

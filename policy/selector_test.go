package policy

import (
	"reflect"
	"testing"
)

func TestParseSelector(t *testing.T) {
	for _, tc := range []struct {
		in    string
		steps []Step
	}{
		{"$.a.b", []Step{{StepChild, "a"}, {StepChild, "b"}}},
		{"$.a[*].b", []Step{{StepChild, "a"}, {StepAny, ""}, {StepChild, "b"}}},
		{"$.a.*", []Step{{StepChild, "a"}, {StepAny, ""}}},
		{"$..b", []Step{{StepDescendant, "b"}}},
		{"$..['odd key']", []Step{{StepDescendant, "odd key"}}},
		{"$['odd key']", []Step{{StepChild, "odd key"}}},
		{`$["it's"].x`, []Step{{StepChild, "it's"}, {StepChild, "x"}}},
		{`$['a\'b\\c']`, []Step{{StepChild, `a'b\c`}}},
		{"$.data[*].body", []Step{{StepChild, "data"}, {StepAny, ""}, {StepChild, "body"}}},
		{"$.first-name_2", []Step{{StepChild, "first-name_2"}}},
	} {
		s, err := ParseSelector(tc.in)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(s.Steps, tc.steps) || s.Text != tc.in || s.Form {
			t.Errorf("ParseSelector(%q) = %+v, want steps %+v", tc.in, s, tc.steps)
		}
	}
	s, err := ParseSelector("form:Body")
	if err != nil || !s.Form || s.FormName != "Body" {
		t.Errorf("ParseSelector(form:Body) = %+v, %v", s, err)
	}
}

func TestParseSelectorRejects(t *testing.T) {
	for _, in := range []string{
		"", "$", "a.b", "$a", "$.", "$..", "$.a.", "$[", "$[*", "$[0]", "$[-1]", "$[?(@.a)]", "$['a'", "$['a']x",
		"$['']", `$['\x']`, "$.a b", "$.a[*]]", "form:", "form:a&b", "form:a=b", "$..*", "$.[*]",
		"$" + repeat(".a", MaxSelectorSteps+1),
	} {
		if s, err := ParseSelector(in); err == nil {
			t.Errorf("ParseSelector(%q) = %+v, want an error", in, s)
		}
	}
}

func repeat(s string, n int) string {
	out := ""
	for i := 0; i < n; i++ {
		out += s
	}
	return out
}

// FuzzParseSelector: no panic; an accepted selector has steps within bounds,
// each with a name where its kind needs one.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"$.a.b", "$.a[*].b", "$..b", "$['odd key']", `$["a\"b"]`, "form:Body", "$.a[?", "$..['x']"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSelector(in)
		if err != nil {
			return
		}
		if s.Form {
			if s.FormName == "" {
				t.Fatalf("%q: form selector without a name", in)
			}
			return
		}
		if len(s.Steps) == 0 || len(s.Steps) > MaxSelectorSteps {
			t.Fatalf("%q: %d steps", in, len(s.Steps))
		}
		for _, st := range s.Steps {
			if (st.Kind == StepChild || st.Kind == StepDescendant) && st.Name == "" {
				t.Fatalf("%q: named step without a name", in)
			}
		}
	})
}

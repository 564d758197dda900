package codec

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func upper(_ int, v string) (string, error) { return "<" + strings.ToUpper(v) + ">", nil }

func TestRewriteForm(t *testing.T) {
	sels := selectors(t, "$.ignored", "form:Body", "form:Note")
	for _, tc := range []struct {
		name, in, want string
		counts         []int
	}{
		{"selected and kept", "From=%2B15551234&Body=hello+there&To=x", "From=%2B15551234&Body=%3CHELLO+THERE%3E&To=x", []int{0, 1, 0}},
		{"every occurrence", "Body=a&Body=b&Note=c", "Body=%3CA%3E&Body=%3CB%3E&Note=%3CC%3E", []int{0, 2, 1}},
		{"escaped key", "B%6Fdy=secret", "B%6Fdy=%3CSECRET%3E", []int{0, 1, 0}},
		{"empty pairs kept", "a=1&&Body=x&", "a=1&&Body=%3CX%3E&", []int{0, 1, 0}},
		{"key without value", "Body&b=2", "Body=%3C%3E&b=2", []int{0, 1, 0}},
		{"empty body", "", "", []int{0, 0, 0}},
		{"unselected bytes untouched", "z=%7e%7E+&y=%e2%82%ac", "z=%7e%7E+&y=%e2%82%ac", []int{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, counts, err := RewriteForm([]byte(tc.in), sels, upper)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("got  %s\nwant %s", out, tc.want)
			}
			for i := range tc.counts {
				if counts[i] != tc.counts[i] {
					t.Errorf("counts = %v, want %v", counts, tc.counts)
					break
				}
			}
		})
	}
}

func TestRewriteFormRefuses(t *testing.T) {
	sels := selectors(t, "form:Body")
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"semicolon separator", "a=1;Body=secret", ErrMalformed},
		{"bad escape in key", "B%zzdy=x", ErrMalformed},
		{"bad escape in value", "Body=%e", ErrMalformed},
		{"bad escape elsewhere", "x=%G1&Body=ok", ErrMalformed},
		{"invalid UTF-8", "Body=%ff", ErrMalformed},
		{"case variant", "body=x", ErrAmbiguousKey},
		{"case variant beside", "Body=x&BODY=y", ErrAmbiguousKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, _, err := RewriteForm([]byte(tc.in), sels, upper); !errors.Is(err, tc.want) {
				t.Errorf("got %v (out %q), want %v", err, out, tc.want)
			}
		})
	}
}

// FuzzRewriteForm: with no form selector the body comes back unchanged; with
// one, every value of the field parses back as the edit's output and every
// other field keeps its values.
func FuzzRewriteForm(f *testing.F) {
	for _, s := range []string{"Body=hi&To=%2B1555", "a=1&&b", "Body=a&Body=b", "B%6Fdy=x", "x=%zz", "a=1;b=2", ""} {
		f.Add(s)
	}
	sels := selectors(f, "form:Body")
	f.Fuzz(func(t *testing.T, in string) {
		out, _, err := RewriteForm([]byte(in), nil, upper)
		if err == nil && string(out) != in {
			t.Fatalf("no selectors changed %q to %q", in, out)
		}
		out, counts, err := RewriteForm([]byte(in), sels, func(_ int, v string) (string, error) { return "T", nil })
		if err != nil {
			return
		}
		before, err1 := url.ParseQuery(in)
		after, err2 := url.ParseQuery(string(out))
		if err1 != nil || err2 != nil {
			t.Fatalf("accepted %q (%v) → %q (%v)", in, err1, out, err2)
		}
		if len(after["Body"]) != counts[0] || len(before["Body"]) != counts[0] {
			t.Fatalf("%q: %d Body values before, %d after, counted %d", in, len(before["Body"]), len(after["Body"]), counts[0])
		}
		for _, v := range after["Body"] {
			if v != "T" {
				t.Fatalf("%q: Body kept value %q", in, v)
			}
		}
		for k, vs := range before {
			if k == "Body" {
				continue
			}
			if strings.Join(after[k], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("%q: field %q changed", in, k)
			}
		}
	})
}

func TestRewriteFormRefusedField(t *testing.T) {
	for _, in := range []string{"Body=x&_method=DELETE", "_METHOD=put", "%5Fmethod=put"} {
		if _, _, err := RewriteForm([]byte(in), selectors(t, "form:Body"), upper, "_method"); !errors.Is(err, ErrRefusedKey) {
			t.Errorf("%s: got %v, want ErrRefusedKey", in, err)
		}
	}
}

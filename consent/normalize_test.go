package consent

import (
	"regexp"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct {
		in, want string // want "": an error
	}{
		{"2025550123", "+12025550123"},
		{"202-555-0123", "+12025550123"},
		{"(202) 555-0123", "+12025550123"},
		{"202.555.0123", "+12025550123"},
		{" 202 555 0123\t", "+12025550123"},
		{"12025550123", "+12025550123"},
		{"1 (202) 555-0123", "+12025550123"},
		{"+1 202 555 0123", "+12025550123"},
		{"+12025550123", "+12025550123"},
		{"(+1) 202-555-0123", "+12025550123"},
		{"+44 20 7946 0958", "+442079460958"},
		{"+4520123456", "+4520123456"},           // 10 digits
		{"+49 301234", "+49301234"},              // 8 digits, the fewest
		{"+123456789012345", ""},                 // country code 1, not NANP
		{"+861234567890123", "+861234567890123"}, // 15 digits, the most
		{"+8612345678901234", ""},                // 16 digits
		{"+4930123", ""},                         // 7 digits
		{"+0123456789", ""},                      // no country code starts with 0
		{"+1 202 555 012", ""},                   // NANP with 9 digits
		{"+1 102 555 0123", ""},                  // NANP area code starting with 1
		{"+1 202 155 0123", ""},                  // NANP exchange starting with 1
		{"1025550123", ""},                       // 10 digits, not NANP
		{"0205550123", ""},
		{"22025550123", ""}, // 11 digits, not starting with 1
		{"11025550123", ""},
		{"020 7946 0958", ""},       // a national number outside North America
		{"011 44 20 7946 0958", ""}, // a dialing prefix
		{"0044 20 7946 0958", ""},
		{"12345", ""}, // short codes
		{"123456", ""},
		{"5550123", ""}, // local, no area code
		{"", ""},
		{"+", ""},
		{"++12025550123", ""},
		{"1+2025550123", ""},
		{"202-555-0123 x42", ""}, // an extension
		{"202-555-0123;ext=42", ""},
		{"1-800-FLOWERS", ""},
		{"tel:+12025550123", ""},
		{"+1\u00a0202 555 0123", ""},                      // only ASCII separators
		{"２０２５５５０１２３", ""},                                // fullwidth digits
		{"+1 202 555 0123" + strings.Repeat(" ", 60), ""}, // longer than anyone types
	} {
		got, err := Normalize(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("Normalize(%q): got %v, want an error", c.in, got)
		case c.want != "" && (err != nil || got != c.want):
			t.Errorf("Normalize(%q): got %v %v, want %v", c.in, got, err, c.want)
		}
	}
}

// TestNormalizeErrorHidesTheNumber: the error never holds what it was
// given, which may be a patient's number.
func TestNormalizeErrorHidesTheNumber(t *testing.T) {
	for _, in := range []string{"+1 555 CANARY 42", "canary-8675309", "867-5309", "+99 8675309 8675309 86"} {
		_, err := Normalize(in)
		if err == nil {
			t.Fatalf("%q: no error", in)
		}
		for _, part := range []string{in, "CANARY", "canary", "8675309"} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("%q: the error %q holds %q", in, err, part)
			}
		}
	}
}

var e164 = regexp.MustCompile(`^\+[0-9]{8,15}$`)

// FuzzNormalize: Normalize never panics; what it returns is E.164 and
// normalizes to itself; its one error holds nothing of the input.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"2025550123", "(202) 555-0123", "+1 202 555 0123", "+44 20 7946 0958", "12345", "+", "", "1-800-FLOWERS", "++1", "+0123456789", "\xff", "202 555 0123 x1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Normalize(in)
		if err != nil {
			if err != errNotPhone {
				t.Fatalf("%q: got %v, want errNotPhone", in, err)
			}
			return
		}
		if !e164.MatchString(got) {
			t.Fatalf("%q: got %q, not E.164", in, got)
		}
		if again, err := Normalize(got); err != nil || again != got {
			t.Fatalf("%q: got %q, then %q %v", in, got, again, err)
		}
	})
}

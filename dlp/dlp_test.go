package dlp

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Cases mark each expected match with « and »: the input is the text
// without the marks, Redact's output replaces each marked part with
// Redacted, and a case without marks must match nothing.
type markedCase struct {
	name string
	text string
}

// parseMarked returns the input, the expected redaction and the marked
// values of a case.
func parseMarked(t *testing.T, text string) (in, want string, values []string) {
	t.Helper()
	var inB, wantB strings.Builder
	for rest := text; rest != ""; {
		open := strings.Index(rest, "«")
		if open < 0 {
			inB.WriteString(rest)
			wantB.WriteString(rest)
			break
		}
		inB.WriteString(rest[:open])
		wantB.WriteString(rest[:open])
		rest = rest[open+len("«"):]
		end := strings.Index(rest, "»")
		if end < 0 {
			t.Fatalf("unclosed « in %q", text)
		}
		values = append(values, rest[:end])
		inB.WriteString(rest[:end])
		wantB.WriteString(Redacted)
		rest = rest[end+len("»"):]
	}
	return inB.String(), wantB.String(), values
}

// runMarked runs each case through Scan (the "block" action) and Redact,
// with a Set of the one detector c selects.
func runMarked(t *testing.T, c Config, cases []markedCase) {
	t.Helper()
	set, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, want, values := parseMarked(t, tc.text)
			wantFound := Found(0)
			if len(values) > 0 {
				wantFound = 1
			}
			if got := set.Scan([]byte(in)); got != wantFound {
				t.Errorf("Scan(%q): got %v, want %v", in, got, wantFound)
			}
			out, found := set.Redact([]byte("prefix|"), []byte(in))
			if found != wantFound {
				t.Errorf("Redact(%q) found: got %v, want %v", in, found, wantFound)
			}
			got, ok := bytes.CutPrefix(out, []byte("prefix|"))
			if !ok {
				t.Fatalf("Redact(%q) did not append to dst: got %q", in, out)
			}
			// The exact output also proves the text around each match is
			// kept byte for byte.
			if string(got) != want {
				t.Errorf("Redact(%q): got %q, want %q", in, got, want)
			}
			for _, v := range values {
				if bytes.Contains(got, []byte(v)) {
					t.Errorf("Redact(%q) output %q still holds the match %q", in, got, v)
				}
			}
		})
	}
}

func TestSSN(t *testing.T) {
	runMarked(t, Config{Detectors: []string{"ssn"}}, []markedCase{
		{"dashes", "Patient «123-45-6789» called"},
		{"spaces", "«123 45 6789»"},
		{"keyword and bare digits", "ssn: «123456789»"},
		{"long keyword", "Social Security Number: «078051120»."},
		{"keyword glued", "SSN#«123456789»"},
		{"keyword glued to digits", "SSN«123456789»"},
		{"in parentheses", "(«123-45-6789»)"},
		{"two, comma", "«123-45-6789»,«234-56-7890»"},
		{"bare within reach", "SSN «123-45-6789» or «223456789»"},
		{"sentence end", "It is «123-45-6789»."},
		{"area 000", "000-12-3456"},
		{"area 666", "666-12-3456"},
		{"area 9xx", "900-12-3456"},
		{"group 00", "123-00-4567"},
		{"serial 0000", "123-45-0000"},
		{"bare without keyword", "ref 123456789"},
		{"keyword too far", "ssn is in the other field, order 123456789"},
		{"keyword inside a word", "lessn 123456789"},
		{"keyword after", "123456789 is the ssn"},
		{"twelve digits", "SSN 123456789012"},
		{"ten digits", "SSN 1234567890"},
		{"phone", "call 555-123-4567"},
		{"longer run before", "1123-45-6789"},
		{"longer run after", "123-45-67890"},
		{"joined number after", "123-45-6789-1"},
		{"joined number before", "1.123-45-6789"},
		{"mixed separators", "123-45 6789"},
	})
}

func TestPhone(t *testing.T) {
	runMarked(t, Config{Detectors: []string{"phone"}}, []markedCase{
		{"parentheses", "Call «(555) 123-4567» today"},
		{"parentheses no space", "«(555)123-4567»"},
		{"dashes", "«555-123-4567»"},
		{"dots", "«555.123.4567»"},
		{"plus one spaces", "«+1 555 123 4567»"},
		{"plus one parentheses", "«+1 (555) 123-4567»"},
		{"e164 nanp", "«+15551234567»"},
		{"bare ten", "«5551234567»"},
		{"one dash", "«1-800-555-1234»"},
		{"e164 international", "tel:«+442079460958»"},
		{"e164 shortest", "«+12345678»"},
		{"sentence end", "call «555-123-4567»."},
		{"slash between two", "«555-123-4567»/«555-987-6543»"},
		{"extension letter", "«555-123-4567»x89"},
		{"after a digit", "5«(555) 123-4567»"},
		{"area code 1xx", "1234567890"},
		{"area code 0xx", "(055) 123-4567"},
		{"twelve digits", "order 123456789012"},
		{"thirteen digits", "5551234567890"},
		{"longer last group", "555-123-45678"},
		{"joined number after", "555-123-4567-89"},
		{"joined number before", "12-555-123-4567"},
		{"e164 too short", "+1234567"},
		{"e164 leading zero", "+0123456789"},
		{"e164 sixteen digits", "+1234567890123456"},
		{"e164 with spaces", "+44 20 7946 0958"},
		{"time and date", "at 10:30 on 2024-03-04"},
		{"amount", "$1,234.56"},
		{"ssn", "123-45-6789"},
	})
}

func TestEmail(t *testing.T) {
	runMarked(t, Config{Detectors: []string{"email"}}, []markedCase{
		{"plain", "«jane.doe+rx@example.com»"},
		{"subdomains", "mail «a_b@sub.example.co.uk»."},
		{"angle brackets", "Jane <«x@y.io»>"},
		{"two", "«a@b.org», «c@d.net»"},
		{"no top-level domain", "user@localhost"},
		{"no local part", "@example.com"},
		{"no dot", "a@b"},
		{"spelled out", "jane at example dot com"},
		{"one-letter top-level domain", "name@example.c"},
		{"handle", "@jane_doe"},
	})
}

func TestDOB(t *testing.T) {
	runMarked(t, Config{Detectors: []string{"dob"}}, []markedCase{
		{"us numeric", "DOB: «03/04/1961»"},
		{"short year", "dob «3/4/61»"},
		{"iso", "Date of birth: «1961-03-04»"},
		{"dashes", "DOB «03-04-1961»"},
		{"dots", "D.O.B. «04.03.1961»"},
		{"month day year", "born «March 3, 1961»"},
		{"day month year", "Birthday «3 March 1961»"},
		{"abbreviated", "DOB «Mar 3 1961»"},
		{"abbreviated dot ordinal", "DOB «Mar. 3rd, 1961»"},
		{"of", "birthdate «3rd of March, 1961»"},
		{"keyword after", "«03/04/1961» (DOB)"},
		{"keyword split by a line break", "Date of\nbirth «03/04/1961»"},
		{"day first", "DOB «13/04/1961»"},
		{"capitals", "DOB «MARCH 3, 1961»"},
		// Within reach of the keyword, a second date is taken too: a
		// missed birth date would be worse.
		{"second date in reach", "DOB «03/04/1961», appt «05/06/2027»"},
		{"appointment", "Your appointment is 03/04/2027"},
		{"appointment with month name", "See you on March 3, 2027 at 10:30"},
		{"keyword too far", "DOB field is required. Your appointment is on 03/04/2027"},
		{"keyword inside a word", "Adobe 03/04/1961"},
		{"month 13", "DOB: 13/13/1961"},
		{"month 0", "DOB 00/04/1961"},
		{"day 32", "DOB 1961-03-32"},
		{"longer number", "DOB 03/04/19612"},
		{"month inside a word", "DOB Summarch 3, 1961"},
		{"no year", "DOB March 3"},
	})
}

func TestDOBKeywords(t *testing.T) {
	runMarked(t, Config{Detectors: []string{"dob"}, DOBKeywords: []string{"Geboren", " fecha  de nacimiento "}}, []markedCase{
		{"custom", "geboren «03.04.1961»"},
		{"custom with spaces", "Fecha de\tnacimiento: «1961-03-04»"},
		{"default replaced", "DOB 03/04/1961"},
	})
}

func TestICD10(t *testing.T) {
	runMarked(t, Config{Detectors: []string{"icd10"}}, []markedCase{
		{"dotted", "Assessment: «E11.9»"},
		{"seven characters", "«S72.001A»"},
		{"letter third", "«C4A.1»"},
		{"letter third, bare with keyword", "code «Z3A»"},
		{"bare with dx", "Dx: «E11»"},
		{"bare with diagnosis", "diagnosis «I10»"},
		{"keyword after", "«E11» (diagnosis)"},
		{"list past reach", "Dx: «E11», «I10», «N18», «E78», «K21», «M54», «J45», «F41»"},
		{"icd-10", "ICD-10 «F32»"},
		{"bare alone", "Room E11 is on the left"},
		{"vitamin", "Take vitamin B12 daily"},
		{"inside a word", "XE11.9"},
		{"followed by letters", "E11.9ABCDE"},
		{"version", "E11.9.1"},
		{"bare in a longer number", "Dx E119"},
		{"reserved U", "U07.1"},
		{"lower case", "v10.2 and e11.9"},
		{"third letter not A or B", "code A1C"},
		{"keyword inside a word", "barcode E11"},
	})
}

func TestMRN(t *testing.T) {
	runMarked(t, Config{
		Detectors:   []string{"mrn"},
		MRNPatterns: []string{`\bMRN[-: ]?[0-9]{7}\b`, `\b[A-Z]{2}[0-9]{6}\b`},
	}, []markedCase{
		{"first pattern", "«MRN-1234567»"},
		{"second pattern", "chart «AB123456», see also «MRN 7654321»"},
		{"too short", "MRN-123456"},
		{"inside a word, by the author's \\b", "XAB123456"},
	})
}

// TestRedactMerges checks that matches of several detectors that overlap
// or touch become one Redacted, and that Found names each detector.
func TestRedactMerges(t *testing.T) {
	set, err := New(Config{Detectors: []string{"ssn", "email", "phone", "dob"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in, want string
		names    []string
	}{
		{"mail 5551234567@example.com now", "mail [REDACTED] now", []string{"email", "phone"}},
		{"DOB 03/04/1961 x@y.org", "DOB [REDACTED] [REDACTED]", []string{"email", "dob"}},
		{"+15551234567", "[REDACTED]", []string{"phone"}},
		{"nothing here", "nothing here", nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			out, found := set.Redact(nil, []byte(tc.in))
			if string(out) != tc.want {
				t.Errorf("Redact: got %q, want %q", out, tc.want)
			}
			if got := found.Names(set); !slices.Equal(got, tc.names) {
				t.Errorf("Found.Names: got %v, want %v", got, tc.names)
			}
			if got := set.Scan([]byte(tc.in)); got != found {
				t.Errorf("Scan: got %v, want %v (Redact's)", got, found)
			}
		})
	}
}

func TestNames(t *testing.T) {
	set, err := New(Config{Detectors: []string{"icd10", "mrn", "ssn"}, MRNPatterns: []string{`MRN[0-9]{6}`}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := set.Names(), []string{"icd10", "mrn", "ssn"}; !slices.Equal(got, want) {
		t.Errorf("Names: got %v, want %v", got, want)
	}
	found := set.Scan([]byte("SSN 123-45-6789, MRN000001, E11.9"))
	if got, want := found.Names(set), []string{"icd10", "mrn", "ssn"}; !slices.Equal(got, want) {
		t.Errorf("Found.Names: got %v, want %v", got, want)
	}
}

// TestMaxLen checks the bound each built-in probe searches within, the
// longest candidate of its expression.
func TestMaxLen(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    probe
		want int
	}{
		{"ssn", ssnProbes[0], len("123-45-6789")},
		{"ssn bare", ssnProbes[1], len("123456789")},
		{"nanp", phoneProbes[0], len("+1-(555) 123-4567")},
		{"e164", phoneProbes[1], len("+123456789012345")},
		{"icd dotted", icdProbes[0], len("S72.001A")},
		{"icd bare", icdProbes[1], len("E11")},
	} {
		if tc.p.maxLen != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.p.maxLen, tc.want)
		}
	}
	// Case folding may match a letter by a longer rune (the Kelvin sign for
	// k), so the bound of the date expression is loose; it must be finite
	// and hold the longest date.
	longest := "31st   of   September.,   1961"
	if got := dateProbe.maxLen; got < len(longest) || got > 4*len(longest) {
		t.Errorf("date: got %v, want between %v and %v", got, len(longest), 4*len(longest))
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"unknown with hint", Config{Detectors: []string{"phone", "email", "ss"}},
			`detectors[2]: unknown detector "ss" (did you mean "ssn"?)`},
		{"unknown without hint", Config{Detectors: []string{"zipcode"}},
			`detectors[0]: unknown detector "zipcode" (want one of ssn, mrn, dob, phone, email, icd10)`},
		{"none", Config{},
			`detectors: none listed (want one or more of ssn, mrn, dob, phone, email, icd10)`},
		{"duplicate", Config{Detectors: []string{"ssn", "dob", "ssn"}},
			`detectors[2]: "ssn" is already listed at detectors[0]`},
		{"mrn without patterns", Config{Detectors: []string{"mrn"}},
			`mrn_patterns: required when "mrn" is among the detectors`},
		{"patterns without mrn", Config{Detectors: []string{"ssn"}, MRNPatterns: []string{`MRN[0-9]{7}`}},
			`mrn_patterns: set, but "mrn" is not among the detectors`},
		{"bad pattern", Config{Detectors: []string{"mrn"}, MRNPatterns: []string{`(\d+`}},
			"mrn_patterns[0]: error parsing regexp: missing closing ): `(\\d+`"},
		{"pattern matching nothing", Config{Detectors: []string{"mrn"}, MRNPatterns: []string{`MRN[0-9]{7}`, `[0-9]*`}},
			`mrn_patterns[1]: matches the empty string`},
		{"pattern of assertions only", Config{Detectors: []string{"mrn"}, MRNPatterns: []string{`\b(?:MRN)?\b`}},
			`mrn_patterns[0]: matches the empty string`},
		{"dob keywords without dob", Config{Detectors: []string{"ssn"}, DOBKeywords: []string{"born"}},
			`dob_keywords: set, but "dob" is not among the detectors`},
		{"empty dob keyword", Config{Detectors: []string{"dob"}, DOBKeywords: []string{"born", " "}},
			`dob_keywords[1]: empty keyword`},
		{"no dob keywords", Config{Detectors: []string{"dob"}, DOBKeywords: []string{}},
			`dob_keywords: empty list (leave it out for the defaults)`},
		{"every problem at once", Config{Detectors: []string{"ssn", "emial", "mrn"}, MRNPatterns: []string{`[`}},
			`detectors[1]: unknown detector "emial" (did you mean "email"?)` + "\n" +
				"mrn_patterns[0]: error parsing regexp: missing closing ]: `[`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := New(tc.c)
			if err == nil {
				t.Fatalf("New: got %v, want error %q", set.Names(), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("New: got %q, want %q", err, tc.want)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	set := benchSet(t)
	msg := []byte(oneMatchMessage)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if set.Scan(msg) == 0 {
					t.Error("Scan missed the phone number")
				}
				if out, _ := set.Redact(nil, msg); bytes.Contains(out, []byte("123-4567")) {
					t.Error("Redact kept the phone number")
				}
			}
		})
	}
	wg.Wait()
}

// FuzzRedact checks Redact's properties on any input:
//   - it never panics, and reports what Scan reports;
//   - with nothing found, the output is the input;
//   - for detectors that need no keyword (phone, e-mail, an MRN pattern
//     without assertions), the output holds nothing they find.
//
// The last does not hold for every Set. A keyword detector can find more
// after redaction (a 30-byte address shrinks to 10 bytes and brings a date
// into a keyword's reach). And an MRN pattern is not held by the boundary
// rule the built-ins share: in "MRN-1234567-5551234567" the phone number
// is joined to the MRN's digits until the MRN is redacted.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"", "Call (555) 123-4567 or jane@example.com",
		"SSN 123456789, DOB: March 3, 1961, Dx: E11, I10",
		"MRN-1234567 S72.001A +442079460958 3/4/61 born",
		"5551234567@example.com", "+1234567890123456", "E11.9.1",
		"DOB 03/04/1961, appt 05/06/2027", "123-45-6789-1",
	} {
		f.Add([]byte(s))
	}
	all, err := New(Config{
		Detectors:   []string{"ssn", "mrn", "dob", "phone", "email", "icd10"},
		MRNPatterns: []string{`\bMRN-?[0-9]{7}\b`},
	})
	if err != nil {
		f.Fatal(err)
	}
	var keywordFree []*Set
	for _, c := range []Config{
		{Detectors: []string{"phone", "email"}},
		{Detectors: []string{"mrn"}, MRNPatterns: []string{`MRN-?[0-9]{7}`}},
	} {
		s, err := New(c)
		if err != nil {
			f.Fatal(err)
		}
		keywordFree = append(keywordFree, s)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		out, found := all.Redact(nil, v)
		if scan := all.Scan(v); scan != found {
			t.Fatalf("Scan found %v, Redact found %v", scan.Names(all), found.Names(all))
		}
		if found == 0 && !bytes.Equal(out, v) {
			t.Fatalf("nothing found, yet the output %q differs from the input", out)
		}
		for _, s := range keywordFree {
			out, _ := s.Redact(nil, v)
			if again := s.Scan(out); again != 0 {
				t.Fatalf("%v found again in the redacted %q", again.Names(s), out)
			}
		}
	})
}

const (
	// A typical ~200-byte reminder: a date, a time, a vitamin, no PHI.
	noMatchMessage = "Hi Sam, this is a reminder of your appointment with Dr. Lee on 03/04/2027 " +
		"at 10:30 AM at the Main St clinic. Please bring your B12 results. Reply C to " +
		"confirm or call the front desk to reschedule."
	oneMatchMessage = "Hi Sam, this is a reminder of your appointment with Dr. Lee on 03/04/2027 " +
		"at 10:30 AM at the Main St clinic. Please bring your B12 results. Reply C to " +
		"confirm or call (555) 123-4567 to reschedule."
)

func benchSet(tb testing.TB) *Set {
	tb.Helper()
	set, err := New(Config{
		Detectors:   []string{"ssn", "mrn", "dob", "phone", "email", "icd10"},
		MRNPatterns: []string{`MRN-?[0-9]{7}\b`},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

func BenchmarkScan(b *testing.B) {
	set := benchSet(b)
	for _, bc := range []struct{ name, msg string }{
		{"no match", noMatchMessage},
		{"one match", oneMatchMessage},
	} {
		b.Run(bc.name, func(b *testing.B) {
			msg := []byte(bc.msg)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				set.Scan(msg)
			}
		})
	}
}

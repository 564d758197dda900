package search

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ kind, in, region, want string }{
		{None, "  As Is ", "", "  As Is "},
		{"", "x", "", "x"},
		{Trim, "  Jane \t  Doe\n", "", "Jane Doe"},
		{Trim, "\u00a0MRN\u2003 42\u3000", "", "MRN 42"},
		{Fold, "  ＭＲＮ  4２ ", "", "mrn 42"},
		{Fold, "Straße", "", "strasse"},
		{Fold, "ǅemal", "", "džemal"},
		{Phone, "(555) 123-4567", "US", "+15551234567"},
		{Phone, "555.123.4567", "US", "+15551234567"},
		{Phone, "+1 555 123 4567", "GB", "+15551234567"},
		{Phone, "1-555-123-4567", "US", "+15551234567"},
		{Phone, "020 7946 0018", "GB", "+442079460018"},
		{Phone, "+44 20 7946 0018", "US", "+442079460018"},
		{Phone, "５５５ １２３ ４５６７", "US", "+15551234567"},
		{Email, "  Jane.Doe@Example.COM ", "", "jane.doe@example.com"},
		{Email, "Straße@Example.com", "", "straße@example.com"},
	} {
		got, err := Normalize(c.kind, c.in, c.region)
		if err != nil || got != c.want {
			t.Errorf("Normalize(%s, %q, %s) = %q, %v; want %q", c.kind, c.in, c.region, got, err, c.want)
		}
	}
}

// TestNormalizeRefuses: what is not a phone number or an address is an
// error that never holds the value.
func TestNormalizeRefuses(t *testing.T) {
	for _, c := range []struct {
		kind, in string
		want     error
	}{
		{Phone, "call me maybe", ErrNotPhone},
		{Phone, "12", ErrNotPhone},
		{Phone, "555-1234-5678-9999-0000", ErrNotPhone},
		{Phone, "", ErrNotPhone},
		{Phone, "555-1234", ErrNotPhone},
		{Phone, "555-123-4567 ext. 89", ErrPhoneExtension},
		{Phone, "(555) 123-4567 x12", ErrPhoneExtension},
		{Email, "jane", ErrNotEmail},
		{Email, "Jane <jane@example.com>", ErrNotEmail},
		{Email, "a@b@example.com", ErrNotEmail},
		{Email, "jane@", ErrNotEmail},
		{"soundex", "jane", ErrUnknown},
	} {
		got, err := Normalize(c.kind, c.in, "US")
		if !errors.Is(err, c.want) || got != "" {
			t.Errorf("Normalize(%s, %q) = %q, %v; want %v", c.kind, c.in, got, err, c.want)
		}
		if c.in != "" && err != nil && strings.Contains(err.Error(), c.in) {
			t.Errorf("error %q holds the value", err)
		}
	}
}

func TestWords(t *testing.T) {
	stop := map[string]bool{}
	for _, w := range EnglishStopWords() {
		stop[w] = true
	}
	for _, c := range []struct {
		text string
		o    WordOptions
		want []string
	}{
		{"Chest pain, since Tuesday.", WordOptions{}, []string{"chest", "pain", "since", "tuesday"}},
		{"CHEST chest Chest", WordOptions{}, []string{"chest"}},
		{"Ｃｈｅｓｔ ｐａｉｎ", WordOptions{}, []string{"chest", "pain"}},
		{"naïve café Crème brûlée", WordOptions{}, []string{"naive", "cafe", "creme", "brulee"}},
		{"Straße STRASSE", WordOptions{}, []string{"strasse"}},
		{"Ωμέγα ωμεγα", WordOptions{}, []string{"ωμεγα"}},
		{"Мигрень, боль", WordOptions{}, []string{"мигрень", "боль"}},
		{"take 2 tablets of 500mg at 8", WordOptions{MinLength: 2, StopWords: stop}, []string{"take", "tablets", "500mg"}},
		{"the pain is in the chest", WordOptions{StopWords: stop}, []string{"pain", "chest"}},
		{"mrn:00123-45 e-mail jane.doe@example.com", WordOptions{}, []string{"mrn", "00123", "45", "e", "mail", "jane", "doe", "example", "com"}},
		{"one two three four", WordOptions{MaxWords: 2}, []string{"one", "two"}},
		{"a b c", WordOptions{MinLength: 2}, nil},
		{"", WordOptions{}, nil},
		{"头痛 headache", WordOptions{}, []string{"头痛", "headache"}},
		{"bad \xff byte", WordOptions{}, []string{"bad", "byte"}},
		{"किताब दर्द", WordOptions{}, []string{"किताब", "दर्द"}},
		{"দাঁতের ব্যথা", WordOptions{}, []string{"দাঁতের", "ব্যথা"}},
		{"வலி", WordOptions{}, []string{"வலி"}},
		{"Ёлка ёлка елка", WordOptions{}, []string{"елка"}},
		{"ꮪꭰ ᏚᎠ", WordOptions{}, []string{"ꮪꭰ"}},
		{"ΣΟΦΟΣ σοφος σοφοσ", WordOptions{}, []string{"σοφοσ"}},
	} {
		if got := Words(c.text, c.o); !slices.Equal(got, c.want) {
			t.Errorf("Words(%q, %+v) = %q, want %q", c.text, c.o, got, c.want)
		}
	}
}

// FuzzWords: every word is a non-empty run of letters and digits, folded
// (folding it again changes nothing), and no word comes twice.
func FuzzWords(f *testing.F) {
	for _, s := range []string{"Chest pain", "naïve ＣＡＦÉ", "Straße", "a\xffb", "ǅ ǆ Ǆ", "İstanbul ı"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		seen := map[string]bool{}
		for _, w := range Words(text, WordOptions{}) {
			if w == "" || strings.IndexFunc(w, notWordRune) >= 0 || seen[w] {
				t.Fatalf("Words(%q): bad or repeated word %q", text, w)
			}
			seen[w] = true
			if again := Words(w, WordOptions{}); len(again) != 1 || again[0] != w {
				t.Fatalf("Words(%q): word %q folds again to %q", text, w, again)
			}
		}
	})
}

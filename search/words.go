package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// WordOptions say which words of a text are indexed.
type WordOptions struct {
	// MinLength drops words of fewer runes. 0 or 1 keeps every word.
	MinLength int
	// StopWords are dropped; they are compared after folding.
	StopWords map[string]bool
	// MaxWords keeps at most this many distinct words of one text, the
	// first ones; 0 keeps them all.
	MaxWords int
}

// Words returns the distinct words of text, in the order they first
// appear, as index words are computed from them. A word is a run of
// letters, marks and digits. Text is normalized (NFKC) and case-folded,
// so "Ｃｈｅｓｔ", "CHEST" and "chest" are one word; accents on Latin,
// Greek and Cyrillic letters are dropped ("naïve" and "naive" are one
// word), while the marks other scripts spell with (Devanagari vowel signs
// and viramas, Bengali, Tamil…) are kept. Scripts written without spaces
// give runs, not words.
func Words(text string, o WordOptions) []string {
	var b strings.Builder
	var base rune
	for _, r := range norm.NFKD.String(strings.ToValidUTF8(text, " ")) {
		if unicode.Is(unicode.Mn, r) {
			if unicode.In(base, unicode.Latin, unicode.Greek, unicode.Cyrillic) {
				continue // an accent
			}
		} else {
			base = r
		}
		b.WriteRune(r)
	}
	// Full case folding (ß to ss), then each letter to the lower case of
	// its upper case: x/text folds some scripts (Cherokee) to upper case
	// and back again, which would make one word two.
	folded := strings.Map(func(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }, folder.String(norm.NFC.String(b.String())))
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(folded, notWordRune) {
		if utf8.RuneCountInString(w) < o.MinLength || o.StopWords[w] || seen[w] {
			continue
		}
		if o.MaxWords > 0 && len(out) == o.MaxWords {
			break
		}
		seen[w] = true
		out = append(out, w)
	}
	return out
}

func notWordRune(r rune) bool {
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r)
}

// EnglishStopWords are the words Lucene's English analyzer leaves out:
// too common to find anything by, and frequent enough to stand out in an
// index.
func EnglishStopWords() []string {
	return []string{"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
		"no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this",
		"to", "was", "will", "with"}
}

// AppendIndex appends to dst, for each word of text (Words), a space and
// the index word indexWord appends for it, and says how many it appended.
func AppendIndex(dst []byte, text string, o WordOptions, indexWord func(dst, word []byte) ([]byte, error)) ([]byte, int, error) {
	words := Words(text, o)
	for _, w := range words {
		var err error
		if dst, err = indexWord(append(dst, ' '), []byte(w)); err != nil {
			return dst, 0, err
		}
	}
	return dst, len(words), nil
}

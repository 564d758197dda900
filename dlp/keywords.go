package dlp

import "strings"

// keywords finds the words that qualify a value nearby ("SSN", "DOB",
// "Dx"), by plain byte comparison: no expression, so looking around a
// candidate allocates nothing.
type keywords struct {
	words   []string  // normalized by normalizeKeyword
	first   [256]bool // bytes a word can start with, in either case
	longest int
}

func newKeywords(words []string) *keywords {
	k := &keywords{words: words}
	for _, w := range words {
		k.first[w[0]] = true
		k.first[upper(w[0])] = true
		k.longest = max(k.longest, len(w))
	}
	return k
}

// normalizeKeyword lower-cases the ASCII letters of w and turns each run
// of white space into one space, trimming both ends. Other bytes stay as
// they are, so a keyword matches them exactly.
func normalizeKeyword(w string) string {
	b := []byte(strings.Join(strings.Fields(w), " "))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// at returns the end of a keyword that occurs at v[i:] and stands apart
// from its neighbours (not "dob" in "adobe", not "birth" in "birthplace").
func (k *keywords) at(v []byte, i int) (int, bool) {
	if !k.first[v[i]] || i > 0 && sameRun(v[i-1], v[i]) {
		return 0, false
	}
	for _, w := range k.words {
		if end, ok := foldedAt(v, i, w); ok && (end == len(v) || !sameRun(v[end-1], v[end])) {
			return end, true
		}
	}
	return 0, false
}

// foldedAt returns the end of w if it occurs at v[i:], ignoring ASCII case;
// a space in w matches one or more white-space bytes.
func foldedAt(v []byte, i int, w string) (int, bool) {
	for j := 0; j < len(w); j++ {
		if w[j] == ' ' {
			if i >= len(v) || !isSpace(v[i]) {
				return 0, false
			}
			for i < len(v) && isSpace(v[i]) {
				i++
			}
			continue
		}
		if i >= len(v) || lower(v[i]) != w[j] {
			return 0, false
		}
		i++
	}
	return i, true
}

// in reports whether a keyword occurs anywhere in v.
func (k *keywords) in(v []byte) bool {
	for i := range v {
		if _, ok := k.at(v, i); ok {
			return true
		}
	}
	return false
}

// near reports whether a keyword ends at most before bytes ahead of
// v[s:e] or starts at most after bytes past it; a negative reach looks
// nowhere on that side. A keyword whose white space runs long may start
// too early to be seen: the search starts before+longest bytes back.
func (k *keywords) near(v []byte, s, e, before, after int) bool {
	if before >= 0 {
		for i := max(0, s-before-k.longest); i < s; i++ {
			if end, ok := k.at(v, i); ok && end <= s && s-end <= before {
				return true
			}
		}
	}
	if after >= 0 {
		for i := e; i < len(v) && i <= e+after; i++ {
			if _, ok := k.at(v, i); ok {
				return true
			}
		}
	}
	return false
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func upper(b byte) byte {
	if 'a' <= b && b <= 'z' {
		return b - ('a' - 'A')
	}
	return b
}

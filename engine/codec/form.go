package codec

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/phiguard/phiguard/policy"
)

// FormEdit returns the replacement for a selected form value (decoded).
// sel is the selector's position in the list given to RewriteForm.
type FormEdit func(sel int, value string) (string, error)

// RewriteForm rewrites an application/x-www-form-urlencoded body: every
// value of a field that a form: selector names is replaced by what edit
// returns (the field name is kept exactly as sent); every other byte is
// copied unchanged. counts[i] is how many values selector i picked.
//
// A field name is matched by what an app may read it as, not only as sent.
// Its readings are the percent-decoded name itself and, with t the name cut
// at its first NUL (PHP stops there) and trimmed of leading and trailing
// ASCII whitespace (space, \t, \n, \v, \f, \r; PHP drops leading spaces),
// for each s of t, t without its leading '[', ']' and '.' characters, and t
// without a leading '!':
//
//   - s, and each prefix of s that ends in ']' ("a[b][]" is read under "a[b]");
//   - the base: s up to its first '[' or ']' (PHP, Rack and qs read "Body[]",
//     "Body[0]" and "Body[x][y]" as nested under "Body"; Rack 2 and qs read
//     "[Body]" as "Body");
//   - the base up to its first '.' (qs with allowDots and Spring read
//     "Body.x" under "Body");
//   - the base with every ' ' and '.' replaced by '_' (PHP reads "Bo.dy" and
//     "Bo dy" as "Bo_dy");
//
// PHP's own reading of the name cut at NUL: leading spaces dropped, ' '
// and '.' replaced by '_' up to the first '[' and the name cut there, or,
// when no ']' follows that '[', the '[' replaced by '_' too and the rest kept
// as is or with ' ', '.' and '[' replaced by '_' (so "Bo[dy" reads as
// "Bo_dy" and "Bo_dy " as "Bo_dy_"); and, in bracket notation, every
// prefix of the key path Rack 2 and qs nest the name under, where '[', ']'
// and '.' separate keys and empty keys vanish ("msg[body", "[msg][body]",
// "msg[[body]]" and "msg.body" are all read under "msg[body]"). The '!'
// variant is Spring's default-value prefix: "!Body" sets Body when Body is
// absent. A selector's name is compared as written and in bracket notation
// (form:msg.body names the field msg[body] too).
//
// A field is selector i's when one of its readings equals the selector's
// name exactly (the first such selector when several do). A field with no
// such reading but one equal to a selected name ignoring letter case
// refuses the body with ErrAmbiguousKey; a field with a reading equal to a
// name in refused, in any letter case, refuses it with ErrRefusedKey.
//
// Only phiguard writes tokens: a field name, or the value of a field that
// is not selected, that may spell one (HasTokenMarker, after decoding)
// refuses the body with ErrPlantedToken. A selected value may hold one: it
// is sealed again. A body with a ';' (some servers split on it), an invalid
// percent-escape or invalid UTF-8 has no single meaning and is refused with
// ErrMalformed. No refusal's text holds a value from the body.
func RewriteForm(src []byte, sels []policy.Selector, edit FormEdit, refused ...string) ([]byte, []int, error) {
	counts := make([]int, len(sels))
	if bytes.IndexByte(src, ';') >= 0 {
		return nil, nil, malformed("';' in a form body")
	}
	out := make([]byte, 0, len(src)+len(src)/2)
	for n, pair := range bytes.Split(src, []byte{'&'}) {
		if n > 0 {
			out = append(out, '&')
		}
		if len(pair) == 0 {
			continue
		}
		rawKey, rawVal, _ := bytes.Cut(pair, []byte{'='})
		key, err := url.QueryUnescape(string(rawKey))
		if err != nil || !utf8.ValidString(key) {
			return nil, nil, malformed("invalid field name encoding in a form body")
		}
		val, err := url.QueryUnescape(string(rawVal))
		if err != nil || !utf8.ValidString(val) {
			return nil, nil, malformed("invalid value encoding in a form body")
		}
		if FormNameTooDeep(key) {
			return nil, nil, malformed("a form field name nests deeper than %d levels", MaxFormNameNesting)
		}
		sel, err := formSelector(formNameReadings(key), sels, refused)
		if err != nil {
			return nil, nil, err
		}
		if HasTokenMarker(key) || sel < 0 && HasTokenMarker(val) {
			return nil, nil, PlantedToken("a form field")
		}
		if sel < 0 {
			out = append(out, pair...)
			continue
		}
		repl, err := edit(sel, val)
		if err != nil {
			return nil, nil, err
		}
		counts[sel]++
		out = append(out, rawKey...)
		out = append(out, '=')
		out = append(out, url.QueryEscape(repl)...)
	}
	return out, counts, nil
}

// formSelector returns the index of the first form selector that one of a
// field's readings names, or -1; it refuses a field that a reading ties to
// a refused name, or to a selected name only by letter case.
func formSelector(readings []string, sels []policy.Selector, refused []string) (int, error) {
	for _, r := range refused {
		for _, k := range readings {
			if strings.EqualFold(k, r) {
				return -1, bodyError(ErrRefusedKey, "the form holds "+r+", which would override the request")
			}
		}
	}
	for i, s := range sels {
		if s.Form && slices.ContainsFunc(readings, func(k string) bool { return formNameIs(k, s, false) }) {
			return i, nil
		}
	}
	for _, s := range sels {
		if s.Form && slices.ContainsFunc(readings, func(k string) bool { return formNameIs(k, s, true) }) {
			return -1, bodyError(ErrAmbiguousKey, "a form field differs from the selected "+s.Text+" only by letter case")
		}
	}
	return -1, nil
}

// formNameIs reports whether the reading k of a field's name is the
// name form selector s takes (starts with it, for form:Prefix*), exactly
// or, with fold, in any letter case.
func formNameIs(k string, s policy.Selector, fold bool) bool {
	names := [2]string{s.FormName, canonicalFormName(s.FormName)}
	for _, n := range names {
		switch {
		case s.FormPrefix && !fold && strings.HasPrefix(k, n),
			s.FormPrefix && fold && len(k) >= len(n) && strings.EqualFold(k[:len(n)], n),
			!s.FormPrefix && !fold && k == n,
			!s.FormPrefix && fold && strings.EqualFold(k, n):
			return true
		}
	}
	return false
}

// HasForm reports whether sels has a form: selector.
func HasForm(sels []policy.Selector) bool {
	for _, s := range sels {
		if s.Form {
			return true
		}
	}
	return false
}

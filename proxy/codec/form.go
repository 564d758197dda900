package codec

import (
	"bytes"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/phiguard/phiguard/policy"
)

// FormEdit returns the replacement for a selected form value (decoded).
// sel is the selector's position in the list given to RewriteForm.
type FormEdit func(sel int, value string) (string, error)

// RewriteForm rewrites an application/x-www-form-urlencoded body: every
// value of a field that a form: selector names is replaced by what edit
// returns; every other byte is copied unchanged. A body with a ';' (some
// servers split on it), an invalid percent-escape or invalid UTF-8 has no
// single meaning and is refused, as is a field name that differs from a
// selected one only by letter case. A field named in refused, in any letter
// case, refuses the body with ErrRefusedKey. counts[i] is how many values
// selector i picked.
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
		for _, r := range refused {
			if strings.EqualFold(key, r) {
				return nil, nil, &BodyError{Kind: ErrRefusedKey, Reason: "the form holds " + r + ", which would override the request"}
			}
		}
		sel := -1
		for i, s := range sels {
			if !s.Form {
				continue
			}
			if key == s.FormName {
				sel = i
				break
			}
			if strings.EqualFold(key, s.FormName) {
				return nil, nil, &BodyError{Kind: ErrAmbiguousKey, Reason: "a form field differs from the selected " + s.Text + " only by letter case"}
			}
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

// HasForm reports whether sels has a form: selector.
func HasForm(sels []policy.Selector) bool {
	for _, s := range sels {
		if s.Form {
			return true
		}
	}
	return false
}

package codec

import (
	"slices"
	"strings"

	"github.com/phiguard/phiguard/policy"
)

// asciiSpace is the whitespace trimmed around a form field name.
const asciiSpace = " \t\n\v\f\r"

var (
	// phpBase is how PHP rewrites a variable name before its first '['.
	phpBase = strings.NewReplacer(" ", "_", ".", "_")
	// phpRest is how PHP 8 rewrites what follows an unclosed '['.
	phpRest = strings.NewReplacer(" ", "_", ".", "_", "[", "_")
)

// formNameReadings returns the distinct, non-empty names that common form
// parsers (PHP, Rack, qs, Spring) may read the decoded field name as, the
// name itself first. RewriteForm's doc lists them; in short, with t the
// name cut at its first NUL and trimmed of ASCII whitespace, for each s of
// t, t without its leading '[', ']' and '.', and t without a leading '!':
// s, each prefix of s that ends in ']', the base (s up to its first '[' or
// ']'), the base up to its first '.', and the base with ' ' and '.' read as
// '_'; then PHP's own reading of the cut name (see phpNames); then, in
// bracket notation, every prefix of the key path Rack 2 and qs read (see
// formPath) from t and from t without a leading '!'.
func formNameReadings(name string) []string {
	if name != "" && strings.IndexAny(name, "\x00 \t\n\v\f\r[].!") < 0 {
		return []string{name} // nothing for a parser to read differently
	}
	rs := make([]string, 0, 8)
	add := func(s string) {
		if s != "" && !slices.Contains(rs, s) {
			rs = append(rs, s)
		}
	}
	add(name)
	name, _, _ = strings.Cut(name, "\x00")
	t := strings.Trim(name, asciiSpace)
	for _, s := range [...]string{t, strings.TrimLeft(t, "[]."), strings.TrimPrefix(t, "!")} {
		add(s)
		if i := strings.IndexByte(s, '['); i >= 0 {
			for j := i; j < len(s); j++ {
				if s[j] == ']' {
					add(s[:j+1])
				}
			}
		}
		base := s
		if i := strings.IndexAny(s, "[]"); i >= 0 {
			base = s[:i]
		}
		add(base)
		if i := strings.IndexByte(base, '.'); i >= 0 {
			add(base[:i])
		}
		add(phpBase.Replace(base))
	}
	older, newer := phpNames(name)
	add(older)
	add(newer)
	for _, s := range [...]string{t, strings.TrimPrefix(t, "!")} {
		segs := formPath(s)
		for i := 1; i <= len(segs); i++ {
			add(bracketName(segs[:i]))
		}
	}
	return rs
}

// formPath splits a name into the keys Rack 2 and qs nest it under: '[',
// ']' and '.' separate keys, and empty keys vanish, so "msg[body",
// "msg]body", "[msg][body]", "msg[[body]]" and "msg.body" are all the path
// msg → body.
func formPath(name string) []string {
	return strings.FieldsFunc(name, func(r rune) bool { return r == '[' || r == ']' || r == '.' })
}

// bracketName writes a path in bracket notation: "msg[body]".
func bracketName(segs []string) string {
	var b strings.Builder
	for i, s := range segs {
		if i == 0 {
			b.WriteString(s)
			continue
		}
		b.WriteByte('[')
		b.WriteString(s)
		b.WriteByte(']')
	}
	return b.String()
}

// canonicalFormName is a selector's form name in bracket notation, so that
// form:msg.body and form:msg[body] name the same field.
func canonicalFormName(name string) string {
	if !strings.ContainsAny(name, "[].") {
		return name
	}
	return bracketName(formPath(name))
}

// phpNames returns the top-level name PHP gives a (NUL-free) field name:
// leading spaces dropped, ' ' and '.' read as '_' up to the first '[', and
// the name cut there; but when no ']' follows that '[', the '[' is read as
// '_' and the rest kept, as is (older PHP) or with ' ', '.' and '[' read as
// '_' (PHP 8). So "Bo[dy" is read as "Bo_dy" and "Bo_dy " as "Bo_dy_".
func phpNames(name string) (older, newer string) {
	name = strings.TrimLeft(name, " ")
	i := strings.IndexByte(name, '[')
	if i < 0 {
		m := phpBase.Replace(name)
		return m, m
	}
	head := phpBase.Replace(name[:i])
	rest := name[i+1:]
	if strings.IndexByte(rest, ']') >= 0 {
		return head, head
	}
	return head + "_" + rest, head + "_" + phpRest.Replace(rest)
}

// QueryNameSelected reports whether a query parameter called name (decoded)
// could be read by the app as a value one of sels protects. Rails, Laravel,
// Spring and ASP.NET merge the query into the same parameters as the body,
// so "?body=…" reaches the code that reads the body's "body". The match is
// wide on purpose, letter case ignored: a form name is compared through
// its readings (see RewriteForm); a JSON selector's first key ($.body,
// $.msg.body) is compared with the first key of the name's path, a
// descendant key ($..body) with every key of it, and a selector that starts
// with a wildcard ($.*, $[*]) takes every name.
func QueryNameSelected(name string, sels []policy.Selector) bool {
	readings := formNameReadings(name)
	for _, s := range sels {
		if s.Form {
			canon := canonicalFormName(s.FormName)
			for _, k := range readings {
				if strings.EqualFold(k, s.FormName) || strings.EqualFold(k, canon) {
					return true
				}
			}
			continue
		}
		if len(s.Steps) == 0 {
			continue
		}
		first := s.Steps[0]
		if first.Kind == policy.StepAny {
			return true
		}
		for _, k := range readings {
			path := formPath(k)
			if first.Kind == policy.StepChild && len(path) > 0 && strings.EqualFold(path[0], first.Name) {
				return true
			}
			if first.Kind == policy.StepDescendant && slices.ContainsFunc(path, func(seg string) bool { return strings.EqualFold(seg, first.Name) }) {
				return true
			}
		}
	}
	return false
}

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
//
// Callers refuse a name that FormNameTooDeep reports before asking; for
// one, only the name itself is returned.
func formNameReadings(name string) []string {
	if name != "" && strings.IndexAny(name, "\x00 \t\n\v\f\r[].!") < 0 || FormNameTooDeep(name) {
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
	for _, s := range [...]string{t, strings.TrimPrefix(t, "!"), phpFullName(name)} {
		canon, ends := bracketPath(formPath(s))
		for _, end := range ends {
			add(canon[:end])
		}
	}
	return rs
}

// MaxFormNameNesting is the most '[', ']' and '.' a form or query name may
// hold. Parsers stop nesting well before it (PHP's max_input_nesting_level
// is 64, Rack's limit 32 to 100, qs's depth 5); past it a name is refused,
// which also keeps reading a name linear in its length.
const MaxFormNameNesting = 64

// FormNameTooDeep reports whether a decoded name holds more separators than
// MaxFormNameNesting.
func FormNameTooDeep(name string) bool {
	n := 0
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '[', ']', '.':
			if n++; n > MaxFormNameNesting {
				return true
			}
		}
	}
	return false
}

// phpFullName is PHP's reading of a whole name, nested keys kept: leading
// spaces dropped and ' ' and '.' read as '_' before the first '[' ("patient
// note[text]" is patient_note → text).
func phpFullName(name string) string {
	name = strings.TrimLeft(name, " ")
	i := strings.IndexByte(name, '[')
	if i < 0 {
		return phpBase.Replace(name)
	}
	return phpBase.Replace(name[:i]) + name[i:]
}

// bracketPath writes a key path in bracket notation ("msg[body][0]") and
// returns where each of its prefixes ends, so every prefix is a substring.
func bracketPath(segs []string) (string, []int) {
	var b strings.Builder
	ends := make([]int, 0, len(segs))
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('[')
		}
		b.WriteString(s)
		if i > 0 {
			b.WriteByte(']')
		}
		ends = append(ends, b.Len())
	}
	return b.String(), ends
}

// formPath splits a name into the keys Rack 2 and qs nest it under: '[',
// ']' and '.' separate keys, and empty keys vanish, so "msg[body",
// "msg]body", "[msg][body]", "msg[[body]]" and "msg.body" are all the path
// msg → body.
// A key wrapped in quotes is read without them, as Spring reads map keys
// (msg['body'] is msg → body).
func formPath(name string) []string {
	segs := strings.FieldsFunc(name, func(r rune) bool { return r == '[' || r == ']' || r == '.' })
	for i, seg := range segs {
		if len(seg) >= 2 && (seg[0] == '\'' || seg[0] == '"') && seg[len(seg)-1] == seg[0] {
			segs[i] = seg[1 : len(seg)-1]
		}
	}
	return segs
}

// canonicalFormName is a selector's form name in bracket notation, so that
// form:msg.body and form:msg[body] name the same field.
func canonicalFormName(name string) string {
	if !strings.ContainsAny(name, "[].") {
		return name
	}
	canon, _ := bracketPath(formPath(name))
	return canon
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
			if slices.ContainsFunc(readings, func(k string) bool { return formNameIs(k, s, true) }) {
				return true
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

// QueryNameReads reports whether a parser could read the query parameter
// name as param: by letter case, brackets (q[], q[0]), white space or a
// prefix another framework strips.
func QueryNameReads(name, param string) bool {
	for _, k := range formNameReadings(name) {
		if strings.EqualFold(k, param) {
			return true
		}
	}
	return false
}

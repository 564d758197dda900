package policy

import (
	"fmt"
	"strings"
)

type segKind uint8

const (
	segLiteral segKind = iota
	segParam           // {name}: one segment, captured
	segRest            // **: zero or more trailing segments
)

type segment struct {
	kind segKind
	text string // literal text, or parameter name
}

// Template is a compiled route path: literal segments, {param} segments and
// an optional trailing **.
type Template struct {
	text   string
	segs   []segment
	params int // how many segments are {param}
}

// Params holds the path parameters of a matched route, in path order.
type Params []Param

// Param is one path parameter: its name in the template and the segment
// it took.
type Param struct{ Name, Value string }

// Get returns the value of the parameter called name.
func (p Params) Get(name string) (string, bool) {
	for _, kv := range p {
		if kv.Name == name {
			return kv.Value, true
		}
	}
	return "", false
}

func parseTemplate(s string) (Template, error) {
	if !strings.HasPrefix(s, "/") {
		return Template{}, fmt.Errorf("path %q must start with '/'", s)
	}
	if strings.ContainsAny(s, "%?#;\\\x00") {
		return Template{}, fmt.Errorf("path %q: write it decoded, without '%%', '?', '#', ';' or '\\'", s)
	}
	t := Template{text: s}
	if s == "/" {
		return t, nil
	}
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	seen := map[string]bool{}
	for i, part := range parts {
		switch {
		case part == "":
			if i == len(parts)-1 {
				continue // a trailing slash matches as if absent
			}
			return Template{}, fmt.Errorf("path %q has an empty segment", s)
		case part == "." || part == "..":
			return Template{}, fmt.Errorf("path %q has a dot segment", s)
		case part == "**":
			if i != len(parts)-1 {
				return Template{}, fmt.Errorf("path %q: ** may only be the last segment", s)
			}
			t.segs = append(t.segs, segment{kind: segRest})
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}") && strings.ContainsAny(part, ":=,"):
			name, _, _ := strings.Cut(part[1:], ":")
			return Template{}, fmt.Errorf("path %q: a parameter takes no pattern; write {%s}", s, strings.TrimRight(name, "=,}"))
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
			name := part[1 : len(part)-1]
			if !isIdent(name) {
				return Template{}, fmt.Errorf("path %q: parameter name %q must be letters, digits and '_'", s, name)
			}
			if seen[name] {
				return Template{}, fmt.Errorf("path %q names parameter %q twice", s, name)
			}
			seen[name] = true
			t.segs = append(t.segs, segment{kind: segParam, text: name})
			t.params++
		case strings.ContainsAny(part, "{}*"):
			if part == "*" {
				return Template{}, fmt.Errorf("path %q: '*' is not a segment here; write {name} for one segment, or ** as the last segment for any rest", s)
			}
			return Template{}, fmt.Errorf("path %q: segment %q mixes text with {, } or *; a parameter or ** is a whole segment", s, part)
		case foreignParam(part) != "":
			return Template{}, fmt.Errorf("path %q: %s", s, foreignParam(part))
		default:
			t.segs = append(t.segs, segment{kind: segLiteral, text: part})
		}
	}
	return t, nil
}

// foreignParam recognises a path parameter written in another
// framework's syntax, which phiguard would match as literal text (and so
// never), and says how to write it; "" for a plain literal.
func foreignParam(part string) string {
	switch {
	case len(part) > 1 && part[0] == ':' && isIdent(strings.TrimSuffix(part[1:], "?")):
		return fmt.Sprintf("%q is Express-style (a literal here, which no request matches); write {%s}", part, strings.TrimSuffix(part[1:], "?"))
	case len(part) > 2 && part[0] == '<' && part[len(part)-1] == '>':
		name := part[1 : len(part)-1]
		if _, after, ok := strings.Cut(name, ":"); ok {
			name = after
		}
		if name == "path" || strings.HasPrefix(part, "<path:") {
			return fmt.Sprintf("%q is Flask-style; write ** as the last segment for any rest", part)
		}
		return fmt.Sprintf("%q is Flask-style (a literal here, which no request matches); write {%s}", part, name)
	case strings.HasPrefix(part, "[...") && strings.HasSuffix(part, "]"), strings.HasPrefix(part, "[[...") && strings.HasSuffix(part, "]]"):
		return fmt.Sprintf("%q is a Next.js catch-all; write ** as the last segment", part)
	case len(part) > 2 && part[0] == '[' && part[len(part)-1] == ']' && isIdent(part[1:len(part)-1]):
		return fmt.Sprintf("%q is Next.js-style (a literal here, which no request matches); write {%s}", part, part[1:len(part)-1])
	case len(part) > 1 && part[0] == '$' && isIdent(part[1:]):
		return fmt.Sprintf("%q looks like a variable (a literal here, which no request matches); write {%s}", part, part[1:])
	}
	return ""
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// hasParam reports whether the template captures name.
func (t Template) hasParam(name string) bool {
	for _, s := range t.segs {
		if s.kind == segParam && s.text == name {
			return true
		}
	}
	return false
}

// match matches a canonical, decoded path (segments already split, a
// trailing empty segment dropped). Literals compare case-insensitively
// unless caseSensitive is set.
func (t Template) match(segs []string, caseSensitive bool) (Params, bool) {
	if !t.matches(segs, caseSensitive) {
		return nil, false
	}
	var params Params
	for i, s := range t.segs {
		if s.kind == segRest {
			break
		}
		if s.kind == segParam {
			if params == nil {
				params = make(Params, 0, t.params)
			}
			params = append(params, Param{s.text, segs[i]})
		}
	}
	return params, true
}

// matches reports whether the template takes segs, without allocating:
// the many routes that do not match cost no parameter maps.
func (t Template) matches(segs []string, caseSensitive bool) bool {
	for i, s := range t.segs {
		if s.kind == segRest {
			return true
		}
		if i >= len(segs) {
			return false
		}
		switch s.kind {
		case segLiteral:
			if caseSensitive && segs[i] != s.text || !caseSensitive && !strings.EqualFold(segs[i], s.text) {
				return false
			}
		case segParam:
			if segs[i] == "" {
				return false
			}
		}
	}
	return len(segs) == len(t.segs)
}

func (t Template) String() string { return t.text }

// covers reports whether t matches every path u matches: a route with t
// placed before one with u takes all of u's requests, whatever the
// parameters are called.
func (t Template) covers(u Template, caseSensitive bool) bool {
	for i, s := range t.segs {
		if s.kind == segRest {
			return true
		}
		if i >= len(u.segs) {
			return false
		}
		switch o := u.segs[i]; {
		case o.kind == segRest:
			return false
		case s.kind == segLiteral && (o.kind != segLiteral || caseSensitive && o.text != s.text || !caseSensitive && !strings.EqualFold(o.text, s.text)):
			return false
		}
	}
	return len(u.segs) == len(t.segs)
}

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
			return Template{}, fmt.Errorf("path %q: segment %q mixes text with {, } or *; a parameter or ** is a whole segment", s, part)
		default:
			t.segs = append(t.segs, segment{kind: segLiteral, text: part})
		}
	}
	return t, nil
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

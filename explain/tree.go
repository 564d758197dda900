package explain

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/policy"
)

// node is one value of a JSON body: where it is and what shape it has.
// text holds a string's content, for the checks explain makes (a token?
// index words? what DLP finds?); it is never shown.
type node struct {
	path     string // $.a[0]['odd key']
	kind     jsontext.Kind
	n        int // characters of a string; members of an object; elements of an array
	text     string
	name     string // the member name, for members
	member   bool
	children []*node
}

// typ says what a value is without saying what it holds: string(42),
// number, boolean, null, object(3 keys), array(2).
func (n *node) typ() string {
	switch n.kind {
	case '"':
		return fmt.Sprintf("string(%d)", n.n)
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '{':
		if n.n == 1 {
			return "object(1 key)"
		}
		return fmt.Sprintf("object(%d keys)", n.n)
	case '[':
		return fmt.Sprintf("array(%d)", n.n)
	}
	return "unknown"
}

// parseJSON reads one JSON value, strictly (no duplicate names, valid
// UTF-8), into a tree. Its errors never quote the body.
func parseJSON(b []byte) (*node, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	root, err := parseValue(dec, "$", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err == nil {
		return nil, errors.New("data after the JSON value")
	}
	return root, nil
}

func parseValue(dec *jsontext.Decoder, path string, depth int) (*node, error) {
	if depth > codec.MaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels", codec.MaxDepth)
	}
	switch dec.PeekKind() {
	case '{':
		dec.ReadToken()
		n := &node{path: path, kind: '{'}
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, errors.New("not valid JSON")
			}
			name := tok.String()
			child, err := parseValue(dec, path+memberPath(name), depth+1)
			if err != nil {
				return nil, err
			}
			child.name, child.member = name, true
			n.children = append(n.children, child)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, errors.New("not valid JSON")
		}
		n.n = len(n.children)
		return n, nil
	case '[':
		dec.ReadToken()
		n := &node{path: path, kind: '['}
		for dec.PeekKind() != ']' {
			child, err := parseValue(dec, path+"["+strconv.Itoa(len(n.children))+"]", depth+1)
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, child)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, errors.New("not valid JSON")
		}
		n.n = len(n.children)
		return n, nil
	}
	v, err := dec.ReadValue()
	if err != nil {
		return nil, errors.New("not valid JSON")
	}
	n := &node{path: path, kind: v.Kind()}
	if n.kind == '"' {
		s, err := jsontext.AppendUnquote(nil, v)
		if err != nil {
			return nil, errors.New("not valid JSON")
		}
		n.text = string(s)
		n.n = utf8.RuneCountInString(n.text)
	}
	return n, nil
}

// walk calls f on n and every value below it, in document order, until
// f returns false for a value (its children are then skipped).
func (n *node) walk(f func(*node) bool) {
	if !f(n) {
		return
	}
	for _, c := range n.children {
		c.walk(f)
	}
}

// index maps every path of the tree to its value.
func (n *node) index() map[string]*node {
	m := map[string]*node{}
	n.walk(func(c *node) bool { m[c.path] = c; return true })
	return m
}

// memberPath is a member's step in a path: .name when the selector syntax
// reads the name bare, else ['name'].
func memberPath(name string) string {
	if bareName(name) {
		return "." + name
	}
	return "['" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "']"
}

func bareName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// selectorText writes steps as a selector; arrays marks the steps taken
// over arrays, written [*] rather than .*.
func selectorText(steps []policy.Step, arrays map[int]bool) string {
	var b strings.Builder
	b.WriteByte('$')
	for i, st := range steps {
		switch st.Kind {
		case policy.StepChild:
			b.WriteString(memberPath(st.Name))
		case policy.StepAny:
			if arrays[i] {
				b.WriteString("[*]")
			} else {
				b.WriteString(".*")
			}
		case policy.StepDescendant:
			b.WriteString(".")
			b.WriteString(memberPath(st.Name))
		}
	}
	return b.String()
}

// markers stand for selected values while the codec shows where
// selectors pick: a random prefix no body holds, then the selector's
// position.
type markers struct{ prefix string }

func newMarkers() markers {
	b := make([]byte, 12)
	rand.Read(b)
	return markers{prefix: "\x00explain-" + hex.EncodeToString(b) + ":"}
}

func (m markers) edit(dst []byte, sel int, _ jsontext.Value) ([]byte, error) {
	return jsontext.AppendQuote(dst, m.prefix+strconv.Itoa(sel))
}

func (m markers) read(s string) (int, bool) {
	rest, ok := strings.CutPrefix(s, m.prefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil
}

// locateJSON returns the paths at which the selectors of sels pick
// values, as the engine's codec reads the body (the first selector that
// picks a value takes it; a value below a picked one is not picked
// again), each with the selector's position in sels. A body in which a
// selector picks a case variant of its key fails with the codec's
// refusal; locateEach then says which.
func locateJSON(body []byte, sels []policy.Selector) (map[string]int, error) {
	mk := newMarkers()
	out, _, err := codec.RewriteJSON(body, codec.NewMatcher(sels), mk.edit)
	if err != nil {
		return nil, err
	}
	root, err := parseJSON(out)
	if err != nil {
		return nil, err
	}
	found := map[string]int{}
	root.walk(func(n *node) bool {
		if n.kind == '"' {
			if sel, ok := mk.read(n.text); ok {
				found[n.path] = sel
			}
		}
		return true
	})
	return found, nil
}

// located is what one selector picks on its own, or why the codec
// refuses the body for it.
type located struct {
	paths   []string
	refusal error
}

// locateEach runs each selector of sels alone: for a body that the
// selectors together refuse, which of them refuses it, and what each
// other one picks. A value picked by an earlier selector, or below a value
// another one picks, is left to that one, as the codec does.
func locateEach(body []byte, sels []policy.Selector) ([]located, map[string]int) {
	each := make([]located, len(sels))
	taken := map[string]int{}
	for i, s := range sels {
		if s.Form || s.Query {
			continue
		}
		found, err := locateJSON(body, []policy.Selector{s})
		if err != nil {
			each[i].refusal = err
			continue
		}
		for p := range found {
			each[i].paths = append(each[i].paths, p)
		}
	}
	for i := range each {
		for _, p := range each[i].paths {
			if _, dup := taken[p]; !dup {
				taken[p] = i
			}
		}
	}
	for p := range taken {
		for q := range taken {
			if q != p && strings.HasPrefix(p, q) && (p[len(q)] == '.' || p[len(q)] == '[') {
				delete(taken, p)
				break
			}
		}
	}
	return each, taken
}

// pair is one field of a form body: its name as sent (decoded) and its
// value's length.
type pair struct {
	name  string
	value string
	ok    bool // the name and value decode
	empty bool // nothing between two '&'
	raw   string
}

func (p pair) typ() string { return fmt.Sprintf("string(%d)", utf8.RuneCountInString(p.value)) }

func parseForm(body []byte) []pair {
	var out []pair
	for _, raw := range strings.Split(string(body), "&") {
		if raw == "" {
			out = append(out, pair{empty: true})
			continue
		}
		k, v, _ := strings.Cut(raw, "=")
		name, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		out = append(out, pair{name: name, value: value, raw: raw,
			ok: err1 == nil && err2 == nil && utf8.ValidString(name) && utf8.ValidString(value)})
	}
	return out
}

// locateForm returns which selector of sels takes each field of a form
// body (-1: none), as the engine's codec reads its name, and the codec's
// refusal of each field it refuses.
func locateForm(fields []pair, sels []policy.Selector) ([]int, []error) {
	which := make([]int, len(fields))
	refused := make([]error, len(fields))
	for i, f := range fields {
		which[i] = -1
		if f.empty {
			continue
		}
		_, counts, err := codec.RewriteForm([]byte(f.raw), sels, func(int, string) (string, error) { return "", nil })
		if err != nil {
			refused[i] = err
			continue
		}
		for s, n := range counts {
			if n > 0 {
				which[i] = s
				break
			}
		}
	}
	return which, refused
}

// matchSteps returns the values below n that steps reach, exactly or,
// with fold, by names equal in any letter case: a selector's reach, for
// the hints explain gives when it finds nothing, and to point at the key
// a case-variant refusal is about.
func matchSteps(n *node, steps []policy.Step, fold bool) []*node {
	if len(steps) == 0 {
		return []*node{n}
	}
	var out []*node
	st := steps[0]
	for _, c := range n.children {
		switch st.Kind {
		case policy.StepChild:
			if c.member && nameEq(c.name, st.Name, fold) {
				out = append(out, matchSteps(c, steps[1:], fold)...)
			}
		case policy.StepAny:
			out = append(out, matchSteps(c, steps[1:], fold)...)
		case policy.StepDescendant:
			if c.member && nameEq(c.name, st.Name, fold) {
				out = append(out, matchSteps(c, steps[1:], fold)...)
			}
			out = append(out, matchSteps(c, steps, fold)...)
		}
	}
	return out
}

func nameEq(a, b string, fold bool) bool {
	if fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

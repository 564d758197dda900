package openapi

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/phiguard/phiguard/policy"
)

// DefaultSensitive are the property names that look like ePHI unless
// Options.Sensitive says otherwise.
//
// A property name is split into words: at every character that is not a
// letter or a digit, where a lower-case letter or a digit meets an
// upper-case one, and between letters and digits (patientName: patient
// name; DOB: dob; MediaUrl0: media url 0). It looks sensitive when a run
// of consecutive words, joined by '_', is a listed name, compared the
// same way (patient_name and patientName: name; dateOfBirth:
// date_of_birth) — unless its last word, digits aside, is id, ids, uuid,
// sid, url, uri, type, count, status or length: such a name refers to
// content or describes it rather than holds it (message_id, MessageSid,
// content_type, body_url, MessageStatus).
var DefaultSensitive = []string{
	"body", "message", "text", "note", "notes", "caption", "content", "description", "comment", "subject",
	"dob", "birth_date", "date_of_birth", "ssn", "mrn", "diagnosis", "diagnoses",
	"phone", "email", "address", "name", "first_name", "last_name",
}

// ParseSensitive reads the -sensitive flag: "" is DefaultSensitive;
// "a,b" replaces it with a and b; "+a,b" adds a and b to it. A name is
// letters, digits, '_' and '-', written in any case or style
// (dateOfBirth is date_of_birth).
func ParseSensitive(arg string) ([]string, error) {
	if arg == "" {
		return DefaultSensitive, nil
	}
	extra, add := strings.CutPrefix(arg, "+")
	var names []string
	if add {
		names = slices.Clone(DefaultSensitive)
	}
	for n := range strings.SplitSeq(extra, ",") {
		n = strings.TrimSpace(n)
		if n == "" || strings.ContainsFunc(n, func(r rune) bool {
			return r != '_' && r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}) {
			return nil, fmt.Errorf("want names of letters, digits, '_' and '-', separated by commas, got %q", n)
		}
		names = append(names, n)
	}
	return names, nil
}

// nameSet matches property names against sensitive names, word by word.
type nameSet map[string]bool

func newNameSet(names []string) nameSet {
	set := nameSet{}
	for _, n := range names {
		set[strings.Join(words(n), "_")] = true
	}
	return set
}

// has reports whether a property name looks sensitive (see
// DefaultSensitive for the rule).
func (set nameSet) has(name string) bool {
	w := words(name)
	for len(w) > 0 && isDigits(w[len(w)-1]) {
		w = w[:len(w)-1]
	}
	if len(w) == 0 {
		return false
	}
	switch w[len(w)-1] {
	case "id", "ids", "uuid", "sid", "url", "uri", "type", "count", "status", "length":
		if len(w) > 1 {
			return false
		}
	}
	for i := range w {
		for j := i + 1; j <= len(w); j++ {
			if set[strings.Join(w[i:j], "_")] {
				return true
			}
		}
	}
	return false
}

// words splits a name into lower-case words (see nameSet.has).
func words(name string) []string {
	var out []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if len(cur) > 0 {
			prev := cur[len(cur)-1]
			switch {
			case unicode.IsDigit(r) != unicode.IsDigit(prev):
				flush()
			case unicode.IsUpper(r) && !unicode.IsUpper(prev):
				flush()
			case unicode.IsUpper(r) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
				flush() // HTTPServer: http server
			}
		}
		cur = append(cur, r)
	}
	flush()
	return out
}

func isDigits(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsDigit(r) })
}

// elemKind is a step of a property's path in a body.
type elemKind uint8

const (
	member  elemKind = iota // a named member (or form field)
	element                 // an array's element
	value                   // a map's value, under a key the schema does not name
)

type elem struct {
	kind elemKind
	name string
}

// property is a named member somewhere in a body.
type property struct {
	path []elem
	text string // $.data[*].name, or form:Name
}

// collector lists the named members of a body's schema, shallowest
// first, at most maxMembers of them.
type collector struct {
	response  bool // the body is a response: writeOnly members are left out (readOnly ones in requests)
	form      bool // a form: its fields, the top level's members
	seen      map[string]bool
	props     []property
	truncated bool // more members than maxMembers, or deeper than MaxSelectorSteps
}

// maxMembers bounds the members listed in one body: schemas that share
// components nest into more paths than anyone reads.
const maxMembers = 2000

// visit is a schema to list the members of, where it sits in the body,
// and the schemas above it there (a cycle ends where one repeats).
type visit struct {
	ref   *openapi3.SchemaRef
	path  []elem
	above []*openapi3.Schema
}

func (c *collector) collect(root *openapi3.SchemaRef) {
	queue := []visit{{ref: root}}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		if v.ref == nil || v.ref.Value == nil || slices.Contains(v.above, v.ref.Value) {
			continue
		}
		if len(v.path) >= policy.MaxSelectorSteps {
			c.truncated = true
			continue
		}
		s := v.ref.Value
		above := append(slices.Clip(v.above), s)
		next := func(ref *openapi3.SchemaRef, e elem) {
			queue = append(queue, visit{ref, append(slices.Clip(v.path), e), above})
		}
		for _, b := range branches(s) {
			queue = append(queue, visit{b, v.path, above})
		}
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			p := s.Properties[name]
			if p != nil && p.Value != nil && (c.response && p.Value.WriteOnly || !c.response && p.Value.ReadOnly) {
				continue
			}
			at := append(slices.Clip(v.path), elem{member, name})
			if text := c.text(at); !c.seen[text] {
				if len(c.props) == maxMembers {
					c.truncated = true
					return
				}
				c.seen[text] = true
				c.props = append(c.props, property{at, text})
			}
			if !c.form {
				next(p, elem{member, name})
			}
		}
		if c.form {
			continue
		}
		if s.Items != nil {
			next(s.Items, elem{kind: element})
		}
		for _, p := range s.PrefixItems {
			next(p, elem{kind: element})
		}
		if s.AdditionalProperties.Schema != nil {
			next(s.AdditionalProperties.Schema, elem{kind: value})
		}
		for _, pat := range slices.Sorted(maps.Keys(s.PatternProperties)) {
			next(s.PatternProperties[pat], elem{kind: value})
		}
	}
}

func (c *collector) text(path []elem) string {
	if c.form {
		return "form:" + path[0].name
	}
	var b strings.Builder
	b.WriteByte('$')
	for _, e := range path {
		switch e.kind {
		case member:
			b.WriteString(memberText(e.name))
		case element:
			b.WriteString("[*]")
		case value:
			b.WriteString(".*")
		}
	}
	return b.String()
}

// covers reports whether one of sels selects the property or a value
// that holds it (a selected object is replaced whole).
func covers(sels []policy.Selector, p property, form bool) bool {
	for _, s := range sels {
		switch {
		case s.Query || s.Form != form:
		case form:
			if name := p.path[0].name; s.FormPrefix && strings.HasPrefix(name, s.FormName) || !s.FormPrefix && name == s.FormName {
				return true
			}
		case selects(s.Steps, p.path):
			return true
		}
	}
	return false
}

// selects runs steps over path as phiguard's matcher runs them over a
// body: true when the selector completes at the property or above it.
// A map's value has a key the schema does not name: only * and .. steps
// pass it.
func selects(steps []policy.Step, path []elem) bool {
	states := map[int]bool{0: true}
	for _, e := range path {
		next := map[int]bool{}
		for j := range states {
			switch st := steps[j]; st.Kind {
			case policy.StepChild:
				if e.kind == member && e.name == st.Name {
					next[j+1] = true
				}
			case policy.StepAny:
				next[j+1] = true
			case policy.StepDescendant:
				next[j] = true
				if e.kind == member && e.name == st.Name {
					next[j+1] = true
				}
			}
		}
		if next[len(steps)] {
			return true
		}
		delete(next, len(steps))
		states = next
	}
	return false
}

// checkSensitive reports the members of op's bodies whose names look
// sensitive and that no selector of its route covers: encrypt_request or
// search_request in the request, decrypt_response in 2xx responses.
func (c *checker) checkSensitive(op *operation) {
	r := op.route
	if r.Deny != "" {
		return // refused: nothing reaches the app
	}
	request := slices.Concat(r.EncryptRequest, r.SearchRequest)
	reported := map[string]bool{}
	for _, b := range bodies(op.op) {
		col := &collector{response: b.response, form: b.form, seen: map[string]bool{}}
		col.collect(b.schema)
		if col.truncated {
			c.add(Finding{Severity: Warning, Location: op.String() + " " + routeName(r), path: op.path, method: op.method, route: r.Index,
				Message: fmt.Sprintf("the %s body nests past %d members or %d levels: only the first %d members, shallowest first, were checked for sensitive names",
					sideName(b.response), maxMembers, policy.MaxSelectorSteps, len(col.props))})
		}
		slices.SortFunc(col.props, func(a, b property) int { return strings.Compare(a.text, b.text) })
		for _, p := range col.props {
			if !c.sensitive.has(p.path[len(p.path)-1].name) {
				continue
			}
			side, lists, sels := "request", "encrypt_request or search_request", request
			if b.response {
				side, lists, sels = "response", "decrypt_response", r.DecryptResponse
			}
			if covers(sels, p, b.form) {
				continue
			}
			key := side + " " + p.text
			if reported[key] {
				continue
			}
			reported[key] = true
			msg := fmt.Sprintf("%s %s %s looks sensitive, and no %s selector of the route covers it", side, fieldWord(b.form), p.text, lists)
			if b.response && !r.AuthRequired {
				msg = fmt.Sprintf("response member %s looks sensitive; the route has no caller (auth: none), so it goes out as the app stored it", p.text)
			}
			c.add(Finding{Severity: Warning, Location: op.String() + " " + routeName(r), path: op.path, method: op.method, route: r.Index, Message: msg})
		}
	}
}

func sideName(response bool) string {
	if response {
		return "response"
	}
	return "request"
}

func fieldWord(form bool) string {
	if form {
		return "field"
	}
	return "member"
}

// body is a request body or a 2xx response body of an operation, as
// JSON or as a form.
type body struct {
	schema   *openapi3.SchemaRef
	response bool
	form     bool
}

// bodies lists op's request bodies (JSON and form) and success response
// bodies (JSON; see successCodes), in a stable order.
func bodies(op *openapi3.Operation) []body {
	var out []body
	if op.RequestBody != nil && op.RequestBody.Value != nil {
		content := op.RequestBody.Value.Content
		for _, mt := range slices.Sorted(maps.Keys(content)) {
			if m := content[mt]; m != nil && m.Schema != nil {
				switch {
				case isJSON(mt, true):
					out = append(out, body{schema: m.Schema})
				case isForm(mt):
					out = append(out, body{schema: m.Schema, form: true})
				}
			}
		}
	}
	for _, code := range successCodes(op) {
		ref := op.Responses.Value(code)
		if ref == nil || ref.Value == nil {
			continue
		}
		for _, mt := range slices.Sorted(maps.Keys(ref.Value.Content)) {
			if m := ref.Value.Content[mt]; m != nil && m.Schema != nil && isJSON(mt, false) {
				out = append(out, body{schema: m.Schema, response: true})
			}
		}
	}
	return out
}

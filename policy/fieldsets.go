package policy

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/phiguard/phiguard/internal/suggest"
)

// FieldSet is one named list of selectors under fields:, which routes
// name in place of the selectors (encrypt_request: [message_fields]).
type FieldSet struct {
	Name      string
	Selectors []string
}

// FieldSets are the fields: section, in file order: a mapping from each
// set's name to its selectors.
type FieldSets []FieldSet

// fieldSets decodes fields: { name: [selector, …], … }.
func (d *decoder) fieldSets(n *yaml.Node, path string, sets *FieldSets) {
	if n.Kind != yaml.MappingNode {
		d.ps.add(path, "want a mapping of names to lists of selectors, got %s", kindName(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := childPath(path, k.Value)
		if prev, dup := seen[k.Value]; dup {
			d.ps.at(k.Line, k.Column, p, "duplicate key (first set on line %d)", prev)
			continue
		}
		seen[k.Value] = k.Line
		var list []string
		d.decode(v, p, reflect.ValueOf(&list).Elem())
		*sets = append(*sets, FieldSet{Name: k.Value, Selectors: list})
	}
}

// compileFieldSets validates each set where it is defined, so that an
// error in a set shared by ten routes is reported once.
func (p *Policy) compileFieldSets(ps *problems) {
	p.fieldSets = map[string][]Field{}
	p.fieldSetUsed = map[string]bool{}
	for _, set := range p.File.Fields {
		path := "fields." + set.Name
		switch {
		case !isFieldSetName(set.Name):
			ps.add(path, "a field set's name is letters, digits, '_' and '-', starting with a letter (message_fields)")
			continue
		case len(set.Selectors) == 0:
			ps.add(path, "an empty field set selects nothing")
			continue
		}
		var fields []Field
		seen := map[string]bool{}
		for j, text := range set.Selectors {
			at := fmt.Sprintf("%s[%d]", path, j)
			if strings.HasPrefix(text, "query:") {
				ps.add(at, "query: selectors are search terms (search_request), each with its searchable: not a field set's")
				continue
			}
			if _, err := ParseSelector(text); err != nil {
				ps.add(at, "%v", err)
				continue
			}
			if seen[text] {
				ps.add(at, "selector %q is listed twice", text)
				continue
			}
			seen[text] = true
			fields = append(fields, Field{Field: text})
		}
		p.fieldSets[set.Name] = fields
	}
}

// warnUnusedFieldSets notes sets no route names.
func (p *Policy) warnUnusedFieldSets(ps *problems) {
	for _, set := range p.File.Fields {
		if _, ok := p.fieldSets[set.Name]; ok && !p.fieldSetUsed[set.Name] {
			ps.warn("fields."+set.Name, "no route names this field set")
		}
	}
}

// expandFieldSets replaces each item of a route's list that names a field
// set with the set's selectors. from[i] is the written item the i-th
// field came from; setOf[i] the set's name, "" for a written selector.
func (p *Policy) expandFieldSets(ps *problems, path string, fields []Field) (out []Field, from []int, setOf []string) {
	for j, f := range fields {
		plain := f.Searchable == "" && f.Normalize == "" && f.Join == ""
		if !plain || !isFieldSetName(f.Field) {
			out, from, setOf = append(out, f), append(from, j), append(setOf, "")
			continue
		}
		set, ok := p.fieldSets[f.Field]
		if !ok {
			if p.fieldSetDefined(f.Field) {
				continue // its own errors were reported under fields:
			}
			msg := fmt.Sprintf("%q is neither a selector ($.%s, form:%s) nor a field set", f.Field, f.Field, f.Field)
			if s := suggest.Closest(f.Field, p.fieldSetNames()); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else if len(p.File.Fields) == 0 {
				msg += " (fields: defines none)"
			}
			ps.add(fmt.Sprintf("%s[%d]", path, j), "%s", msg)
			continue
		}
		p.fieldSetUsed[f.Field] = true
		for _, sf := range set {
			out, from, setOf = append(out, sf), append(from, j), append(setOf, f.Field)
		}
	}
	return out, from, setOf
}

func (p *Policy) fieldSetDefined(name string) bool {
	for _, s := range p.File.Fields {
		if s.Name == name {
			return true
		}
	}
	return false
}

func (p *Policy) fieldSetNames() []string {
	var names []string
	for _, s := range p.File.Fields {
		names = append(names, s.Name)
	}
	return names
}

// isFieldSetName reports whether s can name a field set: no selector
// starts that way ($, form:, query:).
func isFieldSetName(s string) bool {
	if s == "" || !('a' <= s[0]|0x20 && s[0]|0x20 <= 'z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

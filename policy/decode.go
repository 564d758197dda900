package policy

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/phiguard/phiguard/internal/suggest"
)

// decoder maps a yaml.Node tree onto the config structs strictly: unknown
// keys, duplicate keys and wrong scalar types are problems, and every value's
// position is recorded under its key path for later validation messages.
type decoder struct {
	ps *problems
}

var (
	durationType        = reflect.TypeOf(time.Duration(0))
	fieldType           = reflect.TypeOf(Field{})
	fieldSetsType       = reflect.TypeOf(FieldSets{})
	timeType            = reflect.TypeOf(time.Time{})
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.ps.pos[path] = position{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the zero value: defaults apply
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, path, v.Elem())
		return
	}
	if v.Type() == fieldType && n.Kind == yaml.ScalarNode {
		// A field written as a plain selector.
		if s, ok := d.scalar(n, path, "!!str", "a selector, or a mapping with field:"); ok {
			v.Set(reflect.ValueOf(Field{Field: s}))
		}
		return
	}
	if v.Type() == fieldSetsType {
		d.fieldSets(n, path, v.Addr().Interface().(*FieldSets))
		return
	}
	if v.Type() == durationType {
		d.duration(n, path, v)
		return
	}
	if v.Type() == timeType {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!timestamp" {
			n.Tag = "!!str" // read as written, in RFC 3339 below
		}
		if s, ok := d.scalar(n, path, "!!str", "a time such as 2026-11-01T00:00:00Z"); ok {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				d.ps.add(path, "want a time in RFC 3339 with its zone, such as 2026-11-01T00:00:00Z, got %q", s)
				return
			}
			v.Set(reflect.ValueOf(t))
		}
		return
	}
	if reflect.PointerTo(v.Type()).Implements(textUnmarshalerType) {
		if s, ok := d.scalar(n, path, "!!str", "a string"); ok {
			if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				d.ps.add(path, "%v", err)
			}
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, path, v)
	case reflect.Slice:
		d.sequence(n, path, v)
	case reflect.String:
		if s, ok := d.scalar(n, path, "!!str", "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := d.scalar(n, path, "!!bool", "true or false"); ok {
			b, _ := strconv.ParseBool(strings.ToLower(s))
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int64:
		if s, ok := d.scalar(n, path, "!!int", "a whole number"); ok {
			i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
			if err != nil {
				d.ps.add(path, "want a whole number, got %q", s)
				return
			}
			v.SetInt(i)
		}
	default:
		d.ps.add(path, "internal: cannot decode into %s", v.Type())
	}
}

func (d *decoder) scalar(n *yaml.Node, path, tag, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.ps.add(path, "want %s, got %s", want, kindName(n))
		return "", false
	}
	if n.Tag != tag {
		switch {
		case tag == "!!str" && want == "a string":
			d.ps.add(path, "want a string, got %s %s (quote it to make it a string)", strings.TrimPrefix(n.Tag, "!!"), n.Value)
		case tag == "!!str":
			d.ps.add(path, "want %s, got %s %s", want, strings.TrimPrefix(n.Tag, "!!"), n.Value)
		default:
			d.ps.add(path, "want %s, got %q", want, n.Value)
		}
		return "", false
	}
	return n.Value, true
}

func (d *decoder) duration(n *yaml.Node, path string, v reflect.Value) {
	s, ok := d.scalar(n, path, "!!str", "a duration such as 30s or 15m")
	if !ok {
		return
	}
	dur, err := parseDuration(s)
	if err != nil {
		d.ps.add(path, "want a duration such as 30s, 15m or 90d, got %q", s)
		return
	}
	v.SetInt(int64(dur))
}

// parseDuration is time.ParseDuration, plus whole days ("90d"), which
// key schedules and retention are written in.
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > 100*366 {
			return 0, fmt.Errorf("bad day count %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "something else"
}

func childPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldsOf lists a struct's fields by their yaml key.
func fieldsOf(t reflect.Type) (map[string]int, []string) {
	idx := make(map[string]int, t.NumField())
	var names []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		idx[name] = i
		names = append(names, name)
	}
	return idx, names
}

func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.ps.add(path, "want a mapping, got %s", kindName(n))
		return
	}
	idx, names := fieldsOf(v.Type())
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		if prev, dup := seen[key]; dup {
			d.ps.at(k.Line, k.Column, childPath(path, key), "duplicate key (first set on line %d)", prev)
			continue
		}
		seen[key] = k.Line
		fi, ok := idx[key]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", key)
			if s := suggest.Closest(key, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.ps.at(k.Line, k.Column, childPath(path, key), "%s", msg)
			continue
		}
		d.decode(val, childPath(path, key), v.Field(fi))
	}
}

func (d *decoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.ps.add(path, "want a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
	}
	v.Set(s)
}

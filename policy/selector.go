package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// StepKind is one step of a JSON selector.
type StepKind uint8

const (
	// StepChild matches an object member with the step's name: .name or ['name'].
	StepChild StepKind = iota + 1
	// StepAny matches any object member or array element: [*] or .*.
	StepAny
	// StepDescendant matches a member with the step's name at any depth
	// below the current value: ..name or ..['name'].
	StepDescendant
)

// Step is one step of a JSON selector.
type Step struct {
	Kind StepKind
	Name string
}

// MaxSelectorSteps bounds a selector's length; matchers rely on it.
const MaxSelectorSteps = 32

// Selector names the values of a body that an action touches: a JSONPath
// subset ($.a.b, $.a[*].b, $..b, $['odd key']) for JSON bodies, or form:Name
// (form:Prefix* for every field whose name starts with Prefix) for
// application/x-www-form-urlencoded bodies.
type Selector struct {
	// Text is the selector as written in the policy; audit records name it.
	Text string
	// Form is set for form:Name selectors; FormName is then the field.
	// With FormPrefix (form:Name*), every field whose name starts with
	// FormName is selected (Twilio's MediaUrl0…MediaUrl9: form:MediaUrl*).
	Form       bool
	FormName   string
	FormPrefix bool
	// Steps is the JSON path below the root, for JSON selectors.
	Steps []Step
	// Query is set for query:Name selectors (search_request only);
	// QueryName is then the parameter.
	Query     bool
	QueryName string
	// Search is SearchExact or SearchWords for a searchable value of
	// encrypt_request and for every search term of search_request; empty
	// for a randomized token.
	Search string
	// Normalize is the normalization of an exact value (search.Normalize).
	Normalize string
	// Join goes between the index words of a words search term.
	Join string
	// at is where the policy writes it (routes[2].encrypt_request[1]),
	// for messages about it; a field set's name when it came from one.
	at string
}

// Searchable modes of a field.
const (
	SearchExact = "exact"
	SearchWords = "words"
)

func (s Selector) String() string { return s.Text }

// ParseSelector parses one selector.
func ParseSelector(text string) (Selector, error) {
	if name, ok := strings.CutPrefix(text, "form:"); ok {
		if name == "" {
			return Selector{}, fmt.Errorf("form selector %q names no field", text)
		}
		if !utf8.ValidString(name) || strings.ContainsAny(name, "&=;") {
			return Selector{}, fmt.Errorf("form selector %q: a field name cannot hold '&', '=' or ';'", text)
		}
		prefix, wild := strings.CutSuffix(name, "*")
		if strings.Contains(prefix, "*") {
			return Selector{}, fmt.Errorf("form selector %q: '*' may only end the name (form:MediaUrl* selects MediaUrl0, MediaUrl1…)", text)
		}
		return Selector{Text: text, Form: true, FormName: prefix, FormPrefix: wild}, nil
	}
	if !strings.HasPrefix(text, "$") {
		return Selector{}, fmt.Errorf("unknown selector syntax %q: start with $ (JSON) or form: (form fields)", text)
	}
	if name, fixed, ok := paramStep(text); ok {
		return Selector{}, fmt.Errorf("selector %q: {%s} is matched as a literal key, never as the path parameter: for an object keyed by ids (a map-keyed collection) write %q", text, name, fixed)
	}
	p := selectorParser{src: text, i: 1}
	var steps []Step
	for p.i < len(p.src) {
		st, err := p.step()
		if err != nil {
			return Selector{}, fmt.Errorf("unknown selector syntax %q: %v", text, err)
		}
		steps = append(steps, st)
		if len(steps) > MaxSelectorSteps {
			return Selector{}, fmt.Errorf("selector %q has more than %d steps", text, MaxSelectorSteps)
		}
	}
	if len(steps) == 0 {
		return Selector{}, fmt.Errorf("selector %q selects the whole body; name at least one field", text)
	}
	return Selector{Text: text, Steps: steps}, nil
}

type selectorParser struct {
	src string
	i   int
}

func (p *selectorParser) step() (Step, error) {
	switch {
	case strings.HasPrefix(p.src[p.i:], ".."):
		p.i += 2
		if p.i < len(p.src) && p.src[p.i] == '[' {
			st, err := p.bracket()
			if err != nil {
				return Step{}, err
			}
			if st.Kind != StepChild {
				return Step{}, fmt.Errorf("'..' must be followed by a name")
			}
			return Step{Kind: StepDescendant, Name: st.Name}, nil
		}
		name, err := p.name()
		if err != nil {
			return Step{}, fmt.Errorf("'..' must be followed by a name")
		}
		return Step{Kind: StepDescendant, Name: name}, nil
	case p.src[p.i] == '.':
		p.i++
		if p.i < len(p.src) && p.src[p.i] == '*' {
			p.i++
			return Step{Kind: StepAny}, nil
		}
		name, err := p.name()
		if err != nil {
			return Step{}, err
		}
		return Step{Kind: StepChild, Name: name}, nil
	case p.src[p.i] == '[':
		return p.bracket()
	}
	return Step{}, fmt.Errorf("unexpected %q at offset %d", p.src[p.i], p.i)
}

// name reads a dot-notation member name: letters, digits, '_' and '-'.
func (p *selectorParser) name() (string, error) {
	start := p.i
	for p.i < len(p.src) {
		c := p.src[p.i]
		if c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			p.i++
			continue
		}
		break
	}
	if p.i == start {
		if p.i < len(p.src) {
			return "", fmt.Errorf("a name cannot hold %q; use ['...'] for it", p.src[p.i])
		}
		return "", fmt.Errorf("missing name after '.'")
	}
	return p.src[start:p.i], nil
}

// bracket reads [*], ['name'] or ["name"].
func (p *selectorParser) bracket() (Step, error) {
	p.i++ // '['
	if strings.HasPrefix(p.src[p.i:], "*]") {
		p.i += 2
		return Step{Kind: StepAny}, nil
	}
	if p.i >= len(p.src) || (p.src[p.i] != '\'' && p.src[p.i] != '"') {
		return Step{}, fmt.Errorf("brackets take * or a quoted name (filters, slices and indexes are not supported)")
	}
	quote := p.src[p.i]
	p.i++
	var b strings.Builder
	for {
		if p.i >= len(p.src) {
			return Step{}, fmt.Errorf("unterminated quoted name")
		}
		c := p.src[p.i]
		p.i++
		if c == quote {
			break
		}
		if c == '\\' {
			if p.i >= len(p.src) {
				return Step{}, fmt.Errorf("unterminated escape")
			}
			e := p.src[p.i]
			p.i++
			if e != '\\' && e != '\'' && e != '"' {
				return Step{}, fmt.Errorf("unknown escape \\%c", e)
			}
			c = e
		}
		b.WriteByte(c)
	}
	if p.i >= len(p.src) || p.src[p.i] != ']' {
		return Step{}, fmt.Errorf("missing ']' after quoted name")
	}
	p.i++
	name := b.String()
	if name == "" || !utf8.ValidString(name) {
		return Step{}, fmt.Errorf("quoted name must be non-empty UTF-8")
	}
	return Step{Kind: StepChild, Name: name}, nil
}

// paramStep finds a step that names a path parameter, {name}, in any
// notation (.{name}, [{name}], ['{name}'], ["{name}"]): selectors match
// keys as written, so it would match only a key spelled "{name}". It
// returns the name and the selector with each such step written * (the
// map-keyed collection it is meant for).
func paramStep(text string) (name, fixed string, ok bool) {
	forms := []struct{ open, close string }{{"['{", "}']"}, {`["{`, `}"]`}, {"[{", "}]"}, {".{", "}"}}
	fixed = text
	for {
		at, which, end := -1, 0, 0
		for k, f := range forms {
			i := strings.Index(fixed, f.open)
			if i < 0 || at >= 0 && i >= at {
				continue
			}
			rest := fixed[i+len(f.open):]
			j := strings.Index(rest, f.close)
			if j < 0 || !isIdent(rest[:j]) {
				continue
			}
			at, which, end = i, k, i+len(f.open)+j
		}
		if at < 0 {
			return name, fixed, ok
		}
		if name == "" {
			name = fixed[at+len(forms[which].open) : end]
		}
		fixed = fixed[:at] + ".*" + fixed[end+len(forms[which].close):]
		ok = true
	}
}

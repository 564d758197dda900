package openapi

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/phiguard/phiguard/policy"
)

// verdict is what a schema says of a selector, weakest first.
type verdict uint8

const (
	// absent: no value the schema describes has it.
	absent verdict = iota
	// mapKey: only a literal key of a map (additionalProperties) could
	// hold it, and the description lists no keys.
	mapKey
	// unknown: the schema is missing or free-form there; it proves nothing.
	unknown
	// present: a value the schema describes may have it.
	present
)

// result is a verdict, and for absent (or mapKey) where the walk stopped.
type result struct {
	v verdict
	// where names the body the walk was in: "the request body
	// (application/json)", "the 201 response".
	where string
	// body says why there is no body to walk, when there is none.
	body string
	miss miss
}

// miss is where a selector left the schema.
type miss struct {
	// depth is how many steps matched before the one that failed; -1
	// when nothing is known (a cycle), -2 before any body was walked.
	depth int
	// key is the member (or form field, or prefix) the failed step looked for.
	key string
	// names are the members the schema has there; what describes a value
	// that is not an object ("a string").
	names    []string
	patterns []string // patternProperties there
	what     string
	// folded is a member equal to key but for letter case.
	folded string
	// anyDepth: a ..key step found key at no depth.
	anyDepth bool
	// schema is the component the schema there is, if it is one.
	schema string
}

func better(a, b result) result {
	switch {
	case b.v > a.v:
		return b
	case b.v < a.v || a.v != absent:
		return a
	case b.miss.depth > a.miss.depth:
		return b
	case b.miss.depth < a.miss.depth:
		return a
	}
	// Two misses at the same step: what either schema has. The lists
	// may be a remembered walk's: they are copied, never changed.
	a.miss.names, a.miss.patterns = slices.Clone(a.miss.names), slices.Clone(a.miss.patterns)
	for _, n := range b.miss.names {
		if !slices.Contains(a.miss.names, n) {
			a.miss.names = append(a.miss.names, n)
		}
	}
	slices.Sort(a.miss.names)
	for _, p := range b.miss.patterns {
		if !slices.Contains(a.miss.patterns, p) {
			a.miss.patterns = append(a.miss.patterns, p)
		}
	}
	slices.Sort(a.miss.patterns)
	a.miss.what = cmp.Or(a.miss.what, b.miss.what)
	a.miss.folded = cmp.Or(a.miss.folded, b.miss.folded)
	if a.miss.schema != b.miss.schema {
		a.miss.schema = "" // several schemas: none names them all
	}
	a.where = cmp.Or(a.where, b.where)
	return a
}

// wstep is a step of a selector as the walk takes it: a JSON step, or a
// form field (a StepChild, prefix for form:Prefix*).
type wstep struct {
	kind   policy.StepKind
	name   string
	prefix bool
}

// walker walks one selector through schemas.
type walker struct {
	steps []wstep
	busy  map[busyKey]bool // the (schema, step) pairs on the walk's path: cycles end there
	// memo holds finished walks: a schema shared by many members is
	// walked once. A walk that met a cycle (cuts grew meanwhile) may have
	// missed what the cycle leads back to: it is kept only when its
	// verdict cannot grow (present, unknown).
	memo map[busyKey]result
	cuts int
	// budget bounds the walks of one selector through one body: past
	// it, the walk says unknown, which proves nothing and reports nothing.
	budget     int
	structured map[*openapi3.Schema]bool
}

// walkBudget is how many (schema, step) pairs one selector may visit in
// one body.
const walkBudget = 100_000

type busyKey struct {
	s *openapi3.Schema
	i int
}

// walkSelector says whether the body described by ref can hold a value
// sel selects.
func walkSelector(ref *openapi3.SchemaRef, sel policy.Selector) result {
	w := &walker{busy: map[busyKey]bool{}, memo: map[busyKey]result{}, budget: walkBudget, structured: map[*openapi3.Schema]bool{}}
	if sel.Form {
		w.steps = []wstep{{kind: policy.StepChild, name: sel.FormName, prefix: sel.FormPrefix}}
	} else {
		for _, st := range sel.Steps {
			w.steps = append(w.steps, wstep{kind: st.Kind, name: st.Name})
		}
	}
	return w.walk(ref, 0)
}

var nothingKnown = result{v: absent, miss: miss{depth: -1}}

// walk takes steps[i:] through the schema ref.
func (w *walker) walk(ref *openapi3.SchemaRef, i int) result {
	if ref == nil || ref.Value == nil {
		return result{v: unknown}
	}
	s := ref.Value
	if s.Always != nil {
		if !*s.Always {
			return result{v: absent, miss: miss{depth: i, what: "a schema no value satisfies", schema: refName(ref.Ref)}}
		}
		if i < len(w.steps) {
			return result{v: unknown}
		}
	}
	if i == len(w.steps) {
		return result{v: present}
	}
	k := busyKey{s, i}
	if r, ok := w.memo[k]; ok {
		return r
	}
	if w.busy[k] {
		w.cuts++
		return nothingKnown
	}
	if w.budget--; w.budget < 0 {
		return result{v: unknown}
	}
	w.busy[k] = true
	cuts := w.cuts
	best := w.walkSchema(s, i, refName(ref.Ref))
	delete(w.busy, k)
	if w.cuts == cuts || best.v >= unknown {
		w.memo[k] = best
	}
	return best
}

// walkSchema takes steps[i:] through s and its branches.
func (w *walker) walkSchema(s *openapi3.Schema, i int, name string) result {
	best, structured := nothingKnown, false
	if ownStructure(s) {
		best, structured = w.step(s, i, name), true
	}
	// A step exists if it exists in any branch. A branch that says
	// nothing of structure (only required, say) adds no member.
	for _, b := range branches(s) {
		if w.hasStructure(b, 0) {
			best, structured = better(best, w.walk(b, i)), true
		}
	}
	if !structured {
		return result{v: unknown} // free-form: {} or a description alone
	}
	return best
}

// step takes steps[i] in the schema s itself (its branches aside).
func (w *walker) step(s *openapi3.Schema, i int, name string) result {
	st := w.steps[i]
	m := miss{depth: i, key: st.name, schema: name}
	switch st.kind {
	case policy.StepChild:
		if !isObject(s) {
			m.what = describe(s)
			return result{v: absent, miss: m}
		}
		return w.member(s, i, m)
	case policy.StepAny:
		return w.anyValue(s, i, m)
	default:
		return w.descend(s, i, m)
	}
}

// anyValue takes a * step: into every member and element of s.
func (w *walker) anyValue(s *openapi3.Schema, i int, m miss) result {
	if !isObject(s) && !isArray(s) {
		m.what = describe(s)
		return result{v: absent, miss: m}
	}
	refs, open := values(s)
	if open {
		return result{v: unknown}
	}
	best := nothingKnown
	for _, ref := range refs {
		best = better(best, w.walk(ref, i+1))
	}
	if best.v == absent && best.miss.depth < i {
		best.miss = m // an object with no member: additionalProperties: false
	}
	return best
}

// descend takes a ..name step: a member called name in s, or at any
// depth below it. The schemas below s are searched once each, however
// many paths lead to them.
func (w *walker) descend(s *openapi3.Schema, i int, m miss) result {
	best := nothingKnown
	queue := []*openapi3.Schema{s}
	seen := map[*openapi3.Schema]bool{s: true}
	push := func(ref *openapi3.SchemaRef) {
		if ref != nil && ref.Value != nil && !seen[ref.Value] {
			seen[ref.Value] = true
			queue = append(queue, ref.Value)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if n.Always != nil {
			if *n.Always {
				return result{v: unknown}
			}
			continue
		}
		own, structured := ownStructure(n), false
		for _, b := range branches(n) {
			if w.hasStructure(b, 0) {
				structured = true
				push(b) // another side of the same value
			}
		}
		if !own {
			if !structured {
				return result{v: unknown} // free-form: it may hold anything
			}
			continue
		}
		refs, open := values(n)
		if open {
			return result{v: unknown}
		}
		if w.budget -= len(refs) + 1; w.budget < 0 {
			return result{v: unknown}
		}
		if isObject(n) {
			if direct := w.member(n, i, m); direct.v != absent || direct.miss.depth > i {
				best = better(best, direct)
				if best.v == present {
					return best
				}
			}
		}
		for _, ref := range refs {
			push(ref)
		}
	}
	if best.v == absent && best.miss.depth <= i {
		best.miss = miss{depth: i, key: m.key, anyDepth: true, schema: m.schema}
	}
	return best
}

// values lists the schemas of the members and elements of s, in a
// stable order; open reports that some may be anything: an array whose
// items are not said, an object whose members are not said, or
// additionalProperties: true.
func values(s *openapi3.Schema) (refs []*openapi3.SchemaRef, open bool) {
	if isArray(s) {
		if s.Items == nil && len(s.PrefixItems) == 0 {
			return nil, true
		}
		if s.Items != nil {
			refs = append(refs, s.Items)
		}
		refs = append(refs, s.PrefixItems...)
	}
	if isObject(s) {
		ap := s.AdditionalProperties
		if freeObject(s) || ap.Has != nil && *ap.Has {
			return nil, true
		}
		for _, p := range slices.Sorted(maps.Keys(s.Properties)) {
			refs = append(refs, s.Properties[p])
		}
		if ap.Schema != nil {
			refs = append(refs, ap.Schema)
		}
		for _, p := range slices.Sorted(maps.Keys(s.PatternProperties)) {
			refs = append(refs, s.PatternProperties[p])
		}
	}
	return refs, false
}

// member takes a named step (steps[i], a StepChild or the name of a
// StepDescendant) into the members of the object schema s.
func (w *walker) member(s *openapi3.Schema, i int, m miss) result {
	st := w.steps[i]
	if freeObject(s) {
		return result{v: unknown}
	}
	best := nothingKnown
	for _, p := range slices.Sorted(maps.Keys(s.Properties)) {
		switch {
		case st.prefix && strings.HasPrefix(p, st.name), !st.prefix && p == st.name:
			best = better(best, w.walk(s.Properties[p], i+1))
		case !st.prefix && strings.EqualFold(p, st.name):
			m.folded = p
		}
	}
	for _, pat := range slices.Sorted(maps.Keys(s.PatternProperties)) {
		switch patternTakes(pat, st.name, st.prefix) {
		case present:
			best = better(best, w.walk(s.PatternProperties[pat], i+1))
		case unknown:
			best = better(best, result{v: unknown})
		}
	}
	if best.v != absent || best.miss.depth > i {
		return best
	}
	ap := s.AdditionalProperties
	if ap.Schema != nil || ap.Has != nil && *ap.Has {
		m.names = nil
		return result{v: mapKey, miss: m}
	}
	m.names = slices.Sorted(maps.Keys(s.Properties))
	m.patterns = slices.Sorted(maps.Keys(s.PatternProperties))
	return result{v: absent, miss: m}
}

// patternTakes says whether a patternProperties pattern takes the key
// name (or, with prefix, some key starting with name): present, absent,
// or unknown when that cannot be told.
func patternTakes(pattern, name string, prefix bool) verdict {
	re, err := regexp.Compile(pattern) // JSON Schema patterns are ECMA-262; RE2 reads most
	if err != nil {
		return unknown
	}
	if !prefix {
		if re.MatchString(name) {
			return present
		}
		return absent
	}
	lit, _ := re.LiteralPrefix()
	switch {
	case !strings.HasPrefix(pattern, "^") || lit == "":
		return unknown
	case strings.HasPrefix(lit, name):
		return present
	case strings.HasPrefix(name, lit):
		return unknown
	}
	return absent
}

// ownStructure reports whether the schema itself (its branches aside)
// says anything of the shape of a value.
func ownStructure(s *openapi3.Schema) bool {
	return !s.Type.IsEmpty() || len(s.Properties) > 0 || s.Items != nil || len(s.PrefixItems) > 0 ||
		s.AdditionalProperties.Has != nil || s.AdditionalProperties.Schema != nil || len(s.PatternProperties) > 0
}

// hasStructure reports whether the schema, or a branch of it, says
// anything of the shape of a value.
func (w *walker) hasStructure(ref *openapi3.SchemaRef, depth int) bool {
	if ref == nil || ref.Value == nil || ref.Value.Always != nil || depth > policy.MaxSelectorSteps {
		return false
	}
	s := ref.Value
	if known, ok := w.structured[s]; ok {
		return known
	}
	has := ownStructure(s) || slices.ContainsFunc(branches(s), func(b *openapi3.SchemaRef) bool { return w.hasStructure(b, depth+1) })
	w.structured[s] = has
	return has
}

// branches are the subschemas a value may also (or instead) satisfy.
func branches(s *openapi3.Schema) []*openapi3.SchemaRef {
	out := slices.Concat(s.AllOf, s.OneOf, s.AnyOf)
	if s.If != nil {
		out = append(out, s.Then, s.Else)
	}
	return slices.DeleteFunc(out, func(r *openapi3.SchemaRef) bool { return r == nil })
}

// isObject: the schema may be an object and says so (type or members).
func isObject(s *openapi3.Schema) bool {
	return s.Type.Permits(openapi3.TypeObject) && (s.Type.Includes(openapi3.TypeObject) || len(s.Properties) > 0 ||
		s.AdditionalProperties.Has != nil || s.AdditionalProperties.Schema != nil || len(s.PatternProperties) > 0)
}

// isArray: the schema may be an array and says so (type or items).
func isArray(s *openapi3.Schema) bool {
	return s.Type.Permits(openapi3.TypeArray) && (s.Type.Includes(openapi3.TypeArray) || s.Items != nil || len(s.PrefixItems) > 0)
}

// freeObject: an object whose members the schema does not say (type:
// object alone): any member may exist.
func freeObject(s *openapi3.Schema) bool {
	return len(s.Properties) == 0 && len(s.PatternProperties) == 0 &&
		s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil
}

// describe says what a value of s is, for a step that needs an object
// or an array.
func describe(s *openapi3.Schema) string {
	types := slices.DeleteFunc(s.Type.Clone(), func(t string) bool { return t == openapi3.TypeNull })
	if len(types) == 0 {
		return "null"
	}
	var words []string
	for _, t := range types {
		switch t {
		case openapi3.TypeArray, openapi3.TypeInteger, openapi3.TypeObject:
			words = append(words, "an "+t)
		default:
			words = append(words, "a "+t)
		}
	}
	return strings.Join(words, " or ")
}

// refName is the last element of a $ref ("#/components/schemas/Message": Message).
func refName(ref string) string {
	if ref == "" {
		return ""
	}
	return ref[strings.LastIndexAny(ref, "/#")+1:]
}

// prefix writes the first n steps of a selector: $.data[*].
func prefix(steps []policy.Step, n int) string {
	var b strings.Builder
	b.WriteByte('$')
	for _, st := range steps[:max(0, min(n, len(steps)))] {
		switch st.Kind {
		case policy.StepChild:
			b.WriteString(memberText(st.Name))
		case policy.StepAny:
			b.WriteString("[*]")
		case policy.StepDescendant:
			b.WriteString("." + memberText(st.Name))
		}
	}
	return b.String()
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// memberText is .name, or ['name'] for a name dot notation cannot hold.
func memberText(name string) string {
	if plainName.MatchString(name) {
		return "." + name
	}
	return "['" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "']"
}

// explain says why a selector misses in the body of one operation.
func (r result) explain(op *operation, sel policy.Selector) string {
	if r.where == "" {
		return op.String() + " " + r.body
	}
	m := r.miss
	if m.depth < 0 {
		return r.where + ": the schema holds no such value"
	}
	word, at := "member", prefix(sel.Steps, m.depth)
	if sel.Form {
		word, at = "field", "the form"
	}
	if m.schema != "" {
		at += " (" + m.schema + ")"
	}
	key := fmt.Sprintf("%q", m.key)
	if sel.FormPrefix {
		key = fmt.Sprintf("starting with %q", m.key)
	}
	var why string
	switch {
	case m.folded != "":
		why = fmt.Sprintf("%s has %q, not %q: the names differ only in letter case, and phiguard refuses such a body", at, m.folded, m.key)
	case m.anyDepth:
		why = fmt.Sprintf("%s has no member %s at any depth", at, key)
	case len(m.names) > 0 || len(m.patterns) > 0:
		has := m.names
		if len(m.patterns) > 0 {
			has = append(slices.Clip(has), "keys matching "+strings.Join(m.patterns, " or "))
		}
		why = fmt.Sprintf("%s has no %s %s; the schema has %s", at, word, key, strings.Join(has, ", "))
	case m.what != "" && !sel.Form && sel.Steps[m.depth].Kind == policy.StepAny:
		why = fmt.Sprintf("%s is %s: it has no members or elements", at, m.what)
	case m.what == "an array":
		why = fmt.Sprintf("%s is an array: write [*] to step into its elements", at)
	case m.what != "":
		why = fmt.Sprintf("%s is %s, not an object", at, m.what)
	default:
		why = fmt.Sprintf("%s has no %ss", at, word)
	}
	return "in " + op.String() + ", " + r.where + ": " + why
}

// explainMap says where a literal key met a map.
func (r result) explainMap(sel policy.Selector) string {
	at, what := prefix(sel.Steps, r.miss.depth), "member"
	if sel.Form {
		at, what = "the form", "field"
	}
	if r.miss.schema != "" {
		at += " (" + r.miss.schema + ")"
	}
	return fmt.Sprintf("%s: %s is open (additionalProperties) and its keys are not listed: whether a %s %q exists cannot be known", r.where, at, what, r.miss.key)
}

package explain

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

// act is how a selector's outcome is read from what the engine made of
// the body.
type act uint8

const (
	actSeal       act = iota + 1 // encrypt_request
	actSearch                    // search_request
	actRecord                    // record
	actReveal                    // decrypt_response
	actOpen                      // egress decrypt_request
	actReplace                   // replace_request
	actScan                      // dlp.fields
	actDrop                      // drop_request
	actSealAnswer                // egress encrypt_response
	actConsent                   // egress consent.to
	actKeyword                   // consent_keywords
)

// selRef is one selector of a route, with where the policy lists it and
// what it does.
type selRef struct {
	list  string
	index int
	sel   policy.Selector
	does  string
	act   act
	name  string // a recorded field's name
}

func selectorsOf(refs []selRef) []policy.Selector {
	out := make([]policy.Selector, len(refs))
	for i, r := range refs {
		out[i] = r.sel
	}
	return out
}

func newSelector(ref selRef) Selector {
	return Selector{List: ref.list, Index: ref.index, Selector: ref.sel.Text, Does: ref.does, Found: []Location{}}
}

// val is a value as the sample holds it, or as the engine left it.
type val struct {
	kind jsontext.Kind
	text string // a string's content
}

// sampleBody is a body as explain reads it for locations.
type sampleBody struct {
	contentType string
	format      string // json, form, none
	root        *node
	fields      []pair
	raw         []byte // decoded (gzip)
	problem     string
}

// readSample reads a body by its Content-Type: JSON or form; any other
// type is read as JSON when it parses as JSON (phiguard refuses it, but
// the selectors' reach still shows).
func readSample(h http.Header, body []byte) sampleBody {
	sb := sampleBody{format: "none", raw: body}
	if ct := h.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil {
			sb.contentType = mt
		} else {
			sb.contentType = "(unreadable)"
		}
	}
	if len(body) == 0 {
		return sb
	}
	if enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc == "gzip" || enc == "x-gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			sb.problem = "the gzip body does not decompress"
			return sb
		}
		dec, err := io.ReadAll(io.LimitReader(zr, 64<<20))
		if err != nil {
			sb.problem = "the gzip body does not decompress"
			return sb
		}
		sb.raw = dec
	}
	mt := sb.contentType
	switch {
	case mt == "application/x-www-form-urlencoded":
		sb.format, sb.fields = "form", parseForm(sb.raw)
	case mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		root, err := parseJSON(sb.raw)
		if err != nil {
			sb.problem = "not one valid JSON value (" + err.Error() + ")"
			return sb
		}
		sb.format, sb.root = "json", root
	default:
		if root, err := parseJSON(sb.raw); err == nil {
			sb.format, sb.root = "json", root
			sb.problem = "read as JSON for this explanation: it parses as JSON, but its Content-Type does not say so"
		} else {
			sb.problem = "neither JSON nor a form: no selector can read it"
		}
	}
	return sb
}

// newBody is the report of a body, before its selectors.
func newBody(sb sampleBody, n int) *Body {
	return &Body{ContentType: sb.contentType, Format: sb.format, Bytes: n, Problem: sb.problem}
}

// group is the selectors of one rewrite of a body, located.
type group struct {
	refs []selRef
	sels []Selector
	// jsonAt maps a path to the selector that took it; formAt, each form
	// field to its selector (-1: none).
	jsonAt map[string]int
	formAt []int
	// refusedAt notes the values a selector refuses the body for (a key
	// that differs from its name only by letter case), by path or field.
	refusedAt map[string]string
}

// locate finds where the selectors of refs act in sb, as the codec reads
// it, and says why when one of them refuses the body.
func locate(sb sampleBody, refs []selRef) *group {
	g := &group{refs: refs, jsonAt: map[string]int{}, refusedAt: map[string]string{}}
	for _, ref := range refs {
		g.sels = append(g.sels, newSelector(ref))
	}
	sels := selectorsOf(refs)
	switch sb.format {
	case "json":
		found, err := locateJSON(sb.raw, sels)
		if err != nil {
			var each []located
			each, found = locateEach(sb.raw, sels)
			for i, l := range each {
				if l.refusal != nil {
					g.sels[i].Refused = reasonOf(l.refusal)
					for _, n := range caseVariants(sb.root, refs[i].sel) {
						g.sels[i].Hints = append(g.sels[i].Hints, fmt.Sprintf("%s (%s) differs from %s only by letter case: rename the key, or fix the selector", n.path, n.typ(), refs[i].sel.Text))
						g.refusedAt[n.path] = "differs from " + refs[i].sel.Text + " only by letter case: refuses the body"
					}
				}
			}
		}
		g.jsonAt = found
		sb.root.walk(func(n *node) bool {
			if i, ok := found[n.path]; ok {
				g.sels[i].Found = append(g.sels[i].Found, Location{Path: n.path, Type: n.typ()})
				return false
			}
			return true
		})
	case "form":
		which, refused := locateForm(sb.fields, sels)
		g.formAt = which
		for i, f := range sb.fields {
			if which[i] >= 0 {
				g.sels[which[i]].Found = append(g.sels[which[i]].Found, Location{Path: fieldName(f), Type: f.typ()})
			}
			if err := refused[i]; err != nil {
				if errors.Is(err, codec.ErrPlantedToken) {
					continue // valueNote says so
				}
				reason := reasonOf(err)
				for j, ref := range refs {
					if ref.sel.Form && strings.Contains(reason, " "+ref.sel.Text+" ") {
						g.sels[j].Refused = reason
						g.sels[j].Hints = append(g.sels[j].Hints, fmt.Sprintf("the field %s (%s) differs from %s only by letter case: rename the field, or fix the selector", fieldName(f), f.typ(), ref.sel.Text))
						g.refusedAt[fmt.Sprint("field ", i)] = "differs from " + ref.sel.Text + " only by letter case: refuses the body"
					}
				}
			}
		}
	}
	for i := range g.sels {
		if len(g.sels[i].Found) == 0 && g.sels[i].Refused == "" {
			g.sels[i].Hints = append(g.sels[i].Hints, nothingHints(sb, refs[i].sel)...)
		}
	}
	return g
}

func fieldName(f pair) string {
	if !f.ok {
		return "(a field whose name does not decode)"
	}
	return f.name
}

// reasonOf is a refusal's reason, safe to show; "" for another error.
func reasonOf(err error) string {
	if ref, ok := refusal.As(err); ok {
		return ref.Reason
	}
	return "the body could not be read"
}

// caseVariants are the values a selector reaches only through a key in
// another letter case.
func caseVariants(root *node, sel policy.Selector) []*node {
	if root == nil || sel.Form {
		return nil
	}
	exact := map[string]bool{}
	for _, n := range matchSteps(root, sel.Steps, false) {
		exact[n.path] = true
	}
	var out []*node
	for _, n := range matchSteps(root, sel.Steps, true) {
		if !exact[n.path] {
			out = append(out, n)
		}
	}
	return out
}

// forEachFound calls f for every location of the group with the value
// the sample holds there.
func (g *group) forEachFound(sb sampleBody, f func(i int, loc *Location, in val, path string, field int)) {
	switch sb.format {
	case "json":
		idx := sb.root.index()
		for i := range g.sels {
			for j := range g.sels[i].Found {
				loc := &g.sels[i].Found[j]
				n := idx[loc.Path]
				f(i, loc, val{kind: n.kind, text: n.text}, loc.Path, -1)
			}
		}
	case "form":
		seen := make([]int, len(g.sels))
		for fi, s := range g.formAt {
			if s < 0 {
				continue
			}
			loc := &g.sels[s].Found[seen[s]]
			seen[s]++
			f(s, loc, val{kind: '"', text: sb.fields[fi].value}, "", fi)
		}
	}
}

// untaken lists the values of sb that no selector took (takenPath,
// takenField say which were taken, or dropped), each flagged when it
// would matter (notes: by path, or "field N").
func untaken(sb sampleBody, takenPath func(string) bool, takenField func(int) bool, notes map[string]string, request bool) []Location {
	var out []Location
	note := func(key string, v val) string {
		if n := notes[key]; n != "" {
			return n
		}
		return valueNote(v, request)
	}
	switch sb.format {
	case "json":
		sb.root.walk(func(n *node) bool {
			if takenPath(n.path) {
				return false
			}
			if len(n.children) > 0 {
				return true
			}
			if n == sb.root && (n.kind == '{' || n.kind == '[') {
				return false // an empty body object holds nothing
			}
			out = append(out, Location{Path: n.path, Type: n.typ(), Outcome: note(n.path, val{kind: n.kind, text: n.text})})
			return false
		})
	case "form":
		for i, f := range sb.fields {
			if f.empty || takenField(i) {
				continue
			}
			out = append(out, Location{Path: fieldName(f), Type: f.typ(), Outcome: note(fmt.Sprint("field ", i), val{kind: '"', text: f.value})})
		}
	}
	return out
}

// takenBy are the predicates of untaken for the values groups took, and
// the notes of the values they refuse the body for.
func takenBy(groups ...*group) (func(string) bool, func(int) bool, map[string]string) {
	notes := map[string]string{}
	for _, g := range groups {
		for k, v := range g.refusedAt {
			notes[k] = v
		}
	}
	return func(p string) bool {
			for _, g := range groups {
				if _, ok := g.jsonAt[p]; ok {
					return true
				}
			}
			return false
		}, func(i int) bool {
			for _, g := range groups {
				if i < len(g.formAt) && g.formAt[i] >= 0 {
					return true
				}
			}
			return false
		}, notes
}

// valueNote flags an untaken value that matters: token-like text in a
// request refuses it; a token in an answer reaches the client unopened.
func valueNote(v val, request bool) string {
	if v.kind != '"' {
		return ""
	}
	switch {
	case request && codec.HasTokenMarker(v.text):
		return "token-like text where no selector seals it: refuses the body (only phiguard writes tokens)"
	case !request && keys.LooksLikeToken(v.text):
		return "a phiguard token no selector opens: it goes on as it is"
	}
	return ""
}

// nothingHints say why a selector found nothing in sb, and what might.
func nothingHints(sb sampleBody, sel policy.Selector) []string {
	switch {
	case sel.Query:
		return nil
	case len(sb.raw) == 0:
		return []string{"there is no body"}
	case sb.format == "none":
		return nil
	case sel.Form && sb.format == "json":
		return []string{"a form selector: this body is JSON"}
	case !sel.Form && sb.format == "form":
		return []string{"a JSON selector: this body is a form"}
	case sel.Form:
		return formHints(sb.fields, sel)
	}
	return jsonHints(sb.root, sel)
}

func formHints(fields []pair, sel policy.Selector) []string {
	var starts []string
	for _, f := range fields {
		if !f.ok || f.empty {
			continue
		}
		if f.name == sel.FormName || sel.FormPrefix && strings.HasPrefix(f.name, sel.FormName) {
			return []string{fmt.Sprintf("it names the field %s, but an earlier selector takes it first", f.name)}
		}
		if !sel.FormPrefix && len(f.name) > len(sel.FormName) && strings.HasPrefix(f.name, sel.FormName) {
			starts = append(starts, f.name)
		}
	}
	if len(starts) > 0 {
		return []string{fmt.Sprintf("fields %s start with %s: form:%s* takes every field whose name starts so", strings.Join(starts, ", "), sel.FormName, sel.FormName)}
	}
	return []string{"no field of the form has this name"}
}

// jsonHints follow a JSON selector as far as the body goes and say
// where it stops, and what would go on.
func jsonHints(root *node, sel policy.Selector) []string {
	steps := sel.Steps
	if reach := matchSteps(root, steps, false); len(reach) > 0 {
		return []string{fmt.Sprintf("it reaches %s, but another selector takes it first (an earlier one, or one that takes a value around it)", reach[0].path)}
	}
	k := len(steps) - 1
	var at []*node
	for ; k >= 0; k-- {
		if at = matchSteps(root, steps[:k], false); len(at) > 0 {
			break
		}
	}
	st := steps[k]
	where := "the body"
	if k > 0 {
		where = selectorText(steps[:k], nil)
	}
	var hints []string
	suggested := false
	switch st.Kind {
	case policy.StepChild:
		hints, suggested = childHints(root, steps, k, at)
	case policy.StepAny:
		hints = append(hints, fmt.Sprintf("%s has no member or element to step into", where))
	case policy.StepDescendant:
		hints = append(hints, fmt.Sprintf("no member named %q at any depth below %s", st.Name, where))
	}
	// Members of the selector's last name elsewhere in the body.
	if last := steps[len(steps)-1]; !suggested && (last.Kind == policy.StepChild || last.Kind == policy.StepDescendant) {
		var elsewhere []string
		root.walk(func(n *node) bool {
			if n.member && n.name == last.Name && len(elsewhere) < 3 {
				elsewhere = append(elsewhere, n.path)
			}
			return true
		})
		if len(elsewhere) > 0 {
			hints = append(hints, fmt.Sprintf("members named %q are at %s", last.Name, strings.Join(elsewhere, ", ")))
		}
	}
	return hints
}

// childHints say why steps[k], a member name, takes nothing from the
// values at (where steps[:k] lead), and suggest the step that would:
// [*] into an array, * for the key of a map-keyed collection.
func childHints(root *node, steps []policy.Step, k int, at []*node) (hints []string, suggested bool) {
	st := steps[k]
	for _, n := range at {
		switch {
		case n.kind == '[':
			alt := slices.Insert(slices.Clone(steps), k, policy.Step{Kind: policy.StepAny})
			suggested = true
			hints = append(hints, fmt.Sprintf("%s is %s: a selector steps into an array with [*]: %s", n.where(), n.typ(), selectorText(alt, arraysOf(root, alt))))
		case n.kind == '{':
			alt := withStep(steps, k, policy.Step{Kind: policy.StepAny})
			if k < len(steps)-1 && len(matchSteps(root, alt, false)) > 0 {
				suggested = true
				hints = append(hints, fmt.Sprintf("%s has no member %q (it is %s): a selector names keys literally. For a map-keyed collection (its keys are ids), write * for the key: %s", n.where(), st.Name, n.typ(), selectorText(alt, arraysOf(root, alt))))
			} else {
				hints = append(hints, fmt.Sprintf("%s has no member %q (it is %s)", n.where(), st.Name, n.typ()))
			}
		default:
			hints = append(hints, fmt.Sprintf("%s is %s: there is nothing below it", n.where(), n.typ()))
		}
		if len(hints) >= 3 {
			break
		}
	}
	return hints, suggested
}

// where names a value in a hint.
func (n *node) where() string {
	if n.path == "$" {
		return "the body"
	}
	return n.path
}

func withStep(steps []policy.Step, k int, st policy.Step) []policy.Step {
	out := append([]policy.Step(nil), steps...)
	out[k] = st
	return out
}

// arraysOf marks the [*] steps of steps that step over arrays in root.
func arraysOf(root *node, steps []policy.Step) map[int]bool {
	m := map[int]bool{}
	for i, st := range steps {
		if st.Kind != policy.StepAny {
			continue
		}
		for _, n := range matchSteps(root, steps[:i], false) {
			if n.kind == '[' {
				m[i] = true
			}
		}
	}
	return m
}

// outIndex reads the engine's rewritten body: JSON values by path, or
// form fields in order.
type outIndex struct {
	json   map[string]*node
	fields []pair
}

func readOut(format string, out []byte) *outIndex {
	if out == nil {
		return nil
	}
	switch format {
	case "json":
		root, err := parseJSON(out)
		if err != nil {
			return nil
		}
		return &outIndex{json: root.index()}
	case "form":
		return &outIndex{fields: parseForm(out)}
	}
	return nil
}

func (o *outIndex) at(path string, field int) (val, bool) {
	if o == nil {
		return val{}, false
	}
	if field >= 0 {
		if field >= len(o.fields) {
			return val{}, false
		}
		return val{kind: '"', text: o.fields[field].value}, true
	}
	n, ok := o.json[path]
	if !ok {
		return val{}, false
	}
	return val{kind: n.kind, text: n.text}, true
}

// indexWords counts the index words in a stored value or a search term.
func indexWords(s string, chars int) int {
	n := 0
	for _, f := range strings.Fields(s) {
		if keys.IsIndexWord(f, chars) {
			n++
		}
	}
	return n
}

func textType(s string) string { return fmt.Sprintf("string(%d)", utf8.RuneCountInString(s)) }

// queryLocations finds the query parameters the route's query: search
// terms take, and what each became in the forwarded query (forwarded ""
// when the engine did not rewrite it).
func (r *run) queryGroup(refs []selRef, forwarded string, applied bool) []Selector {
	in := strings.Split(r.req.URL.RawQuery, "&")
	var out []string
	if applied {
		out = strings.Split(forwarded, "&")
	}
	var sels []Selector
	for _, ref := range refs {
		s := newSelector(ref)
		for i, raw := range in {
			k, v, _ := strings.Cut(raw, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || name != ref.sel.QueryName || r.req.URL.RawQuery == "" {
				continue
			}
			value, _ := url.QueryUnescape(v)
			loc := Location{Path: "?" + name, Type: textType(value)}
			if applied && i < len(out) {
				_, ov, _ := strings.Cut(out[i], "=")
				term, _ := url.QueryUnescape(ov)
				loc.Outcome = r.searchOutcome(ref, term)
			}
			s.Found = append(s.Found, loc)
		}
		if len(s.Found) == 0 {
			s.Hints = append(s.Hints, "the query has no parameter "+ref.sel.QueryName)
		}
		sels = append(sels, s)
	}
	return sels
}

func (r *run) searchOutcome(ref selRef, term string) string {
	if ref.sel.Search == policy.SearchExact {
		return "exact-match token"
	}
	return plural(indexWords(term, r.pol.Search.IndexChars), "index word")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// maskReason is why a reader sees the mask for v, as the engine's record
// names it.
func maskReason(v val, org string) string {
	if v.kind != '"' || !keys.LooksLikeToken(v.text) {
		return engine.MaskNotToken
	}
	tok, _, _ := strings.Cut(v.text, " ")
	if o, ok := keys.TokenOrg([]byte(tok)); ok && o != org {
		return engine.MaskOtherOrg
	}
	return engine.MaskUndecodable
}

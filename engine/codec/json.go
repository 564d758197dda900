package codec

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/policy"
)

// MaxDepth is the deepest nesting of objects and arrays a body may have.
const MaxDepth = 64

// Matcher matches JSON paths against a set of selectors while a body is
// walked. Build it once per route; it is safe for concurrent use.
type Matcher struct {
	sels  []policy.Selector // JSON selectors only, in policy order, then refused ones
	idx   []int             // position of each in the list it was built from; -1 for refused
	total int               // length of the list it was built from
	// request: the body comes from a client (see NewRequestMatcher).
	request bool
	// named maps the name of every named step (.name or ..name),
	// ASCII-lower-cased, to the set of selectors (bit i: m.sels[i]) with a
	// step of that name. It is used when every such name is ASCII and
	// there are at most 64 selectors (namedOK): a member whose ASCII name,
	// lower-cased, is not in it cannot match a .name step of any other
	// selector, exactly or by case folding, and advance then drops the
	// steps whose bit is in childBits[i] (the .name steps of selector i).
	named     map[string]uint64
	namedOK   bool
	childBits []uint64
	// few holds named as a list when it is short: comparing a handful of
	// names is cheaper than hashing each member name a body holds.
	few []namedSels
}

// namedSels is one entry of Matcher.named.
type namedSels struct {
	name string // ASCII, lower-cased
	sels uint64
}

// maxFewNames is the most names Matcher.few holds; above it, the map.
const maxFewNames = 8

// NewMatcher compiles the JSON selectors of sels; form selectors are skipped.
// Edit callbacks and counts refer to positions in sels. A body in which a
// refused selector (or a case variant of it) picks anything is refused
// with ErrRefusedKey.
func NewMatcher(sels []policy.Selector, refused ...policy.Selector) *Matcher {
	m := &Matcher{total: len(sels)}
	for i, s := range sels {
		if !s.Form {
			m.sels = append(m.sels, s)
			m.idx = append(m.idx, i)
		}
	}
	for _, s := range refused {
		m.sels = append(m.sels, s)
		m.idx = append(m.idx, -1)
	}
	m.named, m.namedOK = map[string]uint64{}, len(m.sels) <= 64
	for i, s := range m.sels {
		var bits uint64
		for j, st := range s.Steps {
			if st.Kind == policy.StepChild || st.Kind == policy.StepDescendant {
				m.namedOK = m.namedOK && isASCII(st.Name)
				m.named[strings.ToLower(st.Name)] |= 1 << (i % 64)
			}
			if st.Kind == policy.StepChild {
				bits |= 1 << j
			}
		}
		m.childBits = append(m.childBits, bits)
	}
	if len(m.named) <= maxFewNames {
		for name, sels := range m.named {
			m.few = append(m.few, namedSels{name, sels})
		}
	}
	return m
}

// lowerEq reports whether name, ASCII, equals lower once its upper-case
// letters are lowered; the two are of the same length.
func lowerEq(lower string, name []byte) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// namers returns the selectors with a named step that name could match,
// exactly or by case folding (bit i: m.sels[i]); ok is false when it
// cannot tell, and every selector must then be stepped.
func (m *Matcher) namers(name []byte) (sels uint64, ok bool) {
	if !m.namedOK {
		return 0, false
	}
	if m.few != nil || len(m.named) == 0 {
		if !isASCII(name) {
			return 0, false // may fold to an ASCII name: the full steps decide
		}
		for _, e := range m.few {
			if len(e.name) == len(name) && lowerEq(e.name, name) {
				return e.sels, true
			}
		}
		return 0, true
	}
	var buf [64]byte
	if len(name) > len(buf) {
		return 0, false
	}
	for i, c := range name {
		if c >= utf8.RuneSelf {
			return 0, false // may fold to an ASCII name: the full steps decide
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m.named[string(buf[:len(name)])], true
}

// NewRequestMatcher is NewMatcher for request bodies, which are judged
// more strictly than the app's responses. Besides what NewMatcher refuses:
//   - a key, or a string value no selector picks, that holds token-like
//     text (HasTokenMarker), escapes decoded: only phiguard writes tokens,
//     and a planted one could be stored where a read route decrypts it
//     (ErrPlantedToken). Selected values are sealed whatever they hold;
//   - a top-level array of objects with "op" and "path" members (any
//     letter case): a JSON Patch document (RFC 6902) whose values
//     selectors cannot address, whatever its Content-Type (ErrPatchDocument).
func NewRequestMatcher(sels []policy.Selector, refused ...policy.Selector) *Matcher {
	m := NewMatcher(sels, refused...)
	m.request = true
	return m
}

// Empty reports whether the matcher selects nothing.
func (m *Matcher) Empty() bool {
	for _, i := range m.idx {
		if i >= 0 {
			return false
		}
	}
	return true
}

// Edit appends the replacement for a selected value, raw JSON text, to dst
// and returns the extended slice. sel is the selector's position in the
// list the matcher was built from. value is only valid during the call.
type Edit func(dst []byte, sel int, value jsontext.Value) ([]byte, error)

// RewriteJSON parses src as exactly one JSON value, strictly, and replaces
// every value a selector picks with what edit returns. Bytes outside the
// selected values are copied unchanged. counts[i] is how many values
// selector i picked. Body errors are *refusal.Error (BadRequest); edit's errors are returned
// as they are.
func RewriteJSON(src []byte, m *Matcher, edit Edit) (out []byte, counts []int, err error) {
	counts = make([]int, m.total)
	out, err = AppendRewriteJSON(make([]byte, 0, len(src)+len(src)/2), src, m, edit, counts)
	if err != nil {
		return nil, nil, err
	}
	return out, counts, nil
}

// AppendRewriteJSON is RewriteJSON writing into dst, which must not overlap
// src: the rewritten body is appended to dst and returned. counts, when
// not nil, has an element for each selector the matcher was built from,
// and each is increased by how many values that selector picked. On error
// dst's contents are unspecified.
func AppendRewriteJSON(dst, src []byte, m *Matcher, edit Edit, counts []int) ([]byte, error) {
	w := walkers.Get().(*walker)
	defer w.release()
	w.m, w.src, w.edit, w.n, w.counts, w.out = m, src, edit, len(m.sels), counts, dst
	w.in = *bytes.NewBuffer(src) // parsed in place, without a copy
	// Duplicate names are found by w.names, without a string per name.
	w.dec.Reset(&w.in, jsontext.AllowDuplicateNames(true))
	w.names.reset()
	root := w.frame(0)
	for i := range w.n {
		root[i] = 1     // exact: at step 0
		root[w.n+i] = 1 // case-folded: at step 0
	}
	if err := w.value(0); err != nil {
		return w.out, err
	}
	if _, err := w.dec.ReadToken(); err != io.EOF {
		return w.out, malformed("data after the JSON value")
	}
	return AppendWiping(w.out, src[w.last:]), nil
}

// AppendWiping is append(dst, p...), except that when dst must grow, the
// array it leaves behind is wiped: a rewritten body may hold plaintext,
// and an array dropped while growing it would keep a copy until the
// collector reuses the memory. The new array has room for twice what it
// holds.
func AppendWiping(dst, p []byte) []byte {
	if cap(dst)-len(dst) >= len(p) {
		return append(dst, p...)
	}
	grown := make([]byte, len(dst), 2*(len(dst)+len(p)))
	copy(grown, dst)
	clear(dst[:cap(dst)])
	return append(grown, p...)
}

// walkers keeps walkers and their decoders' state between bodies.
var walkers = sync.Pool{New: func() any { return &walker{dec: new(jsontext.Decoder)} }}

type walker struct {
	m         *Matcher
	rootArray bool // the body is an array (request bodies: patch documents)
	src       []byte
	in        bytes.Buffer // src, for the decoder
	dec       *jsontext.Decoder
	name      []byte // an escaped key, unquoted
	names     names  // duplicate member names
	edit      Edit
	n         int
	states    []uint64 // per depth: n exact state sets, then n case-folded ones
	out       []byte
	last      int // src[:last] has been handled
	counts    []int
}

// release drops every reference to the body and returns w to the pool.
func (w *walker) release() {
	w.dec.Reset(emptyBody{})
	w.names.reset() // wiped; its buffers are kept for the next body
	clear(w.name[:cap(w.name)])
	*w = walker{dec: w.dec, states: w.states[:0], name: w.name[:0], names: w.names}
	walkers.Put(w)
}

// emptyBody is the reader a pooled decoder holds between bodies.
type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }

// frame returns the state sets of depth d, growing the slab as needed.
func (w *walker) frame(d int) []uint64 {
	need := (d + 1) * 2 * w.n
	if need > len(w.states) {
		w.states = append(w.states, make([]uint64, need-len(w.states))...)
	}
	return w.states[d*2*w.n : need]
}

// value handles the value at depth d whose state sets are in frame(d).
func (w *walker) value(d int) error {
	st := w.frame(d)
	live := false
	for i, sel := range w.m.sels {
		done := uint64(1) << len(sel.Steps)
		if w.m.idx[i] < 0 && st[w.n+i]&done != 0 {
			return bodyError(ErrRefusedKey, "the body holds "+sel.Text+", which would override the request")
		}
		if st[i]&done != 0 {
			return w.replace(i)
		}
		if st[w.n+i]&done != 0 {
			return bodyError(ErrAmbiguousKey, "a key differs from the selected "+sel.Text+" only by letter case")
		}
		if st[w.n+i] != 0 {
			live = true
		}
	}
	if w.m.request && w.dec.PeekKind() == '"' {
		return w.checkString()
	}
	tok, err := w.dec.ReadToken()
	if err != nil {
		return jsonErr(err)
	}
	switch tok.Kind() {
	case '{':
		if d+1 > MaxDepth {
			return malformed("nesting deeper than %d levels", MaxDepth)
		}
		var op, path bool
		mark := w.names.open()
		for {
			if w.dec.PeekKind() == '}' {
				break
			}
			key, err := w.readName()
			if err != nil {
				return err
			}
			if w.names.add(d, mark, key) {
				return malformed("duplicate key at byte %d", w.dec.InputOffset())
			}
			if w.m.request {
				if HasTokenMarker(key) {
					return PlantedToken("a JSON key")
				}
				if d == 1 && w.rootArray {
					op = op || bytes.EqualFold(key, []byte("op"))
					path = path || bytes.EqualFold(key, []byte("path"))
					if op && path {
						return bodyError(ErrPatchDocument, "the body is a JSON Patch document (an array of operations); its values cannot be selected, so it is refused. Send the object, or a JSON Merge Patch")
					}
				}
			}
			w.advance(d, live, key, true)
			if err := w.value(d + 1); err != nil {
				return err
			}
		}
		w.names.close(d, mark)
		_, err = w.dec.ReadToken()
		return jsonErr(err)
	case '[':
		if d+1 > MaxDepth {
			return malformed("nesting deeper than %d levels", MaxDepth)
		}
		w.rootArray = w.rootArray || d == 0
		for w.dec.PeekKind() != ']' {
			if w.dec.PeekKind() == 0 {
				_, err := w.dec.ReadToken()
				return jsonErr(err)
			}
			w.advance(d, live, nil, false)
			if err := w.value(d + 1); err != nil {
				return err
			}
		}
		_, err = w.dec.ReadToken()
		return jsonErr(err)
	}
	return nil
}

// readName reads an object member's name, unquoted. The bytes are valid
// until the next read.
func (w *walker) readName() ([]byte, error) {
	v, err := w.dec.ReadValue()
	if err != nil {
		return nil, jsonErr(err)
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], nil
	}
	w.name, err = jsontext.AppendUnquote(w.name[:0], v)
	if err != nil {
		return nil, jsonErr(err)
	}
	return w.name, nil
}

// checkString reads a string value no selector picks from a request body
// and refuses it if it holds token-like text, escapes decoded.
func (w *walker) checkString() error {
	v, err := w.dec.ReadValue()
	if err != nil {
		return jsonErr(err)
	}
	raw := []byte(v)
	if bytes.IndexByte(raw, '\\') >= 0 {
		if raw, err = jsontext.AppendUnquote(nil, v); err != nil {
			return jsonErr(err)
		}
	}
	if HasTokenMarker(raw) {
		return PlantedToken("a JSON value that phiguard does not encrypt")
	}
	return nil
}

// advance computes the state sets of a child of depth d: a member called
// name, or an array element.
func (w *walker) advance(d int, live bool, name []byte, member bool) {
	child := w.frame(d + 1)
	parent := w.frame(d)
	if !live {
		clear(child)
		return
	}
	namers, ok := uint64(0), !member
	if member {
		namers, ok = w.m.namers(name)
	}
	if ok {
		// Only the selectors named name can take a .name step; the others
		// move by [*], .* and ..name steps alone, if at all.
		for i, sel := range w.m.sels {
			cb := w.m.childBits[i]
			if namers&(1<<i) != 0 {
				cb = 0
			}
			exact, folded := parent[i]&^cb, parent[w.n+i]&^cb
			child[i], child[w.n+i] = 0, 0
			if exact != 0 {
				child[i] = step(sel.Steps, exact, name, member, false)
			}
			if folded != 0 {
				child[w.n+i] = step(sel.Steps, folded, name, member, true)
			}
		}
		return
	}
	for i, sel := range w.m.sels {
		child[i] = step(sel.Steps, parent[i], name, member, false)
		child[w.n+i] = step(sel.Steps, parent[w.n+i], name, member, true)
	}
}

// step moves a selector's state set over one path element. Bit j set means
// steps[:j] have matched; bit len(steps) means the selector is complete.
func step(steps []policy.Step, s uint64, name []byte, member, fold bool) uint64 {
	var next uint64
	for s != 0 {
		j := bits.TrailingZeros64(s)
		s &= s - 1
		if j >= len(steps) {
			continue
		}
		switch st := steps[j]; st.Kind {
		case policy.StepChild:
			if member && nameEq(name, st.Name, fold) {
				next |= 1 << (j + 1)
			}
		case policy.StepAny:
			next |= 1 << (j + 1)
		case policy.StepDescendant:
			next |= 1 << j
			if member && nameEq(name, st.Name, fold) {
				next |= 1 << (j + 1)
			}
		}
	}
	return next
}

func nameEq(a []byte, b string, fold bool) bool {
	if fold {
		return bytes.EqualFold(a, []byte(b))
	}
	return string(a) == b
}

// replace reads the selected value and splices in its replacement.
func (w *walker) replace(i int) error {
	v, err := w.dec.ReadValue()
	if err != nil {
		return jsonErr(err)
	}
	if k := v.Kind(); (k == '{' || k == '[') && !v.IsValid() {
		// The decoder lets duplicate names through (w.names finds them in
		// the objects it walks); a selected object is checked whole.
		return malformed("duplicate key")
	}
	end := int(w.dec.InputOffset())
	start := end - len(v)
	sel := w.m.idx[i]
	w.out = AppendWiping(w.out, w.src[w.last:start])
	out, err := w.edit(w.out, sel, v)
	if err != nil {
		return err
	}
	w.out = out
	w.last = end
	if w.counts != nil {
		w.counts[sel]++
	}
	return nil
}

// jsonErr turns a decoder error into a refusal that names the problem and
// its byte offset, never the offending text or key.
func jsonErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return malformed("the JSON ends early")
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		reason := "invalid JSON"
		switch {
		case errors.Is(se.Err, jsontext.ErrDuplicateName):
			reason = "duplicate key"
		case errors.Is(se.Err, jsontext.ErrNonStringName):
			reason = "object key is not a string"
		case strings.Contains(se.Err.Error(), "UTF-8"):
			reason = "invalid UTF-8"
		}
		// The JSON pointer is left out: object keys can be data too.
		return malformed("%s at byte %d", reason, se.ByteOffset)
	}
	return malformed("invalid JSON")
}

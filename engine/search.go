package engine

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
	"github.com/phiguard/phiguard/search"
)

// Searchable fields. A stored value of a searchable: words field is one
// JSON string: its token, then a space and an index word for each of its
// distinct words ("ephi:v1:org:id:… w9abcdefgh w9…"); the app's full-text
// search indexes the index words, and a reader is shown only what the
// token opens to. A searchable: exact field is sealed by the org's
// exact-match key (ephi:d1:…), equal for equal normalized values. A search
// term (search_request) becomes what the stored field holds: its index
// words, joined as the route says, or its exact-match token.

// errNotSearcher: the caller's role may not read the route's protected
// fields, so it may not search them either: which rows match is itself
// what they hold.
var errNotSearcher = refusal.New(refusal.Forbidden, "the caller's role may not search this route's protected fields")

// checkSearchParams keeps a search term from reaching the app untouched
// on a request that the route rewriting it does not take (another
// method, another route, none): such a request may not carry a query
// parameter the app could read as one. And when any route takes search
// terms in the query, the Referer header loses its query: a search
// page's address would carry the term on every request after it.
func (e *Engine) checkSearchParams(h http.Header, query url.Values, path string, plan *routePlan) error {
	if ref := h.Get("Referer"); strings.ContainsAny(ref, "?#") {
		ref, _, _ = strings.Cut(ref, "#")
		ref, _, _ = strings.Cut(ref, "?")
		h.Set("Referer", ref)
	}
	if len(query) == 0 {
		return nil
	}
	for _, param := range e.pol.SearchParamsAt(path) {
		if plan != nil && slices.ContainsFunc(plan.query, func(s policy.Selector) bool { return s.QueryName == param }) {
			continue // rewritten (or refused as an alias) by sealQuery
		}
		for name := range query {
			if codec.QueryNameReads(name, param) {
				return badRequest("the search parameter %s is rewritten only on its search route; this request would forward it as written", param)
			}
		}
	}
	return nil
}

// searchAliases returns the body fields a route's request may not hold
// because the app could read them as one of its search terms that the
// body would carry untouched: a query: term's name, as a top-level JSON
// member or a form field; a JSON term's name as a form field; a form
// term's name as a top-level JSON member. Frameworks merge the query, JSON
// and form parameters into one.
func searchAliases(terms, reqSels []policy.Selector) (jsonNames []policy.Selector, form []string) {
	jsonSelected := func(name string) bool {
		return slices.ContainsFunc(reqSels, func(s policy.Selector) bool {
			return !s.Form && len(s.Steps) == 1 && s.Steps[0].Kind == policy.StepChild && strings.EqualFold(s.Steps[0].Name, name)
		})
	}
	formSelected := func(name string) bool {
		return slices.ContainsFunc(reqSels, func(s policy.Selector) bool {
			return s.Form && (strings.EqualFold(s.FormName, name) ||
				s.FormPrefix && len(name) >= len(s.FormName) && strings.EqualFold(name[:len(s.FormName)], s.FormName))
		})
	}
	for _, t := range terms {
		var name string
		switch {
		case t.Query:
			name = t.QueryName
		case t.Form:
			name = t.FormName
		case len(t.Steps) == 1 && t.Steps[0].Kind == policy.StepChild:
			name = t.Steps[0].Name
		default:
			continue
		}
		if !t.Form && !formSelected(name) {
			form = append(form, name)
		}
		if (t.Query || t.Form) && !jsonSelected(name) {
			jsonNames = append(jsonNames, policy.Selector{Text: "$." + name, Steps: []policy.Step{{Kind: policy.StepChild, Name: name}}})
		}
	}
	return jsonNames, form
}

// errNoWords: the search term holds no word the index has.
var errNoWords = refusal.New(refusal.BadRequest, "the search term has no word phiguard indexes (words are letters and digits; stop words and short words are left out)")

// appendWords appends, for the string value v of a searchable: words
// field, the token and its index words (the JSON string's content, without
// quotes); n is the number of index words.
func (x *Exchange) appendWords(ctx context.Context, dst []byte, v jsontext.Value) (out []byte, n int, err error) {
	org := x.decision.Org
	dst, err = x.e.keys.AppendEncrypt(ctx, dst, org, v)
	if err != nil {
		return dst, 0, x.e.sealFailure(err)
	}
	if v.Kind() != '"' {
		return dst, 0, nil // numbers and the like: the token alone
	}
	text, err := jsontext.AppendUnquote(getBuffer(len(v)), v)
	if err != nil {
		putBuffer(text)
		return dst, 0, badRequest("a searchable value is not a valid JSON string")
	}
	dst, n, err = search.AppendIndex(dst, string(text), x.e.pol.Search.Words, func(dst, w []byte) ([]byte, error) {
		return x.e.keys.AppendIndexWord(dst, org, w, x.e.pol.Search.IndexChars)
	})
	putBuffer(text)
	if err != nil {
		return dst, 0, x.e.sealFailure(err)
	}
	return dst, n, nil
}

// exactPlaintext returns what an exact field's value v seals: a string
// normalized as sel says and quoted afresh (so "a\u002db" and "a-b" are
// one value), or any other value as written.
func (x *Exchange) exactPlaintext(sel *policy.Selector, v jsontext.Value) ([]byte, error) {
	if v.Kind() != '"' {
		if sel.Normalize != "" && sel.Normalize != search.None {
			return nil, badRequest("%s: normalize %s needs a string", sel.Text, sel.Normalize)
		}
		return v, nil
	}
	text, err := jsontext.AppendUnquote(nil, v)
	if err != nil {
		return nil, badRequest("%s: not a valid JSON string", sel.Text)
	}
	norm, err := search.Normalize(sel.Normalize, string(text), x.e.pol.Search.PhoneRegion)
	clear(text) // it held plaintext
	if err != nil {
		return nil, badRequest("%s: %v", sel.Text, err)
	}
	return jsontext.AppendQuote(nil, norm)
}

// appendExact appends the exact-match token of v (normalized) to dst.
func (x *Exchange) appendExact(ctx context.Context, dst []byte, sel *policy.Selector, v jsontext.Value) ([]byte, error) {
	pt, err := x.exactPlaintext(sel, v)
	if err != nil {
		return dst, err
	}
	dst, err = x.e.keys.AppendEncryptExact(ctx, dst, x.decision.Org, pt)
	if err != nil {
		return dst, x.e.sealFailure(err)
	}
	return dst, nil
}

// sealValue appends to dst what the selected request value v is stored
// as: a JSON string holding its token (and index words). sel is the
// position in the plan's request selectors.
func (x *Exchange) sealValue(ctx context.Context, dst []byte, sel int, v jsontext.Value) ([]byte, error) {
	if sel >= x.plan.recStart {
		x.recordValue(x.decision.Route.RecordRequestNames[sel-x.plan.recStart], v)
		return append(dst, v...), nil
	}
	if sel >= x.plan.nEnc {
		return x.searchTerm(ctx, dst, &x.plan.reqSels[sel], v)
	}
	s := &x.plan.reqSels[sel]
	dst = append(dst, '"')
	var err error
	switch s.Search {
	case policy.SearchWords:
		var n int
		dst, n, err = x.appendWords(ctx, dst, v)
		if err == nil {
			x.rec.AddField(audit.ActionIndex, s.Text, "", n)
		}
	case policy.SearchExact:
		dst, err = x.appendExact(ctx, dst, s, v)
	default:
		dst, err = x.e.keys.AppendEncrypt(ctx, dst, x.decision.Org, v)
		if err != nil {
			err = x.e.sealFailure(err)
		}
	}
	if err != nil {
		return dst, err
	}
	x.rec.AddField(audit.ActionEncrypt, s.Text, "", 1)
	x.out.Request.found(sel)
	return append(dst, '"'), nil
}

// searchTerm appends to dst, as a JSON string, what the search term v
// becomes.
func (x *Exchange) searchTerm(ctx context.Context, dst []byte, s *policy.Selector, v jsontext.Value) ([]byte, error) {
	if v.Kind() != '"' {
		return dst, badRequest("%s: a search term must be a string", s.Text)
	}
	text, err := jsontext.AppendUnquote(nil, v)
	if err != nil {
		return dst, badRequest("%s: not a valid JSON string", s.Text)
	}
	term, err := x.termFor(ctx, s, string(text))
	clear(text) // it held plaintext
	if err != nil {
		return dst, err
	}
	return jsontext.AppendQuote(dst, term)
}

// termFor is what the search term text becomes for selector s: its index
// words joined by s.Join, or its exact-match token. The term's words are
// counted in the audit record, never written.
func (x *Exchange) termFor(ctx context.Context, s *policy.Selector, text string) (string, error) {
	org := x.decision.Org
	if s.Search == policy.SearchExact {
		pt, err := jsontext.AppendQuote(nil, text)
		if err != nil {
			return "", badRequest("%s: a search term must be valid UTF-8", s.Text)
		}
		tok, err := x.appendExact(ctx, nil, s, pt)
		if err != nil {
			return "", err
		}
		x.rec.AddField(audit.ActionSearch, s.Text, "", 1)
		return string(tok), nil
	}
	if n := x.indexWordsOnly(s, text); n > 0 {
		// Already index words (the app's own "next page" link): as it is.
		x.rec.AddField(audit.ActionSearch, s.Text, "", n)
		return text, nil
	}
	words := search.Words(text, x.e.pol.Search.Words)
	if len(words) == 0 {
		return "", errNoWords
	}
	var b []byte
	for i, w := range words {
		if i > 0 {
			b = append(b, s.Join...)
		}
		var err error
		if b, err = x.e.keys.AppendIndexWord(b, org, []byte(w), x.e.pol.Search.IndexChars); err != nil {
			return "", x.e.sealFailure(err)
		}
	}
	x.rec.AddField(audit.ActionSearch, s.Text, "", len(words))
	return string(b), nil
}

// indexWordsOnly returns how many index words text holds if it is index
// words of the policy's length and the words of s.Join alone (a term
// phiguard made before, which the app echoes in its links), else 0.
func (x *Exchange) indexWordsOnly(s *policy.Selector, text string) int {
	n := 0
	for _, f := range strings.Fields(text) {
		switch {
		case keys.IsIndexWord(f, x.e.pol.Search.IndexChars):
			n++
		case slices.Contains(strings.Fields(s.Join), f):
		default:
			return 0
		}
	}
	return n
}

// sealQuery rewrites the query parameters the route's search_request
// names, in place and in order; every other pair is kept byte for byte.
func (x *Exchange) sealQuery(ctx context.Context, raw string) (string, error) {
	if raw == "" {
		return raw, nil
	}
	var b strings.Builder
	for i, pair := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		rawKey, rawVal, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return "", badRequest("malformed query string")
		}
		s := x.querySelector(key)
		if s == nil {
			if param, ok := x.queryAlias(key); ok {
				return "", badRequest("a query parameter the app may read as the search parameter %s; send the term as %s", param, param)
			}
			b.WriteString(pair)
			continue
		}
		val, err := url.QueryUnescape(rawVal)
		if err != nil {
			return "", badRequest("malformed query string")
		}
		term, err := x.termFor(ctx, s, val)
		if err != nil {
			return "", err
		}
		b.WriteString(rawKey)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(term))
	}
	return b.String(), nil
}

// querySelector is the route's query selector for parameter name, or nil.
func (x *Exchange) querySelector(name string) *policy.Selector {
	for i := range x.plan.query {
		if x.plan.query[i].QueryName == name {
			return &x.plan.query[i]
		}
	}
	return nil
}

// queryAlias returns the search parameter that name is not, but that the
// app might read it as (Q, q[], " q"): its term would reach the app
// untouched.
func (x *Exchange) queryAlias(name string) (string, bool) {
	for _, s := range x.plan.query {
		if codec.QueryNameReads(name, s.QueryName) {
			return s.QueryName, true
		}
	}
	return "", false
}

// Query is the query string to forward: the request's, with the search
// terms the route names replaced.
func (x *Exchange) Query() string { return x.query }

// indexedToken returns the token of a stored searchable: words value, the
// text before its index words, and whether what follows the token is
// index words alone. A value without a space is returned as it is.
func indexedToken(s []byte) ([]byte, bool) {
	tok, rest, found := bytes.Cut(s, []byte{' '})
	if !found {
		return s, true
	}
	for w := range bytes.SplitSeq(rest, []byte{' '}) {
		if !keys.IsIndexWord(w, len(w)-len(keys.IndexWordPrefix)) {
			return nil, false
		}
	}
	return tok, true
}

// maxRecordedRunes bounds one recorded value.
const maxRecordedRunes = 128

// recordValue notes the value v of a recorded field (the route's record)
// in the audit record: a string's content, or a number, true, false or
// null as written; control characters dropped, at most 128 characters.
// An object or array is noted as such, never copied.
func (x *Exchange) recordValue(name string, v jsontext.Value) {
	var text string
	switch v.Kind() {
	case '"':
		u, err := jsontext.AppendUnquote(nil, v)
		if err != nil {
			return
		}
		text = string(u)
	case '{', '[':
		text = "(not recorded: not a single value)"
	default:
		text = string(v)
	}
	text = audit.Text(text, maxRecordedRunes)
	x.rec.Recorded = append(x.rec.Recorded, audit.Value{Name: name, Value: text})
}

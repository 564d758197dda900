package explain

import (
	"fmt"
	"slices"
	"strings"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/policy"
)

// listOrder is the order in which a body's report shows a route's lists:
// the order phiguard applies them.
var listOrder = []string{
	"encrypt_request", "search_request", "record.request", "consent_keywords.from", "consent_keywords.text",
	"decrypt_response", "record.response",
	"drop_request", "decrypt_request", "replace_request", "dlp.fields", "consent.to",
	"encrypt_response",
}

func sortSelectors(s []Selector) {
	slices.SortStableFunc(s, func(a, b Selector) int {
		if d := slices.Index(listOrder, a.List) - slices.Index(listOrder, b.List); d != 0 {
			return d
		}
		return a.Index - b.Index
	})
}

func sealDoes(s policy.Selector) string {
	switch s.Search {
	case policy.SearchWords:
		return "encrypt, with an index word per distinct word (searchable: words)"
	case policy.SearchExact:
		return "encrypt as an exact-match token (searchable: exact" + normalized(s) + ")"
	}
	return "encrypt (a randomized token)"
}

func normalized(s policy.Selector) string {
	if s.Normalize == "" || s.Normalize == "none" {
		return ""
	}
	return ", normalize: " + s.Normalize
}

func searchDoes(s policy.Selector) string {
	if s.Search == policy.SearchExact {
		if n := normalized(s); n != "" {
			return "search term: becomes its exact-match token (" + strings.TrimPrefix(n, ", ") + ")"
		}
		return "search term: becomes its exact-match token"
	}
	return fmt.Sprintf("search term: becomes its index words, joined by %q", s.Join)
}

// requestRefs are an ingress route's selectors of the request: the
// body's (in the engine's order: encrypt_request, body search terms,
// record), the query's search terms, and consent keywords.
func (r *run) requestRefs(route *policy.Route) (body, query, keywords []selRef) {
	for j, s := range route.EncryptRequest {
		body = append(body, selRef{list: "encrypt_request", index: j, sel: s, does: sealDoes(s), act: actSeal})
	}
	for j, s := range route.SearchRequest {
		ref := selRef{list: "search_request", index: j, sel: s, does: searchDoes(s), act: actSearch}
		if s.Query {
			query = append(query, ref)
		} else {
			body = append(body, ref)
		}
	}
	for j, s := range route.RecordRequest {
		name := route.RecordRequestNames[j]
		body = append(body, selRef{list: "record.request", index: j, sel: s, does: "record its value in the audit record as " + name, act: actRecord, name: name})
	}
	if route.ConsentFrom != nil {
		keywords = append(keywords,
			selRef{list: "consent_keywords.from", sel: *route.ConsentFrom, does: "read as the sender of a STOP or START", act: actKeyword},
			selRef{list: "consent_keywords.text", sel: *route.ConsentText, does: "read for a STOP or START keyword", act: actKeyword})
	}
	return body, query, keywords
}

func (r *run) responseRefs(route *policy.Route) []selRef {
	var refs []selRef
	does := "decrypt for the caller"
	if r.caller.Role != "" {
		does = "decrypt for role " + r.caller.Role
	}
	if !r.isReader(route) {
		does = "mask: role " + r.caller.Role + " is not among the readers"
		if r.caller.Role == "" {
			does = "mask: the caller has no role, and the route names readers"
		}
	}
	for j, s := range route.DecryptResponse {
		refs = append(refs, selRef{list: "decrypt_response", index: j, sel: s, does: does, act: actReveal})
	}
	for j, s := range route.RecordResponse {
		name := route.RecordResponseNames[j]
		refs = append(refs, selRef{list: "record.response", index: j, sel: s, does: "record its value in the audit record as " + name, act: actRecord, name: name})
	}
	return refs
}

// explainIngressBodies reports the request's body (and query search
// terms) and the answer's.
func (r *run) explainIngressBodies(route *policy.Route, forwardedQuery string, sealed, opened []byte, touchesPHI bool) {
	ex := r.ex
	var body, query, keywords []selRef
	if route != nil && route.Deny == "" {
		body, query, keywords = r.requestRefs(route)
	}
	if len(r.reqBody) > 0 || len(body) > 0 || len(query) > 0 {
		ex.Request = r.ingressRequest(body, query, keywords, forwardedQuery, sealed)
	}
	if r.resp == nil {
		return
	}
	if !ex.Decision.Allowed && ex.Decision.Stage != "response body" {
		ex.Notes = append(ex.Notes, "the answer is not explained: the request is refused, so the app is never called")
		return
	}
	var refs []selRef
	if route != nil && touchesPHI {
		refs = r.responseRefs(route)
	}
	ex.Response = r.ingressAnswer(route, refs, opened)
}

// ingressRequest locates the request's selectors: the body's (as sealed,
// when the engine sealed it), the query's search terms (as forwarded),
// and the consent keywords read.
func (r *run) ingressRequest(body, query, keywords []selRef, forwardedQuery string, sealed []byte) *Body {
	sb := readSample(r.req.Header, r.reqBody)
	b := newBody(sb, len(r.reqBody))
	b.Rewritten = sealed != nil
	var groups []*group
	if len(body) > 0 {
		g := locate(sb, body)
		out := readOut(sb.format, sealed)
		g.forEachFound(sb, func(i int, loc *Location, in val, path string, field int) {
			o, ok := out.at(path, field)
			loc.Outcome = r.requestOutcome(g.refs[i], in, o, ok)
		})
		b.Selectors = append(b.Selectors, g.sels...)
		groups = append(groups, g)
	}
	if len(query) > 0 {
		headPassed := r.refusedErr == nil || r.ex.Decision.Stage != "head"
		qs := r.queryGroup(query, forwardedQuery, headPassed)
		b.Selectors = append(b.Selectors, qs...)
		b.Rewritten = b.Rewritten || headPassed && r.ex.Decision.Allowed && slices.ContainsFunc(qs, func(s Selector) bool { return len(s.Found) > 0 })
	}
	if len(keywords) > 0 {
		g := locate(sb, keywords)
		for i := range g.sels {
			for j := range g.sels[i].Found {
				g.sels[i].Found[j].Outcome = "read"
			}
		}
		b.Selectors = append(b.Selectors, g.sels...)
		groups = append(groups, g)
	}
	sortSelectors(b.Selectors)
	p, f, notes := takenBy(groups...)
	b.Untaken = untaken(sb, p, f, notes, true)
	return b
}

// ingressAnswer locates the answer's selectors, as opened when the
// engine opened it.
func (r *run) ingressAnswer(route *policy.Route, refs []selRef, opened []byte) *Body {
	rb := readSample(r.resp.Header, r.respBody)
	b := newBody(rb, len(r.respBody))
	b.Status = r.resp.StatusCode
	b.Rewritten = opened != nil
	var groups []*group
	if len(refs) > 0 {
		g := locate(rb, refs)
		out := readOut(rb.format, opened)
		org, reader := r.ex.Org, r.isReader(route)
		g.forEachFound(rb, func(i int, loc *Location, in val, path string, field int) {
			o, ok := out.at(path, field)
			loc.Outcome = r.responseOutcome(g.refs[i], in, o, ok, reader, org)
		})
		b.Selectors = g.sels
		groups = append(groups, g)
		if foundAs(g.sels, "plaintext") {
			r.ex.Notes = append(r.ex.Notes, "explain holds no keys: every well-formed token of the org is taken to open. One that does not (altered, or sealed by a key the keyring lacks) shows the mask: "+engine.MaskUndecodable)
		}
	}
	sortSelectors(b.Selectors)
	p, f, notes := takenBy(groups...)
	b.Untaken = untaken(rb, p, f, notes, false)
	return b
}

// foundAs reports whether a selector of sels left a value as outcome.
func foundAs(sels []Selector, outcome string) bool {
	return slices.ContainsFunc(sels, func(s Selector) bool {
		return slices.ContainsFunc(s.Found, func(l Location) bool { return l.Outcome == outcome })
	})
}

func (r *run) requestOutcome(ref selRef, in, o val, ok bool) string {
	switch ref.act {
	case actRecord:
		return "recorded as " + ref.name
	case actSeal:
		if !ok {
			return ""
		}
		switch ref.sel.Search {
		case policy.SearchExact:
			return "exact-match token"
		case policy.SearchWords:
			if in.kind != '"' {
				return "token (not a string: no index words)"
			}
			return "token + " + plural(indexWords(o.text, r.pol.Search.IndexChars), "index word")
		}
		return "token"
	case actSearch:
		if !ok {
			return ""
		}
		return r.searchOutcome(ref, o.text)
	}
	return ""
}

func (r *run) responseOutcome(ref selRef, in, o val, ok, reader bool, org string) string {
	switch ref.act {
	case actRecord:
		return "recorded as " + ref.name
	case actReveal:
		switch {
		case in.kind == 'n':
			return "null: kept"
		case !ok:
			return ""
		case o.kind == '"' && o.text == r.pol.File.Mask:
			if !reader {
				return "mask: " + engine.MaskNotReader
			}
			return "mask: " + maskReason(in, org)
		}
		return "plaintext"
	}
	return ""
}

// egressRefs are an egress route's selectors of the request: the
// rewrite's (in the engine's order: decrypt_request, replace_request,
// dlp.fields), drop_request's, and the consent check's.
func egressRefs(rule *policy.EgressRule) (rewrite, drops, consentTo []selRef) {
	for j, s := range rule.Decrypt {
		rewrite = append(rewrite, selRef{list: "decrypt_request", index: j, sel: s, does: "decrypt tokens for the vendor (BAA)", act: actOpen})
	}
	for j, s := range rule.Replace {
		rewrite = append(rewrite, selRef{list: "replace_request", index: j, sel: s, does: fmt.Sprintf("replace with %q", rule.ReplaceText[j]), act: actReplace})
	}
	for j, s := range rule.DLPFields {
		what := "block the call"
		if rule.DLPRedact {
			what = "redact what is found"
		}
		does := "scan for tokens"
		if rule.DLP != nil {
			does = "DLP scan (" + strings.Join(rule.DLP.Names(), ", ") + "), " + what
		}
		rewrite = append(rewrite, selRef{list: "dlp.fields", index: j, sel: s, does: does, act: actScan})
	}
	for j, s := range rule.Drop {
		drops = append(drops, selRef{list: "drop_request", index: j, sel: s, does: "drop (names in any letter case)", act: actDrop})
	}
	if rule.ConsentTo != nil {
		does := "check the recipient's consent (opted out: 403 no_consent)"
		if rule.RequireConsent {
			does = "check the recipient's consent (opted out, or never opted in: 403 no_consent)"
		}
		consentTo = append(consentTo, selRef{list: "consent.to", sel: *rule.ConsentTo, does: does, act: actConsent})
	}
	return rewrite, drops, consentTo
}

// explainEgressBodies reports the call's body and the vendor's answer.
func (r *run) explainEgressBodies(route *policy.Route, sealed, answered []byte) {
	ex := r.ex
	if route == nil {
		if len(r.reqBody) > 0 {
			sb := readSample(r.req.Header, r.reqBody)
			ex.Request = newBody(sb, len(r.reqBody))
			ex.Request.Untaken = untaken(sb, func(string) bool { return false }, func(int) bool { return false }, nil, true)
		}
		return
	}
	ex.Request = r.egressRequest(route.Egress, sealed)
	if r.resp == nil {
		return
	}
	if !ex.Decision.Allowed && ex.Decision.Stage != "response body" {
		ex.Notes = append(ex.Notes, "the answer is not explained: the call is refused, so the vendor is never contacted")
		return
	}
	ex.Response = r.egressAnswer(route.Egress, answered)
}

// egressRequest locates the call's selectors: drop_request's in the body
// as the app wrote it, the others' in what is left once dropped, as the
// engine rewrote it for the vendor.
func (r *run) egressRequest(rule *policy.EgressRule, sealed []byte) *Body {
	rewrite, drops, consentTo := egressRefs(rule)
	sb := readSample(r.req.Header, r.reqBody)
	b := newBody(sb, len(r.reqBody))
	b.Rewritten = sealed != nil
	dg, kept, keptFields, rest := dropped(sb, drops)
	b.Selectors = append(b.Selectors, dg.sels...)
	g := locate(rest, rewrite)
	groups := []*group{g}
	out := readOut(rest.format, sealed)
	g.forEachFound(rest, func(i int, loc *Location, in val, path string, field int) {
		o, ok := out.at(path, field)
		loc.Outcome = r.egressOutcome(rule, g.refs[i], in, o, ok)
	})
	b.Selectors = append(b.Selectors, g.sels...)
	if foundAs(g.sels, "plaintext for the vendor") {
		r.ex.Notes = append(r.ex.Notes, "explain holds no keys: every well-formed token of an org the route serves is taken to open. One that does not refuses the call (403 token_invalid)")
	}
	if len(consentTo) > 0 {
		cg := locate(rest, consentTo)
		state := ""
		if rec := r.lastRecord(); rec != nil {
			for _, f := range rec.Fields {
				if f.Action == audit.ActionConsent && f.Path == rule.ConsentTo.Text {
					state = "consent: " + f.Reason
				}
			}
		}
		cg.forEachFound(rest, func(_ int, loc *Location, _ val, _ string, _ int) { loc.Outcome = state })
		b.Selectors = append(b.Selectors, cg.sels...)
		groups = append(groups, cg)
	}
	sortSelectors(b.Selectors)
	// The groups located fields of rest: their notes and takings are
	// mapped back to the fields of the body as the app wrote it.
	takenPath, takenField, notes := takenBy(groups...)
	own := map[string]string{}
	for k, v := range notes {
		if !strings.HasPrefix(k, "field ") {
			own[k] = v
		}
	}
	for i, k := range keptFields {
		if n, ok := notes[fmt.Sprint("field ", k)]; ok {
			own[fmt.Sprint("field ", i)] = n
		}
	}
	b.Untaken = untaken(sb, func(p string) bool { return !kept(p) || takenPath(p) }, func(i int) bool {
		k, ok := keptFields[i]
		return !ok || takenField(k)
	}, own, true)
	return b
}

// egressAnswer locates encrypt_response in the vendor's answer, as the
// engine sealed it.
func (r *run) egressAnswer(rule *policy.EgressRule, answered []byte) *Body {
	rb := readSample(r.resp.Header, r.respBody)
	b := newBody(rb, len(r.respBody))
	b.Status = r.resp.StatusCode
	b.Rewritten = answered != nil
	var refs []selRef
	for j, s := range rule.EncryptResponse {
		refs = append(refs, selRef{list: "encrypt_response", index: j, sel: s, does: "seal the vendor's echo before the app stores it", act: actSealAnswer})
	}
	g := locate(rb, refs)
	out := readOut(rb.format, answered)
	g.forEachFound(rb, func(i int, loc *Location, in val, path string, field int) {
		o, ok := out.at(path, field)
		switch {
		case in.kind == 'n':
			loc.Outcome = "null: kept"
		case !ok:
		case o.kind == '"' && o.text == r.pol.File.Mask:
			loc.Outcome = "mask: no organization to seal for"
		default:
			loc.Outcome = "token"
		}
	})
	b.Selectors = g.sels
	p, f, notes := takenBy(g)
	b.Untaken = untaken(rb, p, f, notes, false)
	return b
}

func (r *run) egressOutcome(rule *policy.EgressRule, ref selRef, in, o val, ok bool) string {
	switch ref.act {
	case actOpen:
		if in.kind == '"' && strings.HasPrefix(in.text, "ephi:") {
			if !ok {
				return "a token"
			}
			return "plaintext for the vendor"
		}
		return "not a token: sent as written (pass)"
	case actReplace:
		if ok {
			return "replaced"
		}
	case actScan:
		if in.kind != '"' {
			return "not a string: nothing to scan"
		}
		if codec.HasTokenMarker(in.text) {
			return "token-like text: refuses the call"
		}
		if rule.DLP == nil {
			return ""
		}
		found := rule.DLP.Scan([]byte(in.text))
		if found == 0 {
			return "nothing found"
		}
		names := strings.Join(found.Names(rule.DLP), ", ")
		if rule.DLPRedact {
			return "redacted: " + names
		}
		return "blocks the call: " + names
	}
	return ""
}

// dropped locates what drop_request removes from sb (each value by the
// first drop selector that names it, as the codec reads names), and
// returns the body that is left, with which of sb's paths and fields
// remain in it (keptFields maps a field of sb to its place in rest).
func dropped(sb sampleBody, drops []selRef) (g *group, kept func(string) bool, keptFields map[int]int, rest sampleBody) {
	g = &group{refs: drops, jsonAt: map[string]int{}}
	for _, ref := range drops {
		g.sels = append(g.sels, newSelector(ref))
	}
	gone := map[string]bool{}
	keptFields = map[int]int{}
	rest = sb
	switch sb.format {
	case "json":
		rest = droppedJSON(sb, g, gone)
	case "form":
		rest = droppedForm(sb, g, keptFields)
	}
	for i := range g.sels {
		if len(g.sels[i].Found) == 0 && g.sels[i].Refused == "" {
			g.sels[i].Hints = append(g.sels[i].Hints, nothingHints(sb, drops[i].sel)...)
		}
	}
	return g, func(p string) bool { return !gone[p] }, keptFields, rest
}

// droppedJSON runs each drop selector alone to see which members it
// removes (noted in gone), then all of them for the body left.
func droppedJSON(sb sampleBody, g *group, gone map[string]bool) sampleBody {
	for i, ref := range g.refs {
		out, _, err := codec.DropJSON(sb.raw, []policy.Selector{ref.sel})
		if err != nil {
			g.sels[i].Refused = reasonOf(err)
			continue
		}
		left, err := parseJSON(out)
		if err != nil {
			continue
		}
		idx := left.index()
		sb.root.walk(func(n *node) bool {
			if gone[n.path] {
				return false
			}
			if _, ok := idx[n.path]; !ok {
				gone[n.path] = true
				g.sels[i].Found = append(g.sels[i].Found, Location{Path: n.path, Type: n.typ(), Outcome: "dropped"})
				return false
			}
			return true
		})
	}
	if len(g.refs) == 0 {
		return sb
	}
	out, _, err := codec.DropJSON(sb.raw, selectorsOf(g.refs))
	if err != nil {
		return sb
	}
	root, err := parseJSON(out)
	if err != nil {
		return sb
	}
	return sampleBody{contentType: sb.contentType, format: "json", root: root, raw: out}
}

// droppedForm drops field by field, as DropForm does, and returns the
// fields left (kept maps each field of sb left to its place among them).
func droppedForm(sb sampleBody, g *group, kept map[int]int) sampleBody {
	var left []pair
	var raws []string
	for i, f := range sb.fields {
		if f.empty {
			continue
		}
		_, counts, err := codec.DropForm([]byte(f.raw), selectorsOf(g.refs))
		by := -1
		if err == nil {
			by = slices.IndexFunc(counts, func(n int) bool { return n > 0 })
		}
		if by >= 0 {
			g.sels[by].Found = append(g.sels[by].Found, Location{Path: fieldName(f), Type: f.typ(), Outcome: "dropped"})
			continue
		}
		kept[i] = len(left)
		left = append(left, f)
		raws = append(raws, f.raw)
	}
	return sampleBody{contentType: sb.contentType, format: "form", fields: left, raw: []byte(strings.Join(raws, "&"))}
}

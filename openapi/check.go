package openapi

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/phiguard/phiguard/policy"
)

// Severity says whether a finding fails the check.
type Severity uint8

const (
	// Warning: worth a look; the check still passes.
	Warning Severity = iota + 1
	// Error: the policy cannot do what it says for this API; the check fails.
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Finding is one thing the check found.
type Finding struct {
	Severity Severity
	// Location names what the finding is about: an operation
	// ("GET /api/v1/contacts"), a route ("routes[3] (send-message)"), a
	// selector of a route, by its list and its text (`routes[3]
	// (send-message) encrypt_request "$.body"`), or an operation and the
	// route that covers it.
	Location string
	Message  string

	// Sort keys: route-level findings (no operation) first, by route;
	// then by operation path, method and route.
	path, method string
	route        int
}

func (f Finding) String() string { return f.Severity.String() + " " + f.Location + ": " + f.Message }

// Report is what Check found.
type Report struct {
	// Spec is the spec's path, as given.
	Spec string
	// Operations is how many operations the spec has; Covered how many
	// of them a route takes (deny routes included).
	Operations, Covered int
	// Findings in a stable order: route-level ones by route index, then
	// by operation path, method and route index.
	Findings []Finding
}

// Errors counts the findings of severity Error.
func (r *Report) Errors() int { return r.count(Error) }

// Warnings counts the findings of severity Warning.
func (r *Report) Warnings() int { return r.count(Warning) }

func (r *Report) count(s Severity) (n int) {
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// WriteText writes one line per finding, "SEVERITY LOCATION: MESSAGE",
// then a summary line.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s: %d operations, %d covered by a route; %d error(s), %d warning(s)\n",
		r.Spec, r.Operations, r.Covered, r.Errors(), r.Warnings())
	_, err := io.WriteString(w, b.String())
	return err
}

// Options tunes a check.
type Options struct {
	// Sensitive are the property names that look like ePHI, matched
	// word by word (see ParseSensitive); nil means DefaultSensitive.
	Sensitive []string
}

// Check reads the OpenAPI 3.0 or 3.1 description at specPath (JSON or
// YAML; $refs to other local files are followed, remote ones are not)
// and reports how pol's routes cover it:
//
//   - an operation no route takes: warning (refused, or passed untouched,
//     as the policy's default says);
//   - a route that takes no operation: warning;
//   - a selector of a route that cannot exist in the body of any
//     operation the route takes: error; one that only a map's literal key
//     could match: warning;
//   - a property whose name looks sensitive, in the body of an operation
//     a route takes, that no selector of the route covers: warning.
//
// Operations are matched as phiguard matches requests (Policy.Match),
// their paths joined to the path of the first server URL. egress_routes
// are not checked: the description is of the app's own API.
func Check(ctx context.Context, pol *policy.Policy, specPath string, o Options) (*Report, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	loader.IsExternalRefsAllowed = true
	loader.ReadFromURIFunc = openapi3.ReadFromFile // local files only: no request leaves
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("read OpenAPI description %s: %w", specPath, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		return nil, fmt.Errorf("%s: want an OpenAPI 3.0 or 3.1 description (openapi: 3.x), got openapi %q; convert a Swagger 2.0 one first", specPath, doc.OpenAPI)
	}
	ops, err := operations(doc)
	if err != nil {
		return nil, fmt.Errorf("OpenAPI description %s: %w", specPath, err)
	}
	names := o.Sensitive
	if names == nil {
		names = DefaultSensitive
	}
	c := &checker{pol: pol, sensitive: newNameSet(names), taken: map[int][]*operation{}}
	c.match(ops)
	for _, r := range pol.Routes {
		c.checkRoute(r)
	}
	for _, op := range ops {
		if op.route != nil {
			c.checkSensitive(op)
		}
	}
	slices.SortStableFunc(c.findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.path, b.path), cmp.Compare(methodRank(a.method), methodRank(b.method)),
			cmp.Compare(a.method, b.method), cmp.Compare(a.route, b.route))
	})
	rep := &Report{Spec: specPath, Operations: len(ops), Findings: c.findings}
	for _, op := range ops {
		if op.route != nil {
			rep.Covered++
		}
	}
	return rep, nil
}

// operation is one operation of the description.
type operation struct {
	method, path string // path: the server's base path joined to the template
	op           *openapi3.Operation
	route        *policy.Route // the route that takes it; nil: none
}

func (o *operation) String() string { return o.method + " " + o.path }

// operations lists the description's operations, by path then method.
func operations(doc *openapi3.T) ([]*operation, error) {
	if doc.Paths == nil {
		return nil, nil
	}
	var ops []*operation
	keys := doc.Paths.Keys()
	slices.Sort(keys)
	for _, key := range keys {
		item := doc.Paths.Value(key)
		if item == nil {
			continue
		}
		methods := item.Operations()
		for _, m := range slices.SortedFunc(maps.Keys(methods), func(a, b string) int {
			return cmp.Or(cmp.Compare(methodRank(a), methodRank(b)), cmp.Compare(a, b))
		}) {
			op := methods[m]
			servers := doc.Servers
			if len(item.Servers) > 0 {
				servers = item.Servers
			}
			if op.Servers != nil && len(*op.Servers) > 0 {
				servers = *op.Servers
			}
			base, err := servers.BasePath()
			if err != nil {
				return nil, fmt.Errorf("%s %s: server URL: %w", m, key, err)
			}
			ops = append(ops, &operation{method: strings.ToUpper(m), path: joinPath(base, key), op: op})
		}
	}
	return ops, nil
}

func joinPath(base, path string) string {
	base = strings.TrimSuffix(base, "/")
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return base + path
}

var methodOrder = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func methodRank(m string) int {
	if i := slices.Index(methodOrder, m); i >= 0 {
		return i
	}
	return len(methodOrder)
}

type checker struct {
	pol       *policy.Policy
	sensitive nameSet
	taken     map[int][]*operation // route index → the operations it takes
	findings  []Finding
}

func (c *checker) add(f Finding) { c.findings = append(c.findings, f) }

// match finds the route of every operation, as phiguard would for a
// request to it, and reports the operations no route takes.
func (c *checker) match(ops []*operation) {
	for _, op := range ops {
		f := Finding{Severity: Warning, Location: op.String(), path: op.path, method: op.method, route: -1}
		method, ok := policy.CanonicalMethod(op.method)
		if !ok {
			f.Message = "phiguard refuses the method " + op.method + " (405): the app never sees it"
			c.add(f)
			continue
		}
		// A template's {name} segments are matched as they are: a route's
		// literal segment never holds braces, so only a route parameter
		// (or **) takes them.
		op.route, _ = c.pol.Match(method, op.path)
		if op.route != nil {
			c.taken[op.route.Index] = append(c.taken[op.route.Index], op)
			continue
		}
		if c.pol.File.Default == "allow" {
			f.Message = "no route covers it: it passes untouched (default: allow); no field is encrypted or decrypted"
		} else {
			f.Message = "no route covers it: it is refused with 403 (default: deny)"
		}
		c.add(f)
	}
}

// routeName is "routes[3] (send-message)".
func routeName(r *policy.Route) string { return fmt.Sprintf("routes[%d] (%s)", r.Index, r.Name) }

// checkRoute reports a route that takes no operation, and the selectors
// of a route that can match in none of the operations it takes.
func (c *checker) checkRoute(r *policy.Route) {
	ops := c.taken[r.Index]
	if len(ops) == 0 {
		c.add(Finding{Severity: Warning, Location: routeName(r), route: r.Index,
			Message: "covers no operation of the spec: none has its methods and path, or earlier routes take them first"})
		return
	}
	for _, u := range selectorUses(r) {
		c.checkSelector(r, u, ops)
	}
}

// use is a selector of a route, and the list that holds it.
type use struct {
	list     string // encrypt_request
	sel      policy.Selector
	response bool // looked for in 2xx responses, not in the request
}

func selectorUses(r *policy.Route) []use {
	var us []use
	add := func(list string, sels []policy.Selector, response bool) {
		for _, s := range sels {
			if !s.Query {
				us = append(us, use{list, s, response})
			}
		}
	}
	add("encrypt_request", r.EncryptRequest, false)
	add("search_request", r.SearchRequest, false)
	add("record.request", r.RecordRequest, false)
	if r.ConsentFrom != nil {
		add("consent_keywords.from", []policy.Selector{*r.ConsentFrom}, false)
	}
	if r.ConsentText != nil {
		add("consent_keywords.text", []policy.Selector{*r.ConsentText}, false)
	}
	add("decrypt_response", r.DecryptResponse, true)
	add("record.response", r.RecordResponse, true)
	return us
}

// selectorName is `routes[3] (send-message) encrypt_request "$.body"`,
// and the field set the selector came from when the route names one
// rather than the selector.
func (c *checker) selectorName(r *policy.Route, u use) string {
	name := fmt.Sprintf("%s %s %q", routeName(r), u.list, u.sel.Text)
	if r.Index >= len(c.pol.File.Routes) {
		return name
	}
	var written []string
	switch rc := c.pol.File.Routes[r.Index]; u.list {
	case "encrypt_request", "search_request":
		fields := rc.EncryptRequest
		if u.list == "search_request" {
			fields = rc.SearchRequest
		}
		for _, f := range fields {
			written = append(written, f.Field)
		}
	case "decrypt_response":
		written = rc.DecryptResponse
	}
	if slices.Contains(written, u.sel.Text) {
		return name
	}
	for _, set := range c.pol.File.Fields {
		if slices.Contains(written, set.Name) && slices.Contains(set.Selectors, u.sel.Text) {
			return name + " (field set " + set.Name + ")"
		}
	}
	return name
}

// checkSelector reports u when no operation of ops can hold a value it
// selects: an error when every one proves it absent, a warning when the
// best any can say is that a map might have the key.
func (c *checker) checkSelector(r *policy.Route, u use, ops []*operation) {
	var misses []string
	var open string
	for _, op := range ops {
		res := bodyResult(op.op, u.sel, u.response)
		switch res.v {
		case present, unknown:
			return
		case mapKey:
			if open == "" {
				open = "in " + op.String() + ", " + res.explainMap(u.sel)
			}
		case absent:
			misses = append(misses, res.explain(op, u.sel))
		}
	}
	f := Finding{Severity: Error, Location: c.selectorName(r, u), route: r.Index}
	if open != "" {
		f.Severity, f.Message = Warning, "cannot be checked: "+open
		if !u.sel.Form {
			f.Message += "; * selects every value"
		}
	} else {
		f.Message = "can never match: " + strings.Join(misses, "; ")
	}
	c.add(f)
}

// bodyResult walks sel through the request body (or, for response, the
// 2xx response bodies) of op.
func bodyResult(op *openapi3.Operation, sel policy.Selector, response bool) result {
	if response {
		return responseResult(op, sel)
	}
	return requestResult(op, sel)
}

func requestResult(op *openapi3.Operation, sel policy.Selector) result {
	if op.RequestBody == nil || op.RequestBody.Value == nil {
		if op.RequestBody != nil {
			return result{v: unknown}
		}
		return result{v: absent, body: "has no request body"}
	}
	content := op.RequestBody.Value.Content
	if len(content) == 0 {
		return result{v: unknown}
	}
	best := result{v: absent, miss: miss{depth: -2}}
	var others []string
	for _, mt := range slices.Sorted(maps.Keys(content)) {
		m := content[mt]
		if sel.Form && !isForm(mt) || !sel.Form && !isJSON(mt, true) {
			others = append(others, mt)
			continue
		}
		if m == nil || m.Schema == nil {
			return result{v: unknown}
		}
		res := walkSelector(m.Schema, sel)
		res.where = "the request body (" + mt + ")"
		best = better(best, res)
	}
	if best.where == "" {
		kind := "JSON"
		if sel.Form {
			kind = "a form (application/x-www-form-urlencoded)"
		}
		best.body = "takes " + strings.Join(others, " or ") + ", which phiguard does not read as " + kind
	}
	return best
}

func responseResult(op *openapi3.Operation, sel policy.Selector) result {
	if op.Responses == nil || op.Responses.Len() == 0 {
		return result{v: unknown}
	}
	codes := successCodes(op)
	if len(codes) == 0 {
		return result{v: absent, body: "has no 2xx response"}
	}
	best := result{v: absent, miss: miss{depth: -2}}
	var bodiless []string
	for _, code := range codes {
		ref := op.Responses.Value(code)
		if ref == nil || ref.Value == nil {
			return result{v: unknown}
		}
		content := ref.Value.Content
		if len(content) == 0 {
			bodiless = append(bodiless, code+" with no body")
			continue
		}
		for _, mt := range slices.Sorted(maps.Keys(content)) {
			m := content[mt]
			if !isJSON(mt, false) {
				bodiless = append(bodiless, code+" as "+mt+", not JSON")
				continue
			}
			if m == nil || m.Schema == nil {
				return result{v: unknown}
			}
			res := walkSelector(m.Schema, sel)
			res.where = "the " + code + " response"
			best = better(best, res)
		}
	}
	if best.where == "" {
		best.body = "answers " + strings.Join(bodiless, " and ")
	}
	return best
}

// successCodes are the 2xx responses of op (2XX included), in order; or
// default, when there is none of them.
func successCodes(op *openapi3.Operation) []string {
	if op.Responses == nil {
		return nil
	}
	var codes []string
	for _, code := range op.Responses.Keys() {
		if strings.HasPrefix(code, "2") {
			codes = append(codes, code)
		}
	}
	if len(codes) == 0 && op.Responses.Default() != nil {
		codes = []string{"default"}
	}
	slices.Sort(codes)
	return codes
}

// isJSON reports whether a media type key may be a body phiguard reads
// as JSON: in a request, application/json, merge-patch+json, fhir+json,
// hal+json and vnd.*+json (other +json types, JSON Patch first, are
// refused); in a response, application/json and any application/*+json.
// A wildcard may be any of them.
func isJSON(mt string, request bool) bool {
	mt = mediaBase(mt)
	switch {
	case mt == "*/*" || mt == "application/*" || mt == "application/json":
		return true
	case !strings.HasPrefix(mt, "application/") || !strings.HasSuffix(mt, "+json"):
		return false
	case !request:
		return true
	}
	return mt == "application/merge-patch+json" || mt == "application/fhir+json" || mt == "application/hal+json" ||
		strings.HasPrefix(mt, "application/vnd.")
}

// isForm reports whether a media type key may be a urlencoded form.
func isForm(mt string) bool {
	mt = mediaBase(mt)
	return mt == "application/x-www-form-urlencoded" || mt == "*/*" || mt == "application/*"
}

func mediaBase(mt string) string {
	mt, _, _ = strings.Cut(mt, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

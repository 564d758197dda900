package policy

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/phiguard/phiguard/dlp"
)

// Egress configures the listener the app's outbound vendor calls go
// through (egress_routes say which vendors, and what each may receive).
type Egress struct {
	// Listen is where the app sends its vendor calls, in plain HTTP:
	// either as to a forward proxy (HTTP_PROXY=http://127.0.0.1:8081 with
	// http:// vendor URLs) or to the address itself with the vendor's
	// name in the Host header. phiguard calls the vendor over TLS.
	// Default "127.0.0.1:8081"; served only when egress_routes are
	// listed. Keep it on loopback: it holds vendors' credentials in flight.
	Listen string `yaml:"listen"`
	// CAFile is a PEM bundle of the certificate authorities vendors'
	// certificates must chain to, instead of the system's roots (a
	// corporate TLS-inspecting gateway, a test CA). Default: the system's.
	CAFile string `yaml:"ca_file"`
	// UpstreamTimeout bounds waiting for a vendor's response headers.
	// Default 30s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
}

// EgressRouteConfig is one vendor endpoint the app may call, as written.
type EgressRouteConfig struct {
	// Name identifies the route in audit records, metrics and errors.
	// Required, unique among routes and egress_routes.
	Name string `yaml:"name"`
	// Host is the vendor's host name as the app addresses it
	// (api.twilio.com): the host of the request's absolute URL, else its
	// Host header. Matched ignoring letter case and port. Required.
	Host string `yaml:"host"`
	// Upstream is the base URL phiguard calls for this route. Default
	// https://HOST. https only; http only to a loopback address (a
	// local test double).
	Upstream string `yaml:"upstream"`
	// Match says which methods and paths of the host the route takes.
	// Default: every method, every path (/**).
	Match Match `yaml:"match"`
	// BAA says whether a Business Associate Agreement covers the vendor.
	// Required, true or false. Only a BAA vendor may receive plaintext
	// (decrypt_request); a vendor without one gets no phiguard token
	// either: a request that would forward one is refused (403
	// phi_blocked).
	BAA *bool `yaml:"baa"`
	// Orgs are the organizations whose tokens decrypt on this route.
	// Default: every org listed under orgs. A token of any other org is
	// refused (403), never forwarded.
	Orgs []string `yaml:"orgs"`
	// DecryptRequest selects the request values (JSON or form) that are
	// tokens to open for the vendor, each with the org its token names.
	// baa: true routes only. A token found anywhere else in the body is
	// refused: the vendor would get ciphertext (400 token_not_selected).
	DecryptRequest []string `yaml:"decrypt_request"`
	// ReplaceRequest replaces selected values with fixed text (a push
	// notification's body: "You have a new message").
	ReplaceRequest []Replacement `yaml:"replace_request"`
	// DropRequest removes selected members from a JSON body, or fields
	// from a form (a push payload's data).
	DropRequest []string `yaml:"drop_request"`
	// DLP scans selected values for what looks like PHI, after
	// replace_request and drop_request.
	DLP *DLP `yaml:"dlp"`
	// EncryptResponse selects values of the vendor's JSON answer to seal
	// before the app sees them: a carrier that echoes the message's text
	// (Twilio's body) would otherwise put plaintext in the app's store.
	// They are sealed for the org of the tokens the call opened, else the
	// route's one org; when neither tells, they are masked. An answer
	// phiguard cannot read is refused (502): the vendor has acted, but
	// the app never gets plaintext.
	EncryptResponse []string `yaml:"encrypt_response"`
	// Consent checks the recipient of a message against the consent
	// registry (403 no_consent), under the org of the tokens the call
	// decrypts, else the route's one org. Needs audit.hash_key.
	Consent *ConsentCheck `yaml:"consent"`
}

// Replacement is one replace_request item.
type Replacement struct {
	// Field is the selector: $.json.path or form:Name.
	Field string `yaml:"field"`
	// Text replaces every value Field selects (a JSON string). Required.
	Text string `yaml:"text"`
}

// DLP configures the data-loss guardrail of an egress route.
type DLP struct {
	// Detectors to run: ssn, mrn, dob (a date near a birth keyword),
	// phone, email, icd10. Required.
	Detectors []string `yaml:"detectors"`
	// MRNPatterns are the RE2 regular expressions of the orgs' medical
	// record numbers (mrn). Required with mrn.
	MRNPatterns []string `yaml:"mrn_patterns"`
	// DOBKeywords replace the words that must stand near a date for dob.
	// Default: dob, d.o.b., birth, born, birthday, date of birth.
	DOBKeywords []string `yaml:"dob_keywords"`
	// Fields are the selectors whose values are scanned. Required.
	Fields []string `yaml:"fields"`
	// Action on a match: block (default: 403 phi_blocked, audited with
	// the detectors' names, never the match) or redact (each match
	// replaced by [REDACTED], audited likewise, and the request forwarded).
	Action string `yaml:"action"`
}

// Defaults of the egress section.
const (
	DefaultEgressListen          = "127.0.0.1:8081"
	DefaultEgressUpstreamTimeout = 30 * time.Second
)

// DLP actions.
const (
	DLPBlock  = "block"
	DLPRedact = "redact"
)

// EgressRule is what a compiled egress route adds to a Route: where it
// sends, and what the vendor may receive.
type EgressRule struct {
	// Host is the vendor's host, lower-cased, without a port.
	Host string
	// Upstream is the base URL phiguard calls.
	Upstream *url.URL
	// BAA: the vendor is covered by a Business Associate Agreement.
	BAA bool
	// Orgs whose tokens decrypt on the route.
	Orgs map[string]bool
	// Decrypt, Replace and Drop are the route's selectors; ReplaceText[i]
	// is Replace[i]'s text.
	Decrypt, Replace, Drop []Selector
	ReplaceText            []string
	// DLP scans DLPFields; nil for none. DLPRedact: redact rather than block.
	DLP       *dlp.Set
	DLPFields []Selector
	DLPRedact bool
	// EncryptResponse are the vendor's answer's values to seal.
	EncryptResponse []Selector
	// ConsentTo is where the recipient's number is; nil: no consent
	// check. RequireConsent refuses numbers that never opted in too.
	ConsentTo      *Selector
	RequireConsent bool
}

// MatchEgress finds the first egress route that takes a request to host
// (any case, with or without a port) with method (canonical) and path.
func (p *Policy) MatchEgress(host, method, path string) (*Route, Params) {
	host = egressHost(host)
	var segBuf [16]string
	segs := appendSegments(segBuf[:0], path)
	for _, r := range p.EgressRoutes {
		if r.Egress.Host != host || !r.takesMethod(method) {
			continue
		}
		if params, ok := r.Path.match(segs, p.File.CaseSensitivePaths); ok {
			return r, params
		}
	}
	return nil, nil
}

// egressHost is a request's host as egress routes name it: lower case,
// no port, no trailing dot.
func egressHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// HasEgress reports whether the policy lists egress routes: phiguard then
// serves the egress listener.
func (p *Policy) HasEgress() bool { return len(p.EgressRoutes) > 0 }

func (p *Policy) compileEgress(ps *problems, dir string) {
	f := &p.File
	eg := &f.Egress
	if eg.Listen == "" {
		eg.Listen = DefaultEgressListen
	}
	eg.CAFile = resolve(dir, eg.CAFile)
	defaultDuration(ps, "egress.upstream_timeout", &eg.UpstreamTimeout, DefaultEgressUpstreamTimeout)
	if len(f.EgressRoutes) > 0 && sameAddr(eg.Listen, f.Ingress.Listen) {
		ps.add("egress.listen", "%q is the ingress's address too: the app's outbound calls need their own listener", eg.Listen)
	}
	for i := range f.EgressRoutes {
		r := p.compileEgressRoute(ps, i)
		checkShadow(ps, fmt.Sprintf("egress_routes[%d].match", i), "egress_routes", p.EgressRoutes, r, f.CaseSensitivePaths)
		p.EgressRoutes = append(p.EgressRoutes, r)
	}
}

func (p *Policy) compileEgressRoute(ps *problems, i int) *Route {
	rc := p.File.EgressRoutes[i]
	base := fmt.Sprintf("egress_routes[%d]", i)
	rule := &EgressRule{}
	r := &Route{Name: rc.Name, Index: i, Egress: rule}
	if rc.Name == "" {
		ps.add(base, "name is required")
	}
	host := egressHost(rc.Host)
	switch {
	case rc.Host == "":
		ps.add(base+".host", "host is required: the vendor's host name, as the app addresses it (api.twilio.com)")
	case strings.ContainsAny(rc.Host, "/:@?#* ") || host == "":
		ps.add(base+".host", "want a host name alone (api.twilio.com), without scheme, port or path, got %q", rc.Host)
	}
	rule.Host = host
	up := rc.Upstream
	if up == "" && host != "" {
		up = "https://" + host
	}
	if u, err := url.Parse(up); up != "" && (err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil ||
		!(u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
		ps.add(base+".upstream", "want an https:// base URL (http:// only to a loopback address), got %q", rc.Upstream)
	} else if err == nil {
		rule.Upstream = u
	}
	path := rc.Match.Path
	if path == "" {
		path = "/**"
	}
	if t, err := parseTemplate(path); err != nil {
		ps.add(base+".match.path", "%v", err)
	} else {
		r.Path = t
	}
	r.Methods = compileMethods(ps, base, rc.Match.Methods)
	if rc.BAA == nil {
		ps.add(base+".baa", "required: true when a Business Associate Agreement covers the vendor, else false")
	} else {
		rule.BAA = *rc.BAA
	}
	rule.Decrypt = p.compileSelectors(ps, base+".decrypt_request", rc.DecryptRequest)
	if len(rule.Decrypt) > 0 && !rule.BAA {
		ps.add(base+".decrypt_request", "decrypt_request hands plaintext PHI to the vendor: only a vendor under a BAA may get it (baa: true)")
	}
	if len(rc.Orgs) > 0 && len(rule.Decrypt) == 0 {
		ps.add(base+".orgs", "orgs say whose tokens decrypt, but the route decrypts nothing (decrypt_request)")
	}
	rule.Orgs = map[string]bool{}
	for j, o := range rc.Orgs {
		if !p.orgs[o] {
			ps.add(fmt.Sprintf("%s.orgs[%d]", base, j), "organization %q is not listed under orgs", o)
		}
		rule.Orgs[o] = true
	}
	if len(rc.Orgs) == 0 {
		for o := range p.orgs {
			rule.Orgs[o] = true
		}
	}
	fields := make([]Field, len(rc.ReplaceRequest))
	for j, rp := range rc.ReplaceRequest {
		fields[j] = Field{Field: rp.Field}
		if rp.Text == "" {
			ps.add(fmt.Sprintf("%s.replace_request[%d].text", base, j), "required: the fixed text the vendor gets instead")
		}
	}
	rule.Replace = p.compileReplacements(ps, base+".replace_request", fields)
	if len(rule.Replace) == len(rc.ReplaceRequest) {
		for _, rp := range rc.ReplaceRequest {
			rule.ReplaceText = append(rule.ReplaceText, rp.Text)
		}
	}
	rule.Drop = p.compileSelectors(ps, base+".drop_request", rc.DropRequest)
	checkOverlap(ps, base, "decrypt_request", rule.Decrypt, "replace_request", rule.Replace)
	checkOverlap(ps, base, "decrypt_request", rule.Decrypt, "drop_request", rule.Drop)
	checkOverlap(ps, base, "replace_request", rule.Replace, "drop_request", rule.Drop)
	if rc.DLP != nil {
		p.compileDLP(ps, base+".dlp", *rc.DLP, rule)
	}
	rule.EncryptResponse = p.compileSelectors(ps, base+".encrypt_response", rc.EncryptResponse)
	for _, s := range rule.EncryptResponse {
		if s.Form {
			ps.add(s.at, "form selectors apply to request bodies; answers are JSON")
		}
	}
	if rc.Consent != nil {
		p.compileConsentCheck(ps, base+".consent", *rc.Consent, rule)
	}
	return r
}

// checkOverlap refuses a selector listed under two actions of one route:
// which would apply first is not something a reader should have to know.
func checkOverlap(ps *problems, base, an string, a []Selector, bn string, b []Selector) {
	for _, s := range a {
		for _, t := range b {
			if s.Text == t.Text {
				ps.add(t.at, "%q is also under %s: one action per field", t.Text, an)
			}
		}
	}
}

// compileReplacements compiles replace_request's selectors: each has its
// own text, so none names a field set.
func (p *Policy) compileReplacements(ps *problems, path string, fields []Field) []Selector {
	for j, f := range fields {
		if isFieldSetName(f.Field) {
			ps.add(fmt.Sprintf("%s[%d].field", path, j), "each replacement has its own text: name a selector, not a field set")
			return nil
		}
	}
	return p.compileFields(ps, path, fields, false)
}

func (p *Policy) compileDLP(ps *problems, path string, c DLP, rule *EgressRule) {
	switch c.Action {
	case "", DLPBlock:
	case DLPRedact:
		rule.DLPRedact = true
	default:
		ps.add(path+".action", "want block or redact, got %q", c.Action)
	}
	if len(c.Detectors) == 0 {
		ps.add(path+".detectors", "required: one or more of ssn, mrn, dob, phone, email, icd10")
	}
	if len(c.Fields) == 0 {
		ps.add(path+".fields", "required: the selectors whose values are scanned")
	}
	rule.DLPFields = p.compileSelectors(ps, path+".fields", c.Fields)
	if len(c.Detectors) == 0 {
		return
	}
	set, err := dlp.New(dlp.Config{Detectors: c.Detectors, MRNPatterns: c.MRNPatterns, DOBKeywords: c.DOBKeywords})
	if err != nil {
		ps.add(path+"."+dlpErrorPath(err.Error()), "%s", dlpErrorMessage(err.Error()))
		return
	}
	rule.DLP = set
}

// compileMethods compiles a match.methods list; nil means every method.
func compileMethods(ps *problems, base string, methods []string) map[string]bool {
	var set map[string]bool
	for j, m := range methods {
		if !knownMethods[m] {
			ps.add(fmt.Sprintf("%s.match.methods[%d]", base, j), "unknown method %q (want one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, in capitals)", m)
			continue
		}
		if set == nil {
			set = map[string]bool{}
		}
		set[m] = true
	}
	return set
}

// dlpErrorPath and dlpErrorMessage split an error of dlp.New,
// "detectors[2]: unknown detector …", into its key path and message.
func dlpErrorPath(msg string) string {
	path, _, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(path, " \"") {
		return "detectors"
	}
	return path
}

func dlpErrorMessage(msg string) string {
	path, rest, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(path, " \"") {
		return msg
	}
	return rest
}

// KnowsOrg reports whether org is listed under orgs.
func (p *Policy) KnowsOrg(org string) bool { return p.orgs[org] }

package policy

import "github.com/phiguard/phiguard/consent"

// Consent configures the SMS consent registry: patients' opt-out and
// opt-in keywords, arriving on routes with consent_keywords, update it;
// egress routes with consent check it before a message goes out. It
// lives in the state store (state.store): in memory it is lost on a
// restart, so a deployment that relies on it runs store: redis.
type Consent struct {
	// OptOut are the replies that withdraw consent. Default STOP,
	// STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT (the
	// carriers' list). A message is a keyword when, trimmed of white space
	// and a final '.' or '!', it is the keyword in any letter case
	// (inner spaces and '-' ignored: "stop all", "opt-out").
	OptOut []string `yaml:"opt_out"`
	// OptIn are the replies that give it back. Default START, UNSTOP, YES.
	OptIn []string `yaml:"opt_in"`
	// MaxEntries bounds the memory store. Default 1048576.
	MaxEntries int `yaml:"max_entries"`
}

// ConsentKeywords says where an inbound message's sender and text are,
// on a route that receives patients' SMS (a carrier's webhook).
type ConsentKeywords struct {
	// From is the sender's number: form:From for Twilio. Required.
	From string `yaml:"from"`
	// Text is the message: form:Body for Twilio. Required.
	Text string `yaml:"text"`
}

// ConsentCheck says where an outbound message's recipient is, on an
// egress route that sends SMS.
type ConsentCheck struct {
	// To is the recipient's number: form:To for Twilio. Required. A call
	// whose recipient opted out is refused (403 no_consent).
	To string `yaml:"to"`
	// RequireConsent refuses a recipient who never opted in as well
	// (explicit consent before any PHI is texted). Default false: only
	// an opt-out refuses.
	RequireConsent bool `yaml:"require_consent"`
}

func (p *Policy) compileConsent(ps *problems) {
	c := &p.File.Consent
	k := consent.DefaultKeywords()
	if len(c.OptOut) > 0 {
		k.OptOut = c.OptOut
	}
	if len(c.OptIn) > 0 {
		k.OptIn = c.OptIn
	}
	if err := k.Check(); err != nil {
		ps.add("consent", "%v", err)
	}
	p.Keywords = k
	switch {
	case c.MaxEntries < 0:
		ps.add("consent.max_entries", "must not be negative")
	case c.MaxEntries == 0:
		c.MaxEntries = consent.DefaultMaxEntries
	}
}

// compileConsentKeywords compiles an ingress route's consent_keywords.
func (p *Policy) compileConsentKeywords(ps *problems, path string, c ConsentKeywords, r *Route) {
	from, okFrom := consentSelector(ps, path+".from", c.From)
	text, okText := consentSelector(ps, path+".text", c.Text)
	if okFrom && okText {
		if from.Form != text.Form {
			ps.add(path, "from and text are in one body: both form: or both JSON selectors")
		}
		r.ConsentFrom, r.ConsentText = &from, &text
	}
	if len(r.EncryptRequest) == 0 {
		ps.add(path, "keywords are read as the body is sealed: the route needs encrypt_request (the message's text, at least)")
	}
	if r.Signature == nil && !r.AuthRequired {
		ps.add(path, "anyone could opt a patient in or out: a route with consent_keywords needs verify_signature or a caller (auth: required)")
	}
	if r.OrgFrom.Kind == OrgFromClaim && !r.AuthRequired {
		ps.add(path, "consent is kept per org: take the org from a path_param or header")
	}
	p.usesConsent = true
}

// compileConsentCheck compiles an egress route's consent.
func (p *Policy) compileConsentCheck(ps *problems, path string, c ConsentCheck, rule *EgressRule) {
	to, ok := consentSelector(ps, path+".to", c.To)
	if ok {
		rule.ConsentTo = &to
	}
	rule.RequireConsent = c.RequireConsent
	p.usesConsent = true
}

func consentSelector(ps *problems, path, text string) (Selector, bool) {
	if text == "" {
		ps.add(path, "required: a selector (form:From, $.to)")
		return Selector{}, false
	}
	s, err := ParseSelector(text)
	if err != nil {
		ps.add(path, "%v", err)
		return Selector{}, false
	}
	if s.FormPrefix {
		ps.add(path, "%q selects several fields; name one", text)
		return Selector{}, false
	}
	return s, true
}

// checkConsent validates what consent needs from other sections.
func (p *Policy) checkConsent(ps *problems) {
	if p.usesConsent && p.File.Audit.HashKey == "" {
		ps.add("audit.hash_key", "required by consent_keywords and consent: patients' numbers are kept only as keyed hashes")
	}
}

// UsesConsent reports whether a route reads or checks consent: phiguard
// then opens the consent registry in the state store.
func (p *Policy) UsesConsent() bool { return p.usesConsent }

// ConsentOrg is the org whose registry an egress call that decrypted no
// token is checked against: the route's one org; false when it serves
// several (the call is then refused).
func (r *EgressRule) ConsentOrg() (string, bool) {
	if len(r.Orgs) != 1 {
		return "", false
	}
	for o := range r.Orgs {
		return o, true
	}
	return "", false
}

package engine

import (
	"context"
	"errors"
	"io"
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
)

// Egress: the calls the app makes to vendors (an SMS carrier, a push
// provider, an integration's webhook) go through the same engine as
// the requests it answers. BeginEgress judges the head and picks the
// egress route by the destination's host; SealEgress rewrites the body
// for the vendor: tokens opened for a vendor under a BAA, fixed text in
// place of what a push provider must not see, members dropped, values
// scanned for PHI; Intend, Allow and Refuse record it as for ingress.

// Refusals of egress calls.
var (
	errDestination = &refusal.Error{Kind: refusal.Denied, Code: "destination_not_allowed",
		Reason: "no egress route takes this destination: the vendor was not contacted"}
	errPHIBlocked = &refusal.Error{Kind: refusal.Forbidden, Code: "phi_blocked",
		Reason: "the body holds a phiguard token, and this vendor has no BAA: nothing was sent"}
	errTokenNotDecrypted = &refusal.Error{Kind: refusal.Forbidden, Code: "token_not_decrypted",
		Reason: "the body holds a phiguard token outside decrypt_request: the vendor would get ciphertext; nothing was sent"}
	errTokenOrg = &refusal.Error{Kind: refusal.Forbidden, Code: "token_org_not_allowed",
		Reason: "a token belongs to an organization this egress route does not serve: nothing was sent"}
	errTokenOrgs = &refusal.Error{Kind: refusal.Forbidden, Code: "token_org_not_allowed",
		Reason: "the body holds tokens of more than one organization: nothing was sent"}
	errTokenInvalid = &refusal.Error{Kind: refusal.Forbidden, Code: "token_invalid",
		Reason: "a token does not decrypt (altered, or sealed by a key this keyring does not hold): nothing was sent"}
	errConnect     = refusal.New(refusal.MethodNotAllowed, "the egress listener does not tunnel (CONNECT): call the vendor's http:// URL through it, and phiguard calls https:// for you")
	errVendorBody  = refusal.New(refusal.UpstreamUnreadable, "the vendor answered with a body phiguard could not read; it was not passed on (the vendor may have acted on the call)")
	errEgressMedia = refusal.New(refusal.UnsupportedMedia, "egress routes read JSON and form bodies only: a body phiguard cannot read could carry PHI")
	// ErrVendor is a vendor that did not answer.
	ErrVendor = refusal.New(refusal.UpstreamUnavailable, "the vendor did not answer")
)

// ErrorCodeDLP names a DLP refusal (refusal.Error.Code).
const ErrorCodeDLP = "phi_blocked"

// egressPlan is what an egress route needs at request time.
type egressPlan struct {
	rule *policy.EgressRule
	// answer seals the vendor's answer's values (encrypt_response); nil
	// for none.
	answer *codec.Matcher
	// sels are the rewrite's selectors: decrypt_request, then
	// replace_request (from nDec), then dlp.fields (from nRep).
	sels       []policy.Selector
	nDec, nRep int
	json       *codec.Matcher
	drop       []policy.Selector
}

func newEgressPlan(r *policy.Route) egressPlan {
	rule := r.Egress
	sels := slices.Concat(rule.Decrypt, rule.Replace, rule.DLPFields)
	p := egressPlan{
		rule: rule,
		sels: sels,
		nDec: len(rule.Decrypt),
		nRep: len(rule.Decrypt) + len(rule.Replace),
		json: codec.NewRequestMatcher(sels),
		drop: rule.Drop,
	}
	if len(rule.EncryptResponse) > 0 {
		p.answer = codec.NewMatcher(rule.EncryptResponse)
	}
	return p
}

// BeginEgress judges the head of a call the app makes to a vendor:
// capacity, canonical path and method, header and query hygiene (no
// token anywhere but the body), and the egress route that takes its
// destination host, method and path. A call no route takes is refused
// with destination_not_allowed: the vendor is never contacted. Every
// egress call is recorded, allowed or not. As with Begin, x is never nil.
func (e *Engine) BeginEgress(ctx context.Context, req *Request) (*Exchange, error) {
	x, err := e.begin(req, e.egressSlots)
	x.mustRecord, x.out.Egress = true, true
	x.rec.Destination = audit.Text(strings.ToLower(req.Host), maxHost)
	if err != nil {
		return x, err
	}
	return x, x.judgeEgress(req)
}

// maxHost bounds a recorded destination, in characters (DNS's limit).
const maxHost = 253

func (x *Exchange) judgeEgress(req *Request) error {
	e := x.e
	if strings.EqualFold(req.Method, http.MethodConnect) {
		// A tunnel would hide the body: the app must speak plain HTTP here.
		return errConnect
	}
	if _, err := x.judgeTarget(req); err != nil {
		return err
	}
	method, path := x.method, x.path
	for k, vs := range req.Header {
		if slices.ContainsFunc(vs, codec.HasTokenMarker[string]) {
			return codec.PlantedToken("the " + http.CanonicalHeaderKey(k) + " header")
		}
	}
	route, params := e.pol.MatchEgress(req.Host, method, path.decoded)
	if route == nil {
		return errDestination
	}
	x.rec.Route, x.out.Route = route.Name, route
	x.rec.Destination = route.Egress.Host
	x.rec.Path = route.Path.String()
	if e.hasher != nil {
		for _, p := range params {
			x.rec.Params = append(x.rec.Params, audit.Value{Name: p.Name, Value: e.hasher.Hash(p.Value)})
		}
	}
	x.egress = &e.egressPlans[route.Index]
	return checkChannels(req)
}

// Upstream is the URL an allowed egress call goes to: its route's
// upstream, the canonical path and the query.
func (x *Exchange) Upstream() *url.URL {
	up := x.egress.rule.Upstream
	u := *up
	u.Path = strings.TrimSuffix(up.Path, "/") + x.path.decoded
	u.RawPath = strings.TrimSuffix(up.EscapedPath(), "/") + x.path.escaped
	u.RawQuery = x.query
	return &u
}

// SealEgress reads the body of an allowed egress call (size is its
// declared length, -1 when unknown) and returns what the vendor gets:
// drop_request's members removed; decrypt_request's tokens opened, each
// with the org it names, which the route must serve (one org per call);
// replace_request's values replaced; dlp.fields scanned, and the call
// blocked or the matches redacted. A token anywhere else refuses the
// call: a vendor without a BAA never gets one, and one under a BAA would
// get ciphertext. h is updated to frame the new body, which is lent as
// SealRequest's is (SealedBody). Call it once, for a call with a body.
func (x *Exchange) SealEgress(ctx context.Context, h http.Header, body io.Reader, size int64) ([]byte, error) {
	kind, _, err := requestMediaKind(h)
	if err != nil {
		return nil, errEgressMedia
	}
	gz, ok := contentEncoding(h)
	if !ok {
		return nil, refusal.New(refusal.UnsupportedEncoding, "only gzip or no Content-Encoding is read")
	}
	raw, err := readBody(body, size, gz, x.e.pol.File.Ingress.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	defer putBuffer(raw)
	src := raw
	plan := x.egress
	if len(plan.drop) > 0 {
		var counts []int
		if kind == bodyJSON {
			src, counts, err = codec.DropJSON(raw, plan.drop)
		} else {
			src, counts, err = codec.DropForm(raw, plan.drop)
		}
		if err != nil {
			return nil, x.egressFailure(err)
		}
		for i, n := range counts {
			x.rec.AddField(audit.ActionDrop, plan.drop[i].Text, "", n)
		}
	}
	var out []byte
	if kind == bodyJSON {
		out, err = codec.AppendRewriteJSON(getBuffer(len(src)+len(src)/2), src, plan.json, func(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
			return x.egressValue(ctx, dst, sel, v)
		}, nil)
		if err != nil {
			putBuffer(out)
			out = nil
		}
	} else {
		out, _, err = codec.RewriteForm(src, plan.sels, func(sel int, v string) (string, error) {
			return x.egressFormValue(ctx, sel, v)
		})
	}
	if src != nil && &src[0] != &raw[0] {
		clear(src) // what drop_request left: plaintext, maybe
	}
	if err == nil && plan.rule.ConsentTo != nil {
		err = x.checkConsent(ctx, kind, out)
	}
	if err != nil {
		if out != nil {
			clear(out)
		}
		return nil, x.egressFailure(err)
	}
	x.checked = true
	x.sealed = newLent(out)
	frame(h, out)
	return out, nil
}

// egressFailure turns a planted-token refusal of the codecs into the
// egress refusal: the app sent a token where the vendor would get it.
func (x *Exchange) egressFailure(err error) error {
	if errors.Is(err, codec.ErrPlantedToken) {
		x.rec.AddAction(audit.ActionBlock)
		if x.egress.rule.BAA {
			return errTokenNotDecrypted
		}
		return errPHIBlocked
	}
	return err
}

// egressValue appends what the vendor gets for one selected JSON value.
func (x *Exchange) egressValue(ctx context.Context, dst []byte, sel int, v jsontext.Value) ([]byte, error) {
	plan := x.egress
	switch {
	case sel < plan.nDec:
		return x.openForVendor(ctx, dst, sel, v)
	case sel < plan.nRep:
		x.rec.AddField(audit.ActionReplace, plan.sels[sel].Text, "", 1)
		return jsontext.AppendQuote(dst, plan.rule.ReplaceText[sel-plan.nDec])
	}
	if v.Kind() != '"' {
		if codec.HasTokenMarker([]byte(v)) {
			return dst, codec.PlantedToken("a scanned field")
		}
		return codec.AppendWiping(dst, v), nil // numbers, booleans, null: no text to scan
	}
	text, err := jsontext.AppendUnquote(getBuffer(len(v)), v)
	defer func() { clear(text); putBuffer(text) }()
	if err != nil {
		return dst, badRequest("a JSON string does not decode")
	}
	scanned, err := x.scan(plan.sels[sel].Text, text)
	if err != nil {
		return dst, err
	}
	if scanned == nil {
		return codec.AppendWiping(dst, v), nil
	}
	defer clear(scanned)
	return jsontext.AppendQuote(dst, scanned)
}

// egressFormValue is egressValue for a form field's decoded value.
func (x *Exchange) egressFormValue(ctx context.Context, sel int, v string) (string, error) {
	plan := x.egress
	switch {
	case sel < plan.nDec:
		quoted, err := jsontext.AppendQuote(nil, v)
		if err != nil {
			return "", badRequest("a form value does not encode")
		}
		opened, err := x.openForVendor(ctx, nil, sel, quoted)
		if err != nil {
			return "", err
		}
		if len(opened) > 0 && opened[0] == '"' {
			s, err := jsontext.AppendUnquote(nil, opened)
			if err != nil {
				return "", errInternal
			}
			return string(s), nil
		}
		return string(opened), nil // a number or other JSON value sealed as a field
	case sel < plan.nRep:
		x.rec.AddField(audit.ActionReplace, plan.sels[sel].Text, "", 1)
		return plan.rule.ReplaceText[sel-plan.nDec], nil
	}
	scanned, err := x.scan(plan.sels[sel].Text, []byte(v))
	if err != nil || scanned == nil {
		return v, err
	}
	return string(scanned), nil
}

// openForVendor appends the plaintext of a selected value for a vendor
// under a BAA: a token opens with the org it names, which the route must
// serve, and one call carries one org's tokens. Text that is not a token
// passes as it is: the app wrote it, and the vendor is covered. A token
// that does not open refuses the call: ciphertext is never forwarded.
func (x *Exchange) openForVendor(ctx context.Context, dst []byte, sel int, v jsontext.Value) ([]byte, error) {
	path := x.egress.sels[sel].Text
	tok, ok := tokenText(v)
	if ok {
		tok, ok = indexedToken(tok)
		if !ok {
			return dst, errTokenInvalid
		}
	}
	if !ok {
		if v.Kind() == '"' && codec.HasTokenMarker([]byte(v)) {
			return dst, errTokenInvalid // a token behind escapes or text
		}
		x.rec.AddField(audit.ActionPass, path, "not a token", 1)
		return codec.AppendWiping(dst, v), nil
	}
	org, ok := keys.TokenOrg(tok)
	switch {
	case !ok:
		return dst, errTokenInvalid
	case !x.egress.rule.Orgs[org]:
		x.rec.Org = org
		return dst, errTokenOrg
	case x.rec.Org != "" && x.rec.Org != org:
		return dst, errTokenOrgs
	}
	x.rec.Org = org
	x.decision.Org = org
	pt, err := x.e.keys.Decrypt(ctx, org, tok)
	switch {
	case err == nil && validJSON(pt):
		x.rec.AddField(audit.ActionDecrypt, path, "", 1)
		dst = codec.AppendWiping(dst, pt)
		clear(pt)
		return dst, nil
	case errors.Is(err, keys.ErrShredded):
		return dst, errShredded
	case err == nil, errors.Is(err, keys.ErrDecrypt), errors.Is(err, keys.ErrNotToken), errors.Is(err, keys.ErrOrgMismatch):
		return dst, errTokenInvalid
	default:
		return dst, x.e.keyFailure(err)
	}
}

// scan runs the route's DLP detectors over one value of dlp.fields. It
// returns nil when the value goes as it is, the redacted text when the
// route redacts, and the refusal when it blocks. Records name the
// detectors, never the match.
func (x *Exchange) scan(path string, text []byte) ([]byte, error) {
	rule := x.egress.rule
	if codec.HasTokenMarker(text) {
		return nil, codec.PlantedToken("a scanned field")
	}
	if rule.DLP == nil {
		return nil, nil
	}
	if !rule.DLPRedact {
		found := rule.DLP.Scan(text)
		if found == 0 {
			return nil, nil
		}
		names := strings.Join(found.Names(rule.DLP), ",")
		x.rec.AddField(audit.ActionDLPBlock, path, names, 1)
		x.rec.AddAction(audit.ActionBlock)
		return nil, &refusal.Error{Kind: refusal.Forbidden, Code: ErrorCodeDLP,
			Reason: "a value of " + path + " looks like PHI (" + names + ") and this route does not send it: nothing was sent"}
	}
	out, found := rule.DLP.Redact(nil, text)
	if found == 0 {
		clear(out)
		return nil, nil
	}
	x.rec.AddField(audit.ActionDLPRedact, path, strings.Join(found.Names(rule.DLP), ","), 1)
	return out, nil
}

// SealAnswer takes a vendor's answer to an egress call (size is its
// declared length, -1 when unknown; body nil for none) and, on a route
// with encrypt_response, returns it with the selected values sealed for
// the call's org (the org of the tokens it opened, else the route's one
// org), or masked when no org is known. replaced is false when the body
// passes as it is. A 2xx answer that is not JSON phiguard can read is
// refused: the app never gets the vendor's plaintext. The body is valid
// until x.Close (OpenedBody reads it).
func (x *Exchange) SealAnswer(ctx context.Context, status int, h http.Header, body io.Reader, size int64) (out []byte, replaced bool, err error) {
	x.rec.UpstreamStatus = status
	m := x.egress.answer
	if m == nil || body == nil || size == 0 || x.method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		return nil, false, nil
	}
	forbidCaching(h)
	raw, err := x.readAnswer(h, body, size, errVendorBody, errVendorBody)
	if err != nil {
		return nil, false, err
	}
	defer func() { clear(raw); putBuffer(raw) }()
	if kind, _, err := mediaKind(h); err != nil || kind != bodyJSON {
		if status < 200 || status >= 300 {
			// An error page: nothing was sent that could echo back.
			out = x.keepOpened(append(getBuffer(len(raw)), raw...))
			frame(h, out)
			return out, true, nil
		}
		return nil, false, errVendorBody
	}
	org := x.rec.Org
	if org == "" {
		org, _ = x.egress.rule.ConsentOrg()
	}
	rule := x.egress.rule
	out, err = codec.AppendRewriteJSON(getBuffer(len(raw)*2), raw, m, func(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
		path := rule.EncryptResponse[sel].Text
		if v.Kind() == 'n' {
			return append(dst, v...), nil
		}
		if org == "" {
			x.rec.AddField(audit.ActionMask, path, "no organization to seal for", 1)
			return codec.AppendWiping(dst, x.e.mask), nil
		}
		dst = append(dst, '"')
		dst, err := x.e.keys.AppendEncrypt(ctx, dst, org, v)
		if err != nil {
			return dst, x.e.sealFailure(err)
		}
		x.rec.AddField(audit.ActionEncrypt, path, "", 1)
		return append(dst, '"'), nil
	}, nil)
	if err != nil {
		putBuffer(out)
		if errors.Is(err, refusal.BadRequest) {
			return nil, false, errVendorBody
		}
		return nil, false, err
	}
	out = x.keepOpened(out)
	frame(h, out)
	return out, true, nil
}

// keepOpened lends b as the exchange's answer until Close.
func (x *Exchange) keepOpened(b []byte) []byte {
	x.opened = b
	return b
}

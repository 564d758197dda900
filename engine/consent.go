package engine

import (
	"context"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/consent"
	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

// Consent: an inbound SMS that is an opt-out or opt-in keyword updates
// the registry under the request's org, by the keyed hash of the
// sender's number; an egress call to a recipient who opted out (or, with
// require_consent, never opted in) is refused before the vendor is
// contacted. Numbers never reach a record or a log: only their hashes,
// which `phiguard audit hash` computes for an investigator.

var (
	errNoConsent = &refusal.Error{Kind: refusal.Forbidden, Code: "no_consent",
		Reason: "the recipient has opted out of messages from this organization: nothing was sent"}
	errNoOptIn = &refusal.Error{Kind: refusal.Forbidden, Code: "no_consent",
		Reason: "the recipient has not opted in to messages from this organization (require_consent): nothing was sent"}
	errConsentNumber = &refusal.Error{Kind: refusal.Forbidden, Code: "no_consent",
		Reason: "the recipient is not a phone number whose consent can be checked: nothing was sent"}
	errConsentOrg = &refusal.Error{Kind: refusal.Forbidden, Code: "no_consent",
		Reason: "the call decrypts no token and its route serves several organizations: whose consent applies is unknown; nothing was sent"}
	errConsentStore = refusal.New(refusal.StateUnavailable, "the consent registry did not answer; nothing was done")
)

// Consent sources (consent.Entry.Source) phiguard writes.
const (
	SourceKeyword = "keyword"
)

// capture returns the one value each selector picks in a body (nil for
// a selector that picks none), as text. A selector that picks more than
// one value refuses the body: which one the app reads is the app's
// business, and phiguard must read the same.
func capture(kind bodyKind, body []byte, sels []policy.Selector) ([][]byte, error) {
	got := make([][]byte, len(sels))
	seen := make([]int, len(sels))
	var err error
	if kind == bodyJSON {
		_, _, err = codec.RewriteJSON(body, codec.NewMatcher(sels), func(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
			seen[sel]++
			if v.Kind() == '"' {
				s, err := jsontext.AppendUnquote(nil, v)
				if err != nil {
					return dst, badRequest("a JSON string does not decode")
				}
				got[sel] = s
			} else {
				got[sel] = append([]byte(nil), v...)
			}
			return append(dst, v...), nil
		})
	} else {
		_, _, err = codec.RewriteForm(body, sels, func(sel int, v string) (string, error) {
			seen[sel]++
			got[sel] = []byte(v)
			return v, nil
		})
	}
	if err != nil {
		return nil, err
	}
	for i, n := range seen {
		if n > 1 {
			return nil, badRequest("the body holds more than one %s", sels[i].Text)
		}
	}
	return got, nil
}

// readKeywords records an opt-out or opt-in keyword of an inbound
// message in the registry; any other message changes nothing. raw is the
// body as received. A sender that is not a phone number (a short code,
// an alphanumeric sender) is not recorded. A registry that does not
// answer refuses the request: the carrier retries, and a STOP is never
// lost.
func (x *Exchange) readKeywords(ctx context.Context, kind bodyKind, raw []byte) error {
	r := x.decision.Route
	vals, err := capture(kind, raw, []policy.Selector{*r.ConsentFrom, *r.ConsentText})
	if err != nil {
		return err
	}
	from, text := vals[0], vals[1]
	if text == nil || from == nil {
		return nil
	}
	state := x.e.pol.Keywords.Classify(text)
	if state == consent.Unknown {
		return nil
	}
	num, err := consent.Normalize(string(from))
	if err != nil {
		x.rec.AddField(consentAction(state), r.ConsentFrom.Text, "not a phone number", 1)
		return nil
	}
	ref := x.e.hasher.Hash(num)
	if _, err := x.e.consent.Record(ctx, consent.Entry{Org: x.decision.Org, Ref: ref, State: state, At: x.e.now(), Source: SourceKeyword}); err != nil {
		x.e.log.Error("consent registry failed", "request_id", x.rec.RequestID, "err_kind", ErrorKind(err))
		return errConsentStore
	}
	x.rec.AddField(consentAction(state), r.ConsentFrom.Text, "", 1)
	x.rec.Recorded = append(x.rec.Recorded, audit.Value{Name: "consent_ref", Value: ref})
	return nil
}

func consentAction(s consent.State) string {
	if s == consent.Revoked {
		return audit.ActionOptOut
	}
	return audit.ActionOptIn
}

// checkConsent refuses an egress call whose recipient, in the body the
// vendor would get, opted out of the org's messages (or never opted in,
// with require_consent).
func (x *Exchange) checkConsent(ctx context.Context, kind bodyKind, out []byte) error {
	rule := x.egress.rule
	vals, err := capture(kind, out, []policy.Selector{*rule.ConsentTo})
	if err != nil {
		return err
	}
	if vals[0] == nil {
		return badRequest("the body has no %s: the recipient's consent cannot be checked", rule.ConsentTo.Text)
	}
	org := x.rec.Org
	if org == "" {
		var ok bool
		if org, ok = rule.ConsentOrg(); !ok {
			return errConsentOrg
		}
		x.rec.Org = org
	}
	num, err := consent.Normalize(string(vals[0]))
	if err != nil {
		return errConsentNumber
	}
	ref := x.e.hasher.Hash(num)
	x.rec.Recorded = append(x.rec.Recorded, audit.Value{Name: "consent_ref", Value: ref})
	e, err := x.e.consent.Get(ctx, org, ref)
	if err != nil {
		x.e.log.Error("consent registry failed", "request_id", x.rec.RequestID, "err_kind", ErrorKind(err))
		return errConsentStore
	}
	x.rec.AddField(audit.ActionConsent, rule.ConsentTo.Text, e.State.String(), 1)
	switch {
	case e.State == consent.Revoked:
		return errNoConsent
	case e.State != consent.Granted && rule.RequireConsent:
		return errNoOptIn
	}
	return nil
}

// consentStoreFor returns the registry an engine uses: o's, else a
// memory one when the policy uses consent.
func consentStoreFor(o Options) (consent.Store, error) {
	if !o.Policy.UsesConsent() {
		return o.Consent, nil
	}
	if o.Hasher == nil {
		return nil, fmt.Errorf("engine: consent needs a Hasher (audit.hash_key): numbers are kept as keyed hashes")
	}
	if o.Consent != nil {
		return o.Consent, nil
	}
	return consent.NewMemory(o.Policy.File.Consent.MaxEntries), nil
}

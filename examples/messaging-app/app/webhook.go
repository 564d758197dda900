package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Inbound is an SMS a patient sent, as the carrier's webhook delivered it.
type Inbound struct {
	ID         string          `json:"id"`
	Org        string          `json:"org"`
	From       json.RawMessage `json:"from"`
	Body       json.RawMessage `json:"body"`
	ContactID  string          `json:"contact_id,omitempty"` // the contact whose phone is From, if any
	ReceivedAt time.Time       `json:"received_at"`
}

// SignatureHeader is where phiguard signs what it forwards from a
// carrier's webhook: t=UNIX,v1=HEX, HEX the hex HMAC-SHA256 under the
// secret shared with phiguard of "UNIX.METHOD PATH?QUERY.BODY".
const SignatureHeader = "X-Phiguard-Signature"

// SignatureMaxAge is how far from now a signature's t may be.
const SignatureMaxAge = 5 * time.Minute

// maxWebhookBody bounds an inbound webhook's body.
const maxWebhookBody = 1 << 20

var errBadSignature = errors.New("missing or invalid " + SignatureHeader)

// inboundSMS takes a patient's SMS from the carrier's webhook
// (POST /webhooks/sms/{org}, a Twilio form) once its X-Phiguard-Signature
// checks out: the carrier's own signature cannot be checked any more, its
// body is encrypted by then. Unsigned, forged or stale: 401.
func (a *App) inboundSMS(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "the body could not be read"})
		return
	}
	if err := VerifySignature(a.WebhookSecret, r.Header.Get(SignatureHeader), r.Method, requestTarget(r), body, time.Now()); err != nil {
		reply(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "the body is not a form"})
		return
	}
	from, text := form.Get("From"), form.Get("Body")
	in := Inbound{ID: newID("in"), Org: r.PathValue("org"), From: jsonString(from), Body: jsonString(text), ReceivedAt: time.Now().UTC()}
	a.write(w, r, func(s *Store) any {
		// From arrives as the same exact-match token as the contact's phone:
		// the app finds the contact by SQL equality, never seeing the number.
		if ids, err := a.index.contactsByPhone(r.Context(), from); err == nil && len(ids) > 0 {
			in.ContactID = ids[0]
		}
		s.Inbound = append(s.Inbound, in)
		return in
	}, nil)
}

// listInbound answers the patients' SMS of the caller's org (phiguard's
// X-Phiguard-Org), newest last.
func (a *App) listInbound(w http.ResponseWriter, r *http.Request) {
	org := r.Header.Get("X-Phiguard-Org")
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []Inbound{}
	for _, in := range a.store.Inbound {
		if in.Org == org {
			out = append(out, in)
		}
	}
	reply(w, 200, map[string]any{"data": out})
}

// VerifySignature checks an X-Phiguard-Signature value: t=UNIX,v1=HEX
// over method, target (path and query as received) and body, under
// secret, signed within SignatureMaxAge of now.
func VerifySignature(secret []byte, header, method, target string, body []byte, now time.Time) error {
	if len(secret) == 0 {
		return errors.New("no webhook secret is configured: every webhook is refused")
	}
	var ts, sig string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errBadSignature
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return errBadSignature
	}
	if !hmac.Equal(got, Sign(secret, ts, method, target, body)) {
		return errBadSignature
	}
	if age := now.Sub(time.Unix(sec, 0)); age > SignatureMaxAge || age < -SignatureMaxAge {
		return errors.New(SignatureHeader + " is stale")
	}
	return nil
}

// Sign is the HMAC-SHA256 of "TS.METHOD TARGET.BODY" under secret.
func Sign(secret []byte, ts, method, target string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "." + method + " " + target + "."))
	m.Write(body)
	return m.Sum(nil)
}

// requestTarget is the path and query as the client sent them.
func requestTarget(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

func jsonString(s string) json.RawMessage {
	raw, _ := json.Marshal(s)
	return raw
}

package engine

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/mac/subtle"
	tinksubtle "github.com/tink-crypto/tink-go/v2/subtle"

	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

// webhookSig is a route's signature check and re-signing, keys loaded.
type webhookSig struct {
	cfg    *policy.SignatureCheck
	check  *subtle.HMAC // the sender's: SHA-1 (twilio) or SHA-256
	resign *subtle.HMAC // phiguard's, shared with the app: SHA-256
}

// minSecret is the shortest shared secret taken, in bytes (Tink's HMAC
// minimum).
const minSecret = 16

func newWebhookSig(route string, c *policy.SignatureCheck) (*webhookSig, error) {
	secret := func(env string) ([]byte, error) {
		v := os.Getenv(env)
		switch {
		case v == "":
			return nil, fmt.Errorf("route %s: verify_signature: %s is not set", route, env)
		case len(v) < minSecret:
			return nil, fmt.Errorf("route %s: verify_signature: %s holds fewer than %d bytes", route, env, minSecret)
		}
		return []byte(v), nil
	}
	in, err := secret(c.SecretEnv)
	if err != nil {
		return nil, err
	}
	out, err := secret(c.ResignSecretEnv)
	if err != nil {
		return nil, err
	}
	s := &webhookSig{cfg: c}
	if c.Scheme == policy.SchemeTwilio {
		s.check, err = subtle.NewHMAC("SHA1", in, 20)
	} else {
		s.check, err = subtle.NewHMAC("SHA256", in, 32)
	}
	if err != nil {
		return nil, fmt.Errorf("route %s: verify_signature: %w", route, err)
	}
	if s.resign, err = subtle.NewHMAC("SHA256", out, 32); err != nil {
		return nil, fmt.Errorf("route %s: verify_signature: %w", route, err)
	}
	return s, nil
}

var errSignatureInvalid = &refusal.Error{Kind: refusal.Unauthenticated, Code: policy.CodeSignatureInvalid,
	Reason: "the webhook's signature is missing or does not match"}

// verify checks the sender's signature over the body as received (raw,
// decompressed), the path and query as sent.
func (s *webhookSig) verify(h http.Header, rawPath, rawQuery string, form bool, body []byte, now time.Time) error {
	c := s.cfg
	switch c.Scheme {
	case policy.SchemeTwilio:
		sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h.Get("X-Twilio-Signature")))
		if err != nil || len(sig) == 0 {
			return errSignatureInvalid
		}
		if !form {
			return s.verifyTwilioJSON(sig, rawPath, rawQuery, body)
		}
		params, err := url.ParseQuery(string(body))
		if err != nil {
			return errSignatureInvalid
		}
		u := c.PublicURL + rawPath
		if rawQuery != "" {
			u += "?" + rawQuery
		}
		data := []byte(u)
		names := make([]string, 0, len(params))
		for k := range params {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			vals := slices.Compact(slices.Sorted(slices.Values(params[k])))
			for _, v := range vals {
				data = append(append(data, k...), v...)
			}
		}
		if s.check.VerifyMAC(sig, data) != nil {
			return errSignatureInvalid
		}
	case policy.SchemeHMACSHA256:
		v := strings.TrimSpace(h.Get(c.Header))
		v = strings.TrimPrefix(v, "sha256=")
		var sig []byte
		var err error
		if c.Encoding == "base64" {
			sig, err = base64.StdEncoding.DecodeString(v)
		} else {
			sig, err = hex.DecodeString(v)
		}
		if err != nil || len(sig) == 0 {
			return errSignatureInvalid
		}
		data := body
		if c.TimestampHeader != "" {
			ts := strings.TrimSpace(h.Get(c.TimestampHeader))
			sec, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return errSignatureInvalid
			}
			data = append(append([]byte(ts), '.'), body...)
			if s.check.VerifyMAC(sig, data) != nil {
				return errSignatureInvalid
			}
			if age := now.Sub(time.Unix(sec, 0)); age > c.MaxAge || age < -c.MaxAge {
				return &refusal.Error{Kind: refusal.Unauthenticated, Code: policy.CodeSignatureStale,
					Reason: fmt.Sprintf("the webhook was signed more than %s from now: a replay?", c.MaxAge)}
			}
			return nil
		}
		if s.check.VerifyMAC(sig, data) != nil {
			return errSignatureInvalid
		}
	}
	return nil
}

// verifyTwilioJSON checks a Twilio webhook with a JSON body: Twilio
// signs the URL alone, with the body's SHA-256 (hex) in its bodySHA256
// query parameter, which must match the body as received.
func (s *webhookSig) verifyTwilioJSON(sig []byte, rawPath, rawQuery string, body []byte) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil || len(q["bodySHA256"]) != 1 {
		return errSignatureInvalid
	}
	sum, err := tinksubtle.ComputeHash(tinksubtle.GetHashFunc("SHA256"), body)
	if err != nil || !strings.EqualFold(q.Get("bodySHA256"), hex.EncodeToString(sum)) {
		return errSignatureInvalid
	}
	if s.check.VerifyMAC(sig, []byte(s.cfg.PublicURL+rawPath+"?"+rawQuery)) != nil {
		return errSignatureInvalid
	}
	return nil
}

// sign is phiguard's signature of what it forwards, for the app:
// t=UNIX,v1=HEX, HEX the HMAC-SHA256 of "UNIX.METHOD PATH?QUERY.BODY".
func (s *webhookSig) sign(method, path, query string, body []byte, now time.Time) string {
	t := strconv.FormatInt(now.Unix(), 10)
	target := path
	if query != "" {
		target += "?" + query
	}
	data := make([]byte, 0, len(t)+len(method)+len(target)+len(body)+3)
	data = append(append(append(append(append(append(data, t...), '.'), method...), ' '), target...), '.')
	data = append(data, body...)
	tag, _ := s.resign.ComputeMAC(data) // HMAC does not fail
	return "t=" + t + ",v1=" + hex.EncodeToString(tag)
}

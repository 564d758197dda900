package policy

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Webhook signature schemes.
const (
	SchemeTwilio     = "twilio"
	SchemeHMACSHA256 = "hmac-sha256"
)

// Refusal codes of webhook signatures, as clients see them.
const (
	CodeSignatureInvalid = "signature_invalid"
	CodeSignatureStale   = "signature_stale"
)

// DefaultSignatureMaxAge bounds a signed timestamp's age.
const DefaultSignatureMaxAge = 5 * time.Minute

// ResignHeader carries phiguard's signature of a rewritten webhook.
const ResignHeader = "X-Phiguard-Signature"

// compileSignature checks a route's verify_signature; sealing says the
// route rewrites request fields (the check runs as the body is read).
func compileSignature(ps *problems, path string, c SignatureCheck, sealing bool) *SignatureCheck {
	if !sealing {
		ps.add(path, "a signature is checked as the body is sealed: the route needs encrypt_request")
	}
	switch c.Scheme {
	case SchemeTwilio:
		u, err := url.Parse(c.PublicURL)
		switch {
		case c.PublicURL == "":
			ps.add(path+".public_url", "twilio signs the URL it called: give its scheme and host (https://hooks.example.com)")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			ps.add(path+".public_url", "want a scheme and host, and the path prefix an ingress strips if any (https://hooks.example.com, https://example.com/sms), got %q", c.PublicURL)
		}
		c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
		if c.Header != "" || c.Encoding != "" || c.TimestampHeader != "" {
			ps.add(path, "header, encoding and timestamp_header are for hmac-sha256 (twilio uses X-Twilio-Signature, base64)")
		}
	case SchemeHMACSHA256:
		if c.Header == "" {
			c.Header = "X-Signature"
		}
		switch c.Encoding {
		case "":
			c.Encoding = "hex"
		case "hex", "base64":
		default:
			ps.add(path+".encoding", "want hex or base64, got %q", c.Encoding)
		}
		if c.PublicURL != "" {
			ps.add(path+".public_url", "hmac-sha256 signs the body, not the URL")
		}
	case "":
		ps.add(path+".scheme", "required: twilio or hmac-sha256")
	default:
		ps.add(path+".scheme", "want twilio or hmac-sha256, got %q", c.Scheme)
	}
	c.Header = http.CanonicalHeaderKey(c.Header)
	c.TimestampHeader = http.CanonicalHeaderKey(c.TimestampHeader)
	if c.SecretEnv == "" {
		ps.add(path+".secret_env", "required: the environment variable holding the shared secret")
	}
	if c.ResignSecretEnv == "" {
		ps.add(path+".resign_secret_env", "required: the app can no longer check the carrier's signature once fields are encrypted; phiguard signs for it with this secret")
	}
	if c.MaxAge < 0 {
		ps.add(path+".max_age", "must not be negative")
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultSignatureMaxAge
	}
	return &c
}

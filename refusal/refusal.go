// Package refusal is the one error type for a request phiguard refuses:
// a kind that says what class of refusal it is (and so the status an
// adapter answers with) and a reason that is safe to show the client and
// to write to the audit trail. Policy decisions, body judgements and the
// pipeline's own failures all refuse with it.
package refusal

import (
	"errors"
	"fmt"
)

// Kind is a class of refusal. A Kind is an error, so errors.Is(err,
// refusal.Forbidden) asks what kind of refusal err is.
type Kind uint8

// Kinds of refusal. The first group refuses what the request is (the audit
// decision is deny); the second, what went wrong while serving it (error).
const (
	BadRequest Kind = iota + 1
	Unauthenticated
	Forbidden
	Denied
	MethodNotAllowed
	TooLarge
	BodyTimeout
	UnsupportedMedia
	UnsupportedEncoding

	Busy
	KeysUnavailable
	AuditUnavailable
	UpstreamUnavailable
	UpstreamUnreadable
	UpstreamTooLarge
	ClientGone
	// IdentityUnavailable: the identity provider phiguard asks about a
	// token (introspection) did not answer.
	IdentityUnavailable
	// StateUnavailable: the store of session state (Redis) did not
	// answer, or had no room.
	StateUnavailable
	Internal
)

var codes = [...]string{
	BadRequest:          "bad_request",
	Unauthenticated:     "unauthenticated",
	Forbidden:           "forbidden",
	Denied:              "denied",
	MethodNotAllowed:    "method_not_allowed",
	TooLarge:            "body_too_large",
	BodyTimeout:         "body_timeout",
	UnsupportedMedia:    "unsupported_media_type",
	UnsupportedEncoding: "unsupported_encoding",
	Busy:                "over_capacity",
	KeysUnavailable:     "keys_unavailable",
	AuditUnavailable:    "audit_unavailable",
	UpstreamUnavailable: "upstream_unavailable",
	UpstreamUnreadable:  "upstream_unreadable",
	UpstreamTooLarge:    "upstream_too_large",
	ClientGone:          "client_closed",
	IdentityUnavailable: "identity_unavailable",
	StateUnavailable:    "state_unavailable",
	Internal:            "internal",
}

// Code is the kind's stable name for clients and metrics, e.g. "forbidden".
func (k Kind) Code() string {
	if int(k) < len(codes) && codes[k] != "" {
		return codes[k]
	}
	return codes[Internal]
}

func (k Kind) Error() string { return k.Code() }

// Failure reports whether the refusal is phiguard failing to serve the
// request (audit decision "error") rather than refusing what it asks
// ("deny").
func (k Kind) Failure() bool { return k >= Busy }

// Error is a refusal. Reason never holds a value from the request.
type Error struct {
	Kind   Kind
	Reason string
	// Detail, when set, is a sentinel naming the refusal more finely
	// (codec.ErrMalformed, identity.ErrClaims…), matched by errors.Is.
	Detail error
	// Code, when set, names the refusal more finely for clients and
	// metrics than its kind does (mfa_required, session_terminated).
	Code string
}

// ClientCode is the code clients and metrics see: Code, else the kind's.
func (e *Error) ClientCode() string {
	if e.Code != "" {
		return e.Code
	}
	return e.Kind.Code()
}

// New returns a refusal of kind whose reason is format's text.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Reason }

// Unwrap returns the kind and, when set, the detail.
func (e *Error) Unwrap() []error {
	if e.Detail != nil {
		return []error{e.Kind, e.Detail}
	}
	return []error{e.Kind}
}

// As returns the refusal in err's chain, if any.
func As(err error) (*Error, bool) {
	var r *Error
	ok := errors.As(err, &r)
	return r, ok
}

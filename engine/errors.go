package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/refusal"
)

func badRequest(format string, args ...any) *refusal.Error {
	return refusal.New(refusal.BadRequest, format, args...)
}

// Refusals the engine and its adapters answer with. Their reasons are
// shown to clients and written to the audit trail.
var (
	ErrBusy           = refusal.New(refusal.Busy, "phiguard is at its limit of concurrent requests; retry shortly")
	ErrMethod         = refusal.New(refusal.MethodNotAllowed, "the method is not one of "+AllowedMethods)
	ErrUpstream       = refusal.New(refusal.UpstreamUnavailable, "the upstream app did not answer")
	ErrClientGone     = refusal.New(refusal.ClientGone, "the client went away")
	errTooLargeSealed = refusal.New(refusal.TooLarge, "encrypted, the body would be larger than phiguard can return (ingress.max_response_bytes); nothing was forwarded")
	errReadTimeout    = refusal.New(refusal.BodyTimeout, "the request body did not arrive in time")
	errTooLarge       = refusal.New(refusal.TooLarge, "the body is larger than this route accepts")
	errKeys           = refusal.New(refusal.KeysUnavailable, "encryption keys are unavailable; nothing was forwarded")
	errNoSearchKeys   = refusal.New(refusal.KeysUnavailable, "this organization has no search keys yet (an operator runs phiguard keys rotate -org ID -search); nothing was forwarded")
	errAudit          = refusal.New(refusal.AuditUnavailable, "the audit trail is unavailable; the request was refused")
	errShredded       = refusal.New(refusal.Forbidden, "this organization's keys were shredded; its protected data is not accepted")
	errUpstreamBody   = refusal.New(refusal.UpstreamUnreadable, "the upstream app answered with a body phiguard could not read; it was not passed on")
	errUpstreamLarge  = refusal.New(refusal.UpstreamTooLarge, "the upstream app answered with a body larger than this route accepts; it was not passed on")
	errInternal       = refusal.New(refusal.Internal, "internal error; nothing was forwarded")
)

// AllowedMethods are the methods phiguard judges (policy.CanonicalMethod).
const AllowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// StatusClientClosed is audited for a client that went away; nothing is
// written to it.
const StatusClientClosed = 499

// statuses is the HTTP status of each kind of refusal.
var statuses = [...]int{
	refusal.BadRequest:          http.StatusBadRequest,
	refusal.Unauthenticated:     http.StatusUnauthorized,
	refusal.Forbidden:           http.StatusForbidden,
	refusal.Denied:              http.StatusForbidden,
	refusal.MethodNotAllowed:    http.StatusMethodNotAllowed,
	refusal.TooLarge:            http.StatusRequestEntityTooLarge,
	refusal.BodyTimeout:         http.StatusRequestTimeout,
	refusal.UnsupportedMedia:    http.StatusUnsupportedMediaType,
	refusal.UnsupportedEncoding: http.StatusUnsupportedMediaType,
	refusal.Busy:                http.StatusServiceUnavailable,
	refusal.KeysUnavailable:     http.StatusServiceUnavailable,
	refusal.AuditUnavailable:    http.StatusServiceUnavailable,
	refusal.UpstreamUnavailable: http.StatusBadGateway,
	refusal.UpstreamUnreadable:  http.StatusBadGateway,
	refusal.UpstreamTooLarge:    http.StatusBadGateway,
	refusal.ClientGone:          StatusClientClosed,
	refusal.IdentityUnavailable: http.StatusServiceUnavailable,
	refusal.StateUnavailable:    http.StatusServiceUnavailable,
	refusal.Internal:            http.StatusInternalServerError,
}

// Status is the HTTP status a refusal of kind k is answered with, by every
// adapter: Envoy's immediate responses are HTTP statuses too.
func Status(k refusal.Kind) int {
	if int(k) < len(statuses) && statuses[k] != 0 {
		return statuses[k]
	}
	return http.StatusInternalServerError
}

// decisionOf is the audit decision for a refusal of kind k.
func decisionOf(k refusal.Kind) string {
	if k.Failure() {
		return audit.DecisionError
	}
	return audit.DecisionDeny
}

// classify maps any error of the pipeline to what the client is told.
// Internal error text never reaches the client.
func classify(err error) *refusal.Error {
	if r, ok := refusal.As(err); ok {
		return r
	}
	if errors.Is(err, audit.ErrUnavailable) {
		return errAudit
	}
	if errors.Is(err, keys.ErrUnknownOrg) {
		return errKeys
	}
	return errInternal
}

// ErrorKind names what went wrong with err for the operational log,
// without its text: a transport error can quote the app's bytes (a
// malformed status line, a raw header line), and those may be PHI.
func ErrorKind(err error) string {
	var ne net.Error
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the app"
	case errors.As(err, &dns):
		return "name resolution failed"
	case errors.As(err, &op):
		return "network error during " + op.Op
	}
	// The innermost error's type says where it came from; its text stays out.
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return fmt.Sprintf("%T", err)
		}
		err = next
	}
}

package proxy

import (
	"context"
	"encoding/json"
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

var (
	errBusy           = refusal.New(refusal.Busy, "phiguard is at its limit of concurrent requests; retry shortly")
	errMethod         = refusal.New(refusal.MethodNotAllowed, "the method is not one of "+allowedMethods)
	errTooLargeSealed = refusal.New(refusal.TooLarge, "encrypted, the body would be larger than phiguard can return (ingress.max_response_bytes); nothing was forwarded")
	errReadTimeout    = refusal.New(refusal.BodyTimeout, "the request body did not arrive in time")
	errTooLarge       = refusal.New(refusal.TooLarge, "the body is larger than this route accepts")
	errKeys           = refusal.New(refusal.KeysUnavailable, "encryption keys are unavailable; nothing was forwarded")
	errAudit          = refusal.New(refusal.AuditUnavailable, "the audit trail is unavailable; the request was refused")
	errUpstream       = refusal.New(refusal.UpstreamUnavailable, "the upstream app did not answer")
	errUpstreamBody   = refusal.New(refusal.UpstreamUnreadable, "the upstream app answered with a body phiguard could not read; it was not passed on")
	errUpstreamLarge  = refusal.New(refusal.UpstreamTooLarge, "the upstream app answered with a body larger than this route accepts; it was not passed on")
	errClientGone     = refusal.New(refusal.ClientGone, "the client went away")
	errInternal       = refusal.New(refusal.Internal, "internal error; nothing was forwarded")
)

// allowedMethods are the methods phiguard judges (policy.CanonicalMethod).
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// statusClientClosed is logged and audited for a client that went away;
// nothing is written to it.
const statusClientClosed = 499

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
	refusal.ClientGone:          statusClientClosed,
	refusal.Internal:            http.StatusInternalServerError,
}

// httpStatus is the status phiguard answers a refusal of kind k with.
func httpStatus(k refusal.Kind) int {
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

// errorKind names what went wrong with err for the operational log,
// without its text: a transport error can quote the app's bytes (a
// malformed status line, a raw header line), and those may be PHI.
func errorKind(err error) string {
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

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

func writeError(w http.ResponseWriter, r *refusal.Error, requestID string) {
	status := httpStatus(r.Kind)
	h := w.Header()
	for k := range h {
		if k != "X-Request-Id" {
			delete(h, k)
		}
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.Kind {
	case refusal.Unauthenticated:
		h.Set("WWW-Authenticate", `Bearer realm="phiguard"`)
	case refusal.MethodNotAllowed:
		h.Set("Allow", allowedMethods)
	case refusal.Busy:
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Status: status, Code: r.Kind.Code(), Message: r.Reason, RequestID: requestID}})
}

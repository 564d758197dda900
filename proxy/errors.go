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
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/proxy/codec"
)

// refusal is a request phiguard answers itself. msg is shown to the client
// and written to the audit trail, so it never holds a request value.
type refusal struct {
	status   int
	code     string
	msg      string
	decision string // audit.DecisionDeny or audit.DecisionError
}

func (r *refusal) Error() string { return r.msg }

func refuseWith(status int, code, decision, format string, args ...any) *refusal {
	return &refusal{status: status, code: code, msg: fmt.Sprintf(format, args...), decision: decision}
}

func badRequest(format string, args ...any) *refusal {
	return refuseWith(http.StatusBadRequest, "bad_request", audit.DecisionDeny, format, args...)
}

var (
	errBusy           = refuseWith(http.StatusServiceUnavailable, "over_capacity", audit.DecisionError, "phiguard is at its limit of concurrent requests; retry shortly")
	errMethod         = refuseWith(http.StatusMethodNotAllowed, "method_not_allowed", audit.DecisionDeny, "the method is not one of "+allowedMethods)
	errTooLargeSealed = refuseWith(http.StatusRequestEntityTooLarge, "body_too_large", audit.DecisionDeny, "encrypted, the body would be larger than phiguard can return (ingress.max_response_bytes); nothing was forwarded")
	errReadTimeout    = refuseWith(http.StatusRequestTimeout, "body_timeout", audit.DecisionDeny, "the request body did not arrive in time")
	errTooLarge       = refuseWith(http.StatusRequestEntityTooLarge, "body_too_large", audit.DecisionDeny, "the body is larger than this route accepts")
	errKeys           = refuseWith(http.StatusServiceUnavailable, "keys_unavailable", audit.DecisionError, "encryption keys are unavailable; nothing was forwarded")
	errAudit          = refuseWith(http.StatusServiceUnavailable, "audit_unavailable", audit.DecisionError, "the audit trail is unavailable; the request was refused")
	errUpstream       = refuseWith(http.StatusBadGateway, "upstream_unavailable", audit.DecisionError, "the upstream app did not answer")
	errUpstreamBody   = refuseWith(http.StatusBadGateway, "upstream_unreadable", audit.DecisionError, "the upstream app answered with a body phiguard could not read; it was not passed on")
	errUpstreamLarge  = refuseWith(http.StatusBadGateway, "upstream_too_large", audit.DecisionError, "the upstream app answered with a body larger than this route accepts; it was not passed on")
)

// allowedMethods are the methods phiguard judges (policy.CanonicalMethod).
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// classify maps any error of the pipeline to what the client is told.
// Internal error text never reaches the client.
func classify(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	var pr *policy.Refusal
	if errors.As(err, &pr) {
		switch {
		case errors.Is(err, policy.ErrUnauthenticated):
			return refuseWith(http.StatusUnauthorized, "unauthenticated", audit.DecisionDeny, "%s", pr.Reason)
		case errors.Is(err, policy.ErrDenied):
			return refuseWith(http.StatusForbidden, "denied", audit.DecisionDeny, "%s", pr.Reason)
		default:
			return refuseWith(http.StatusForbidden, "forbidden", audit.DecisionDeny, "%s", pr.Reason)
		}
	}
	var be *codec.BodyError
	if errors.As(err, &be) {
		return badRequest("%s", be.Error())
	}
	if errors.Is(err, audit.ErrUnavailable) {
		return errAudit
	}
	if errors.Is(err, keys.ErrUnknownOrg) {
		return errKeys
	}
	return refuseWith(http.StatusInternalServerError, "internal", audit.DecisionError, "internal error; nothing was forwarded")
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

func writeError(w http.ResponseWriter, r *refusal, requestID string) {
	h := w.Header()
	for k := range h {
		if k != "X-Request-Id" {
			delete(h, k)
		}
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="phiguard"`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", allowedMethods)
	case http.StatusServiceUnavailable:
		if r == errBusy {
			h.Set("Retry-After", "1")
		}
	}
	w.WriteHeader(r.status)
	json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Status: r.status, Code: r.code, Message: r.msg, RequestID: requestID}})
}

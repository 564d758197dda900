package kmstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// The AWS JSON 1.1 protocol as KMS speaks it.
const (
	contentType  = "application/x-amz-json-1.1"
	targetPrefix = "TrentService."
	sigV4Prefix  = "AWS4-HMAC-SHA256 "
	maxBody      = 64 << 10
)

// apiError is a refusal as KMS words it: an HTTP status and an exception
// name, which the SDK maps to its error types (types.NotFoundException, …)
// or, for names KMS does not model, to a smithy.GenericAPIError.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// refuse is a client error (400) named code.
func refuse(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return refuse("NotFoundException", format, args...)
}

func invalid(format string, args ...any) *apiError {
	return refuse("ValidationException", format, args...)
}

// errDown is the answer to every request while the server is down.
func errDown() error {
	return &apiError{status: http.StatusServiceUnavailable, code: "ServiceUnavailableException", message: "kmstest: the service is down (SetDown)"}
}

// checkRequest refuses a request that is not a POST to / with the JSON 1.1
// content type, signed with SigV4 for service kms in region. The signature
// itself is not verified.
func checkRequest(r *http.Request, region string) error {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return refuse("UnknownOperationException", "%s %s: KMS takes POST /", r.Method, r.URL.Path)
	}
	if err := checkSigned(r, region); err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != contentType {
		return refuse("SerializationException", "Content-Type %q: want %s", r.Header.Get("Content-Type"), contentType)
	}
	return nil
}

func checkSigned(r *http.Request, region string) error {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &apiError{status: http.StatusForbidden, code: "MissingAuthenticationTokenException", message: "Missing Authentication Token"}
	}
	incomplete := func(why string) error {
		return refuse("IncompleteSignatureException", "Authorization header: %s", why)
	}
	rest, ok := strings.CutPrefix(auth, sigV4Prefix)
	if !ok {
		return incomplete("want the AWS4-HMAC-SHA256 algorithm")
	}
	fields := map[string]string{}
	for f := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	for _, name := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[name] == "" {
			return incomplete(name + " is missing")
		}
	}
	if r.Header.Get("X-Amz-Date") == "" {
		return incomplete("the X-Amz-Date header is missing")
	}
	// Credential=<access key>/<date>/<region>/<service>/aws4_request
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return incomplete("Credential is not <key>/<date>/<region>/<service>/aws4_request")
	}
	if scope[3] != "kms" {
		return &apiError{status: http.StatusForbidden, code: "InvalidSignatureException", message: fmt.Sprintf("Credential should be scoped to correct service: 'kms', not %q.", scope[3])}
	}
	if scope[2] != region {
		return &apiError{status: http.StatusForbidden, code: "InvalidSignatureException", message: fmt.Sprintf("Credential should be scoped to a valid region, %q, not %q.", region, scope[2])}
	}
	return nil
}

// readBody reads a request body of at most maxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, refuse("SerializationException", "reading the request body: %v", err)
	}
	return body, nil
}

// decoded adapts an operation on a typed input to a JSON request body.
func decoded[In any](serve func(In) (any, error)) func([]byte) (any, error) {
	return func(body []byte) (any, error) {
		var u unsupported
		if err := json.Unmarshal(body, &u); err != nil {
			return nil, refuse("SerializationException", "request body: %v", err)
		}
		if err := u.check(); err != nil {
			return nil, err
		}
		var in In
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, refuse("SerializationException", "request body: %v", err)
		}
		return serve(in)
	}
}

// unsupported holds the request members of the real API that the server
// does not implement; a request that uses one is refused rather than served
// as if the member were absent.
type unsupported struct {
	DryRun                         bool
	Recipient                      json.RawMessage
	EncryptionAlgorithm            string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
}

func (u unsupported) check() error {
	switch {
	case u.DryRun:
		return refuse("UnsupportedOperationException", "kmstest does not implement DryRun")
	case u.Recipient != nil:
		return refuse("UnsupportedOperationException", "kmstest does not implement Recipient (Nitro Enclaves)")
	}
	for _, alg := range []string{u.EncryptionAlgorithm, u.SourceEncryptionAlgorithm, u.DestinationEncryptionAlgorithm} {
		if alg != "" && alg != symmetricDefault {
			return refuse("InvalidKeyUsageException", "%s is not valid for a symmetric encryption key; use %s", alg, symmetricDefault)
		}
	}
	return nil
}

// writeJSON answers 200 with v as the JSON body. A client that went away
// before reading the answer is not an error of the server's.
func writeJSON(w http.ResponseWriter, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// writeError answers with err as KMS words errors: the exception name in the
// X-Amzn-ErrorType header and the body's __type, and a message. An error
// that is not an *apiError is a bug in the server: it is reported to the
// test and answered as KMSInternalException.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		s.t.Errorf("kmstest: internal error: %v", err)
		e = &apiError{status: http.StatusInternalServerError, code: "KMSInternalException", message: "kmstest internal error"}
	}
	body, _ := json.Marshal(map[string]string{"__type": e.code, "message": e.message})
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

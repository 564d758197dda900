package codec

import (
	"errors"
	"fmt"

	"github.com/phiguard/phiguard/refusal"
)

// Details of a body that has no single meaning. A refused body is a
// *refusal.Error of kind refusal.BadRequest whose Detail is one of these;
// its text never holds a value from the body.
var (
	// ErrMalformed: the body is not well-formed (syntax, encoding, trailing
	// data, duplicate keys, nesting too deep).
	ErrMalformed = errors.New("malformed body")
	// ErrAmbiguousKey: a key differs from a selected key only by letter case.
	ErrAmbiguousKey = errors.New("ambiguous key")
	// ErrRefusedKey: the body holds a key that overrides the request, such as _method.
	ErrRefusedKey = errors.New("refused key")
	// ErrPatchDocument: the body is a JSON Patch document.
	ErrPatchDocument = errors.New("patch document")
)

// bodyError refuses a body for detail, with reason saying where, never what.
func bodyError(detail error, reason string) *refusal.Error {
	return &refusal.Error{Kind: refusal.BadRequest, Detail: detail, Reason: detail.Error() + ": " + reason}
}

func malformed(format string, args ...any) error {
	return bodyError(ErrMalformed, fmt.Sprintf(format, args...))
}

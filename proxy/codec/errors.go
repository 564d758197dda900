package codec

import (
	"errors"
	"fmt"
)

// Errors for bodies that have no single meaning. Their text never holds a
// value from the body.
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

// BodyError says what is wrong with a body and where, by path, never by value.
type BodyError struct {
	Kind   error
	Reason string
}

func (e *BodyError) Error() string { return fmt.Sprintf("%v: %s", e.Kind, e.Reason) }
func (e *BodyError) Unwrap() error { return e.Kind }

func malformed(format string, args ...any) error {
	return &BodyError{Kind: ErrMalformed, Reason: fmt.Sprintf(format, args...)}
}

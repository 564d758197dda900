package search

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Normalizations of an exact-match value, as the policy names them.
const (
	// None keeps the value as it is.
	None = "none"
	// Trim removes leading and trailing white space and turns each run of
	// white space inside into one space.
	Trim = "trim"
	// Fold is Trim, then Unicode compatibility normalization (NFKC) and
	// case folding: "Ｍｒｎ 42" and "mrn 42" are one value.
	Fold = "fold"
	// Phone reads a phone number and writes it in E.164 ("+15551234567");
	// a number without a country code is read in the policy's region.
	Phone = "phone"
	// Email is an e-mail address (local@domain, no display name), trimmed
	// and lower-cased. It is not folded: "Straße" stays a different
	// mailbox from "strasse".
	Email = "email"
)

// Normalizations lists every normalization, for validation and help.
func Normalizations() []string { return []string{None, Trim, Fold, Phone, Email} }

// Errors of Normalize. They never carry the value.
var (
	ErrNotPhone = errors.New("not a phone number that can be written in E.164 (a local number without its area code is not)")
	// ErrPhoneExtension: the number has an extension, which E.164 cannot
	// hold: sealing the number alone would lose it.
	ErrPhoneExtension = errors.New("a phone number with an extension: keep the extension in a field of its own")
	ErrNotEmail       = errors.New("not an e-mail address")
	ErrUnknown        = errors.New("unknown normalization")
)

var folder = cases.Fold()

// Normalize returns v in the form kind names. region is the ISO 3166
// country whose numbering reads a phone number without a country code.
func Normalize(kind, v, region string) (string, error) {
	switch kind {
	case None, "":
		return v, nil
	case Trim:
		return trim(v), nil
	case Fold:
		return fold(v), nil
	case Phone:
		n, err := phonenumbers.Parse(v, region)
		if err != nil || phonenumbers.IsPossibleNumberWithReason(n) != phonenumbers.IS_POSSIBLE {
			return "", ErrNotPhone
		}
		if n.GetExtension() != "" {
			return "", ErrPhoneExtension
		}
		return phonenumbers.Format(n, phonenumbers.E164), nil
	case Email:
		e := strings.ToLower(trim(v))
		a, err := mail.ParseAddress(e)
		if err != nil || a.Name != "" || a.Address != e || strings.Count(e, "@") != 1 {
			return "", ErrNotEmail
		}
		return e, nil
	}
	return "", fmt.Errorf("%w %q", ErrUnknown, kind)
}

// trim removes outer white space and collapses inner runs to one space.
func trim(v string) string {
	return strings.Join(strings.FieldsFunc(v, unicode.IsSpace), " ")
}

// fold is trim after NFKC and case folding.
func fold(v string) string {
	return trim(folder.String(norm.NFKC.String(v)))
}

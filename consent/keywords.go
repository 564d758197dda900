package consent

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Keywords classify an inbound message's text.
//
// A message is a keyword when, after trimming white space around it and
// '.' and '!' at its end, what remains spells the keyword in any ASCII
// case, white space and '-' inside it ignored: "stop", "Stop.", "  STOP ",
// "STOP ALL" (STOPALL) and "opt-out" (OPTOUT) are keywords; "please stop
// texting me" and "STOP?" are not. Carriers match single words exactly;
// ignoring the separators inside honors the spellings some providers list
// as keywords of their own (Telnyx's "STOP ALL", AWS's "OPT-OUT", the
// FCC's "opt out") without guessing at sentences. Messages that are not
// keywords but say "stop" are for a person to read.
type Keywords struct {
	// OptOut are the keywords that revoke consent; STOP must be one.
	// Classify tries them first, so one also listed in OptIn (which
	// Check refuses) revokes.
	OptOut []string
	// OptIn are the keywords that grant consent again.
	OptIn []string
}

// DefaultKeywords are Twilio's default English keywords for long codes
// (the CTIA's STOP, plus what US carriers honor): opt-out STOP, STOPALL,
// UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT (the last two since the
// FCC's 2025 revocation rule); opt-in START, UNSTOP, YES. An org that asks
// patients to reply YES to something else (an appointment) should drop
// YES; one that messages in other languages adds its words (ARRET…).
func DefaultKeywords() Keywords {
	return Keywords{
		OptOut: []string{"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"},
		OptIn:  []string{"START", "UNSTOP", "YES"},
	}
}

// maxKeyword is the longest keyword accepted.
const maxKeyword = 32

// Classify returns Revoked when text is an opt-out keyword, Granted when
// it is an opt-in keyword, and Unknown otherwise. It does not allocate.
func (k Keywords) Classify(text []byte) State {
	t := trimMessage(text)
	if len(t) == 0 {
		return Unknown
	}
	for _, w := range k.OptOut {
		if spells(t, w) {
			return Revoked
		}
	}
	for _, w := range k.OptIn {
		if spells(t, w) {
			return Granted
		}
	}
	return Unknown
}

// trimMessage removes white space around text, and '.' and '!' at its end.
func trimMessage(text []byte) []byte {
	text = bytes.TrimLeftFunc(text, unicode.IsSpace)
	return bytes.TrimRightFunc(text, func(r rune) bool { return unicode.IsSpace(r) || r == '.' || r == '!' })
}

// spells reports whether t is w in any ASCII case, white space and '-'
// in t skipped.
func spells(t []byte, w string) bool {
	j := 0
	for i := 0; i < len(t); {
		r, size := utf8.DecodeRune(t[i:])
		i += size
		if unicode.IsSpace(r) || r == '-' {
			continue
		}
		if j == len(w) || r >= utf8.RuneSelf || lower(byte(r)) != lower(w[j]) {
			return false
		}
		j++
	}
	return j == len(w) && j > 0
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Check reports every problem of k at once: no opt-out keywords or no
// STOP among them, an empty or overlong keyword, one that is not ASCII
// letters and digits (white space and '-' inside are ignored in messages,
// so a keyword holding them could never match), and a keyword in both
// lists.
func (k Keywords) Check() error {
	var errs []error
	if !holds(k.OptOut, "STOP") {
		errs = append(errs, errors.New("opt_out: STOP must be an opt-out keyword"))
	}
	check := func(list string, words []string) {
		for i, w := range words {
			switch {
			case w == "":
				errs = append(errs, fmt.Errorf("%s[%d]: empty keyword", list, i))
			case len(w) > maxKeyword:
				errs = append(errs, fmt.Errorf("%s[%d]: a keyword is at most %d characters", list, i, maxKeyword))
			case !alnum(w):
				errs = append(errs, fmt.Errorf("%s[%d]: %q: a keyword is ASCII letters and digits (white space and '-' in a message are ignored)", list, i, w))
			}
		}
	}
	check("opt_out", k.OptOut)
	check("opt_in", k.OptIn)
	for i, w := range k.OptIn {
		if w != "" && holds(k.OptOut, w) {
			errs = append(errs, fmt.Errorf("opt_in[%d]: %q is also an opt-out keyword", i, w))
		}
	}
	return errors.Join(errs...)
}

// holds reports whether list holds w in any case.
func holds(list []string, w string) bool {
	return slices.ContainsFunc(list, func(l string) bool { return strings.EqualFold(l, w) })
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

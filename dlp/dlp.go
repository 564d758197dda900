package dlp

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/phiguard/phiguard/internal/suggest"
)

// Redacted replaces each match in the output of Set.Redact.
const Redacted = "[REDACTED]"

// Names of the built-in detectors, as Config.Detectors lists them.
const (
	nameSSN   = "ssn"
	nameMRN   = "mrn"
	nameDOB   = "dob"
	namePhone = "phone"
	nameEmail = "email"
	nameICD10 = "icd10"
)

// known lists the built-in detectors in the order help text shows them.
var known = []string{nameSSN, nameMRN, nameDOB, namePhone, nameEmail, nameICD10}

// Config selects detectors.
type Config struct {
	// Detectors are names of built-in detectors, at least one, each at most
	// once:
	//   - ssn: AAA-GG-SSSS or AAA GG SSSS, or nine bare digits at most 20
	//     bytes after "SSN" or "social security"; never an area 000, 666
	//     or 9xx, a group 00 or a serial 0000.
	//   - mrn: a match of MRNPatterns.
	//   - dob: a date (03/04/1961, 3/4/61, 1961-03-04, March 3, 1961,
	//     3 March 1961, Mar 3 1961) at most 30 bytes from a DOBKeywords
	//     word, on either side; a date alone does not count.
	//   - phone: a NANP number ((555) 123-4567, 555.123.4567,
	//     +1 555 123 4567, 5551234567) or E.164 (+ and 8 to 15 digits,
	//     without spaces).
	//   - email: local@domain.tld.
	//   - icd10: an ICD-10-CM code in capitals, with a dot (E11.9,
	//     S72.001A), or without (E11) at most 30 bytes from icd, dx,
	//     diagnosis or code, or from such a code before it.
	// A built-in match never cuts a run of digits or letters:
	// "123456789012" holds neither an SSN nor a phone number.
	Detectors []string
	// MRNPatterns are RE2 regular expressions for the organization's medical
	// record numbers; required when "mrn" is listed, not allowed otherwise.
	// A pattern is matched as given: anchors and boundaries are its
	// author's job (write `\bMRN-?\d{7}\b`, not `\d{7}`, which also matches
	// seven digits inside any longer number). The whole match is redacted.
	// A pattern that can match the empty string is refused. One that starts
	// with a literal (`MRN-?\d{7}\b`) is searched for a hundred times faster
	// than one that starts with \b or a class: the regexp package skips
	// ahead to the literal.
	MRNPatterns []string
	// DOBKeywords override the words that must appear near a date for "dob"
	// (default: dob, d.o.b, birth, born, birthday, birthdate, date of
	// birth). They match ignoring ASCII case, a space matches any run of
	// white space, and a keyword does not count where it continues a run of
	// letters or digits ("dob" is not found in "adobe"). Allowed only when
	// "dob" is listed.
	DOBKeywords []string
}

// Set is a compiled selection of detectors. It is immutable and safe for
// concurrent use.
type Set struct {
	dets []detector
}

// Found has bit i set when detector i of the Set (in Config order) matched.
type Found uint32

// New compiles c. Its error lists every problem, one per line, each
// prefixed by the path of the setting at fault (`detectors[2]: ...`,
// `mrn_patterns[0]: ...`).
func New(c Config) (*Set, error) {
	var ps problems
	listed := checkDetectors(c.Detectors, &ps)
	mrnProbes := compileMRN(c.MRNPatterns, listed, &ps)
	dobWords := dobKeywords(c.DOBKeywords, listed, &ps)
	if len(ps) > 0 {
		return nil, errors.Join(ps...)
	}
	s := &Set{dets: make([]detector, len(c.Detectors))}
	for i, name := range c.Detectors {
		d := detector{name: name}
		switch name {
		case nameSSN:
			d.probes = ssnProbes
		case nameMRN:
			d.probes = mrnProbes
		case nameDOB:
			p := dateProbe
			p.kw = newKeywords(dobWords)
			d.probes = []probe{p}
		case namePhone:
			d.probes = phoneProbes
		case nameEmail:
			d.probes = emailProbes
		case nameICD10:
			d.probes = icdProbes
		}
		s.dets[i] = d
	}
	return s, nil
}

// problems collects what is wrong with a Config, so that New reports it
// all at once.
type problems []error

func (ps *problems) add(format string, args ...any) {
	*ps = append(*ps, fmt.Errorf(format, args...))
}

// checkDetectors reports unknown, duplicate or missing detector names and
// returns the index of each name listed.
func checkDetectors(names []string, ps *problems) map[string]int {
	if len(names) == 0 {
		ps.add("detectors: none listed (want one or more of %s)", strings.Join(known, ", "))
	}
	listed := make(map[string]int, len(names))
	for i, name := range names {
		if j, dup := listed[name]; dup {
			ps.add("detectors[%d]: %q is already listed at detectors[%d]", i, name, j)
			continue
		}
		if !slices.Contains(known, name) {
			if hint := suggest.Closest(name, known); hint != "" {
				ps.add("detectors[%d]: unknown detector %q (did you mean %q?)", i, name, hint)
			} else {
				ps.add("detectors[%d]: unknown detector %q (want one of %s)", i, name, strings.Join(known, ", "))
			}
			continue
		}
		listed[name] = i
	}
	return listed
}

// compileMRN compiles the MRN patterns into probes. They compile even when
// they are not allowed, so that one run of the config check reports a
// syntax error along with the rest.
func compileMRN(patterns []string, listed map[string]int, ps *problems) []probe {
	_, mrn := listed[nameMRN]
	switch {
	case mrn && len(patterns) == 0:
		ps.add(`mrn_patterns: required when "mrn" is among the detectors`)
	case !mrn && len(patterns) > 0:
		ps.add(`mrn_patterns: set, but "mrn" is not among the detectors`)
	}
	probes := make([]probe, 0, len(patterns))
	for i, p := range patterns {
		re, err := compilePattern(p)
		if err != nil {
			*ps = append(*ps, fmt.Errorf("mrn_patterns[%d]: %w", i, err))
			continue
		}
		probes = append(probes, probe{re: re, rule: asGiven})
	}
	return probes
}

// dobKeywords returns the normalized keywords of the dob detector: the
// defaults when words is nil.
func dobKeywords(words []string, listed map[string]int, ps *problems) []string {
	if words == nil {
		return defaultDOBKeywords
	}
	if _, dob := listed[nameDOB]; !dob {
		ps.add(`dob_keywords: set, but "dob" is not among the detectors`)
	}
	if len(words) == 0 {
		// A dob detector without keywords would never match.
		ps.add("dob_keywords: empty list (leave it out for the defaults)")
	}
	norm := make([]string, 0, len(words))
	for i, w := range words {
		w = normalizeKeyword(w)
		if w == "" {
			ps.add("dob_keywords[%d]: empty keyword", i)
			continue
		}
		norm = append(norm, w)
	}
	return norm
}

// compilePattern compiles an MRN pattern and refuses one that can match
// the empty string: it would "find" an MRN in every value (so block every
// request) while redacting nothing.
func compilePattern(p string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	// regexp.Compile parsed p with these flags, so this cannot fail.
	tree, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return nil, err
	}
	if canBeEmpty(tree) {
		return nil, errors.New("matches the empty string")
	}
	return re, nil
}

// canBeEmpty reports whether re can match the empty string somewhere.
// Zero-width assertions (^, \b) count as empty: `\b` alone matches at every
// word edge without consuming a byte.
func canBeEmpty(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune) == 0
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL, syntax.OpNoMatch:
		return false
	case syntax.OpCapture, syntax.OpPlus:
		return canBeEmpty(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || canBeEmpty(re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !canBeEmpty(sub) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		return slices.ContainsFunc(re.Sub, canBeEmpty)
	}
	// OpEmptyMatch, OpStar, OpQuest and the zero-width assertions.
	return true
}

// Names returns the Set's detectors in Config order.
func (s *Set) Names() []string {
	names := make([]string, len(s.dets))
	for i, d := range s.dets {
		names[i] = d.name
	}
	return names
}

// Names returns the names of the detectors of s that f reports, in Config
// order: what a refusal or an audit record may say about a match.
func (f Found) Names(s *Set) []string {
	var names []string
	for i, d := range s.dets {
		if f&(1<<i) != 0 {
			names = append(names, d.name)
		}
	}
	return names
}

// Scan reports which detectors match anywhere in v. It allocates nothing
// when nothing matches, unless v holds a candidate that a detector weighs
// in its context and refuses (ten digits at the head of a longer number
// cost a few bytes); dates, bare ICD codes and bare SSNs are not even
// looked for unless v holds one of their keywords.
func (s *Set) Scan(v []byte) Found {
	var f Found
	for i := range s.dets {
		for j := range s.dets[i].probes {
			if _, ok := s.dets[i].probes[j].find(nil, v, true); ok {
				f |= 1 << i
				break
			}
		}
	}
	return f
}

// Redact appends v to dst with each match replaced by Redacted, and
// reports what Scan(v) would. Only the matched value is replaced: a
// keyword that qualified it ("DOB:", "SSN") stays. Matches that overlap or
// touch, from one detector or several, become a single Redacted. v must
// not share memory with the spare capacity of dst.
func (s *Set) Redact(dst, v []byte) ([]byte, Found) {
	var f Found
	var buf [8]span
	spans := buf[:0]
	for i := range s.dets {
		n := len(spans)
		for j := range s.dets[i].probes {
			spans, _ = s.dets[i].probes[j].find(spans, v, false)
		}
		if len(spans) > n {
			f |= 1 << i
		}
	}
	if len(spans) == 0 {
		return append(dst, v...), 0
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	done, cur := 0, spans[0]
	for _, sp := range spans[1:] {
		if sp.start <= cur.end {
			cur.end = max(cur.end, sp.end)
			continue
		}
		dst = append(append(dst, v[done:cur.start]...), Redacted...)
		done, cur = cur.end, sp
	}
	dst = append(append(dst, v[done:cur.start]...), Redacted...)
	return append(dst, v[cur.end:]...), f
}

package dlp

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"unicode/utf8"
)

// A detector is one named entry of a Set: a match of any of its probes is
// a match of the detector.
type detector struct {
	name   string
	probes []probe
}

// A probe is a regular expression for candidates and the rule a candidate
// must then pass in its context: the part RE2 cannot say (it has no
// look-around), such as "not inside a longer number" or "near a keyword".
//
// A built-in probe's expression is anchored and tried only where a
// candidate can start (a byte of starts that does not continue a run of
// digits or letters), on at most maxLen bytes: Go's regexp package costs
// tens of nanoseconds a byte when it searches for a pattern without a
// literal prefix, and a value seldom has more than a few such places.
type probe struct {
	re     *regexp.Regexp
	starts *[256]bool
	maxLen int // -1: no limit
	// need is a byte every match of an asGiven probe holds: a cheap test
	// before the search.
	need byte
	rule rule
	kw   *keywords // for the rules that need a keyword nearby
}

// newProbe compiles a built-in probe. pattern uses no anchors or \b: the
// probe matches it at a position and checks the context itself, against the
// whole value.
func newProbe(pattern, starts string, r rule, kw *keywords) probe {
	re := regexp.MustCompile(`^(?:` + pattern + `)`)
	tree, _ := syntax.Parse(pattern, syntax.Perl) // parses: MustCompile did
	p := probe{
		re:     re,
		starts: new([256]bool),
		maxLen: maxLen(tree),
		rule:   r,
		kw:     kw,
	}
	for i := range len(starts) {
		p.starts[starts[i]] = true
	}
	return p
}

// rule is what a probe checks about a candidate besides its shape.
type rule uint8

const (
	// asGiven: every match of the expression counts, found as the regexp
	// package finds it in the whole value (so ^, $ and \b in an MRN pattern
	// mean what their author meant).
	asGiven rule = iota
	// ruleBounded: the candidate must stand apart from its neighbours.
	ruleBounded
	// ruleSSN: bounded, with an area, group and serial ever issued.
	ruleSSN
	// ruleSSNBare: ruleSSN, for nine bare digits that follow an SSN keyword.
	ruleSSNBare
	// ruleDOB: bounded, a real month and day, near a birth keyword.
	ruleDOB
	// ruleICDBare: bounded, near a diagnosis keyword or right after another
	// bare code the probe accepted ("Dx: E11, I10, N18").
	ruleICDBare
)

// How near a keyword must be, in bytes, for the rules that need one: from
// the keyword's end to the value's start when it comes first, from the
// value's end to its start when it follows.
const (
	ssnReach = 20
	dobReach = 30
	icdReach = 30
)

// span is a match [start, end) in a value.
type span struct{ start, end int }

// The built-in candidate expressions.
const (
	// An SSN written AAA-GG-SSSS or AAA GG SSSS, one separator throughout;
	// nine bare digits only after a keyword.
	ssnPattern     = `[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}`
	ssnBarePattern = `[0-9]{9}`

	// A NANP number: an optional 1 or +1, an area code whose first digit is
	// 2-9 (in parentheses or not), then 3 and 4 digits, each group
	// separated by one optional space, dot or dash. The area code's rule
	// keeps "1234567890" out; the exchange's rule (also 2-9) is not
	// applied, so that 555-123-4567, the usual made-up number, still counts.
	nanpPattern = `(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-]?)[0-9]{3}[ .-]?[0-9]{4}`
	// E.164: + then 8 to 15 digits, the first not 0, without separators:
	// "+44 20 7946 0958" is not found. Allowing spaces would let a number
	// reach into the next one, and a candidate refused for its length could
	// then hide a shorter number that redaction of its neighbour frees.
	e164Pattern = `\+[1-9][0-9]{7,14}`

	// An ICD-10-CM code: a letter other than U (reserved), a digit, a digit
	// or, as in C4A, C7A, C7B, D3A, M1A and Z3A, the letter A or B; then
	// optionally a dot and up to four more characters (S72.001A). Capitals
	// only: lower-case look-alikes are mostly version strings (v10.2).
	icdDottedPattern = `[A-TV-Z][0-9][0-9AB]\.[0-9A-Z]{1,4}`
	icdBarePattern   = `[A-TV-Z][0-9][0-9AB]`

	// Dates a DOB is written as; validDate checks the numbers. The parts of
	// a date written with a month name are a few white-space bytes apart
	// at most, which bounds how far a candidate reaches.
	datePattern = `(?i)` +
		`[0-9]{1,2}/[0-9]{1,2}/(?:[0-9]{4}|[0-9]{2})` + // 03/04/1961, 3/4/61
		`|[0-9]{1,2}-[0-9]{1,2}-[0-9]{4}` + // 03-04-1961
		`|[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}` + // 04.03.1961
		`|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}` + // 1961-03-04
		`|[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}` + // 1961/03/04
		`|` + month + `\.?\s{1,3}[0-9]{1,2}` + ordinal + `,?\s{1,3}[0-9]{4}` + // March 3, 1961; Mar. 3rd 1961
		`|[0-9]{1,2}` + ordinal + `\s{1,3}(?:of\s{1,3})?` + month + `\.?,?\s{1,3}[0-9]{4}` // 3 March 1961; 3rd of Mar, 1961
	month   = `(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)`
	ordinal = `(?:st|nd|rd|th)?`

	// local@domain.tld, with the characters addresses use in practice
	// rather than all that RFC 5322 allows; the top-level label is letters.
	emailPattern = `[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`
)

// Bytes candidates start with.
const (
	digits     = "0123456789"
	icdLetters = "ABCDEFGHIJKLMNOPQRSTVWXYZ"
	// The first letters of month names, both cases.
	monthInitials = "adfjmnosADFJMNOS"
)

// Keywords of the rules that need one.
var (
	defaultDOBKeywords = []string{"dob", "d.o.b", "birth", "born", "birthday", "birthdate", "date of birth"}
	ssnKeywords        = newKeywords([]string{"ssn", "social security"})
	icdKeywords        = newKeywords([]string{"icd", "dx", "ddx", "diag", "diagnosis", "diagnoses", "code", "codes"})
)

// The built-in detectors' probes; MRN and DOB are built per Set.
var (
	ssnProbes = []probe{
		newProbe(ssnPattern, digits, ruleSSN, nil),
		newProbe(ssnBarePattern, digits, ruleSSNBare, ssnKeywords),
	}
	phoneProbes = []probe{
		newProbe(nanpPattern, digits+"+(", ruleBounded, nil),
		newProbe(e164Pattern, "+", ruleBounded, nil),
	}
	// An e-mail address needs no context: the expression already starts as
	// far left and ends as far right as an address can reach.
	emailProbes = []probe{{re: regexp.MustCompile(emailPattern), need: '@', rule: asGiven}}
	icdProbes   = []probe{
		newProbe(icdDottedPattern, icdLetters, ruleBounded, nil),
		newProbe(icdBarePattern, icdLetters, ruleICDBare, icdKeywords),
	}
)

// dateProbe is the dob detector's probe; each Set gives it its keywords.
var dateProbe = newProbe(datePattern, digits+monthInitials, ruleDOB, nil)

// find appends to dst the matches of p in v, left to right; with first it
// stops at the first and appends nothing. ok reports whether there was
// one. With first, find allocates only when the expression finds a
// candidate, so a value with none costs no allocation.
func (p *probe) find(dst []span, v []byte, first bool) (_ []span, ok bool) {
	if p.rule == asGiven {
		if p.need != 0 && bytes.IndexByte(v, p.need) < 0 {
			return dst, false
		}
		if first {
			return dst, p.re.Match(v)
		}
		for _, m := range p.re.FindAllIndex(v, -1) {
			// New refuses patterns that can match nothing, so m is never
			// empty; an empty span would count a match without hiding it.
			dst = append(dst, span{m[0], m[1]})
			ok = true
		}
		return dst, ok
	}
	if p.kw != nil && !p.kw.in(v) {
		// Every candidate would fail for want of a keyword.
		return dst, false
	}
	chain := -1 // end of the last accepted match, for ruleICDBare
	for s := 0; s < len(v); s++ {
		// Where a candidate would cut a run of digits or letters, accept
		// would refuse it: do not look.
		if !p.starts[v[s]] || s > 0 && sameRun(v[s-1], v[s]) {
			continue
		}
		end := len(v)
		if p.maxLen >= 0 {
			end = min(end, s+p.maxLen)
		}
		loc := p.re.FindIndex(v[s:end])
		if loc == nil || !p.accept(v, s, s+loc[1], chain) {
			continue
		}
		if first {
			return dst, true
		}
		e := s + loc[1]
		dst = append(dst, span{s, e})
		ok, chain = true, e
		s = e - 1 // matches do not overlap: go on at e
	}
	return dst, ok
}

// accept reports whether the candidate v[s:e] passes p's rule. chain is
// the end of the match p accepted last, or -1.
func (p *probe) accept(v []byte, s, e, chain int) bool {
	if !bounded(v, s, e) {
		return false
	}
	switch p.rule {
	case ruleSSN:
		return validSSN(v[s:e])
	case ruleSSNBare:
		return validSSN(v[s:e]) && p.kw.near(v, s, e, ssnReach, -1)
	case ruleDOB:
		return validDate(v[s:e]) && p.kw.near(v, s, e, dobReach, dobReach)
	case ruleICDBare:
		return (chain >= 0 && s-chain <= icdReach) || p.kw.near(v, s, e, icdReach, icdReach)
	}
	return true
}

// bounded reports whether v[s:e] stands apart from its neighbours: it does
// not cut a run of digits or of letters on either side ("12345678901" holds
// no phone number, "XE11.9" no code), and a digit at its edge is not
// joined by one '-' or '.' to a digit beyond ("555-123-4567-89",
// "V10.2.1"). The relation is symmetric between two neighbours, which is
// why redacting a built-in match never frees a neighbour it held back
// (FuzzRedact relies on it). Letters and digits are ASCII only.
func bounded(v []byte, s, e int) bool {
	if s > 0 {
		if sameRun(v[s-1], v[s]) || isDigit(v[s]) && s > 1 && isJoiner(v[s-1]) && isDigit(v[s-2]) {
			return false
		}
	}
	if e < len(v) {
		if sameRun(v[e-1], v[e]) || isDigit(v[e-1]) && e+1 < len(v) && isJoiner(v[e]) && isDigit(v[e+1]) {
			return false
		}
	}
	return true
}

// validSSN reports whether the nine digits of an SSN candidate could have
// been issued: area not 000, 666 or 9xx, group not 00, serial not 0000.
func validSSN(m []byte) bool {
	var d [9]byte
	n := 0
	for _, b := range m {
		if isDigit(b) && n < len(d) {
			d[n] = b
			n++
		}
	}
	return n == 9 && string(d[0:3]) != "000" && string(d[0:3]) != "666" && d[0] != '9' &&
		string(d[3:5]) != "00" && string(d[5:9]) != "0000"
}

// validDate reports whether a date candidate names a real month and day.
// A numeric date is read month first (US) or day first, whichever fits:
// for a DOB detector missing one is worse than the rare date that fits
// neither way.
func validDate(m []byte) bool {
	var nums [3]int
	var lens [3]int
	n := 0
	for i := 0; i < len(m); {
		if !isDigit(m[i]) {
			i++
			continue
		}
		if n == len(nums) {
			return false
		}
		for ; i < len(m) && isDigit(m[i]); i++ {
			nums[n] = nums[n]*10 + int(m[i]-'0')
			lens[n]++
		}
		n++
	}
	day := func(d int) bool { return d >= 1 && d <= 31 }
	mon := func(m int) bool { return m >= 1 && m <= 12 }
	switch {
	case n == 2: // a month name, a day, a year
		return day(nums[0])
	case n == 3 && lens[0] == 4: // year first
		return mon(nums[1]) && day(nums[2])
	case n == 3:
		return mon(nums[0]) && day(nums[1]) || mon(nums[1]) && day(nums[0])
	}
	return false
}

func isDigit(b byte) bool  { return '0' <= b && b <= '9' }
func isLetter(b byte) bool { return 'a' <= b|0x20 && b|0x20 <= 'z' }
func isJoiner(b byte) bool { return b == '-' || b == '.' }
func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// sameRun reports whether a and b are both digits or both letters: a
// boundary between them would cut a number or a word.
func sameRun(a, b byte) bool {
	return isDigit(a) && isDigit(b) || isLetter(a) && isLetter(b)
}

// maxLen returns the most bytes re can match, or -1 if there is no limit.
func maxLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 {
				n += utf8.UTFMax // a fold may be longer ('k' and the Kelvin sign)
			} else {
				n += utf8.RuneLen(r)
			}
		}
		return n
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return 0
		}
		return utf8.RuneLen(min(re.Rune[len(re.Rune)-1], utf8.MaxRune))
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCapture, syntax.OpQuest:
		return maxLen(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return -1
	case syntax.OpRepeat:
		n := maxLen(re.Sub[0])
		if re.Max < 0 || n < 0 {
			return -1
		}
		return re.Max * n
	case syntax.OpConcat, syntax.OpAlternate:
		total := 0
		for _, sub := range re.Sub {
			n := maxLen(sub)
			switch {
			case n < 0:
				return -1
			case re.Op == syntax.OpConcat:
				total += n
			default:
				total = max(total, n)
			}
		}
		return total
	}
	return 0 // empty matches and zero-width assertions
}

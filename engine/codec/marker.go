package codec

import (
	"errors"
	"strings"
)

// ErrPlantedToken: a request carries a phiguard token where phiguard does
// not seal it. Only phiguard writes tokens; one arriving from outside could
// be stored where a read route decrypts it.
var ErrPlantedToken = errors.New("phiguard token in a request")

// HasTokenMarker reports whether s holds something an app could turn into a
// phiguard token: "ephi" (any letter case) followed by ':' or by the start
// of an escape that may spell one ('%' for %3A, '\' for \u003a or \x3a, '&'
// for &#58;). It is deliberately wider than the token grammar: an app may
// trim, unescape or re-case what it stores. So the same test is also made
// on s with its escapes decoded, up to three times over (percent-escapes,
// %uXXXX, \uXXXX and \xXX, and HTML character references): "%65phi%3a"
// and "\u0065phi:" count too. "ephi" inside a word ("Stephi:") does not
// count: a token begins where its value begins, and an app that trims
// stores what follows white space or punctuation, not a word's tail.
func HasTokenMarker[T string | []byte](s T) bool {
	found, escaped := scanMarker(s)
	if found || !escaped {
		return found
	}
	d := string(s)
	for range 3 {
		next := unescapeLoose(d)
		if next == d {
			return false
		}
		if found, _ := scanMarker(next); found {
			return true
		}
		d = next
	}
	return false
}

// scanMarker looks for a marker in one pass, and reports whether s holds a
// character that may start an escape.
func scanMarker[T string | []byte](s T) (found, escaped bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '\\', '&':
			escaped = true
		case 'e', 'E':
			if i+4 < len(s) && s[i+1]|0x20 == 'p' && s[i+2]|0x20 == 'h' && s[i+3]|0x20 == 'i' && (i == 0 || !isAlnum(s[i-1])) {
				switch s[i+4] {
				case ':', '%', '\\', '&':
					return true, true
				}
			}
		}
	}
	return false, escaped
}

func isAlnum(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9'
}

// unescapeLoose decodes, in one pass, the escapes an app or a library may
// undo before storing a value: %XX, %uXXXX, \uXXXX and \xXX (ASCII
// only), &#NN; and &#xHH; (any number of leading zeros) and &colon;.
// Anything else is copied as it is.
func unescapeLoose(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+5 < len(s) && s[i+1]|0x20 == 'u' && s[i+2] == '0' && s[i+3] == '0' && isHexDigit(s[i+4]) && isHexDigit(s[i+5]):
			b.WriteByte(hexVal(s[i+4])<<4 | hexVal(s[i+5])) // %uXXXX: JavaScript's unescape, classic ASP.NET
			i += 5
			continue
		case c == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
			b.WriteByte(hexVal(s[i+1])<<4 | hexVal(s[i+2]))
			i += 2
			continue
		case c == '\\' && i+5 < len(s) && s[i+1]|0x20 == 'u' && s[i+2] == '0' && s[i+3] == '0' && isHexDigit(s[i+4]) && isHexDigit(s[i+5]):
			b.WriteByte(hexVal(s[i+4])<<4 | hexVal(s[i+5]))
			i += 5
			continue
		case c == '\\' && i+3 < len(s) && s[i+1]|0x20 == 'x' && isHexDigit(s[i+2]) && isHexDigit(s[i+3]):
			b.WriteByte(hexVal(s[i+2])<<4 | hexVal(s[i+3]))
			i += 3
			continue
		case c == '&':
			if r, n := charRef(s[i:]); n > 0 {
				b.WriteByte(r)
				i += n - 1
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// charRef decodes an ASCII HTML character reference at the start of s
// (&#58; &#x3a; &colon;), returning the byte and the reference's length.
func charRef(s string) (byte, int) {
	if strings.HasPrefix(s, "&colon;") {
		return ':', len("&colon;")
	}
	if len(s) < 4 || s[1] != '#' {
		return 0, 0
	}
	v, i, base := 0, 2, 10
	if s[2]|0x20 == 'x' {
		i, base = 3, 16
	}
	for i < len(s) && s[i] == '0' {
		i++ // HTML allows any number of leading zeros
	}
	start := i
	for i < len(s) && i < start+6 {
		c := s[i]
		if !('0' <= c && c <= '9' || base == 16 && isHexDigit(c)) {
			break
		}
		v = v*base + int(hexVal(c))
		i++
	}
	// The ';' is optional in HTML for numeric references.
	if i == 2 || i == 3 && base == 16 || v >= 0x80 {
		return 0, 0
	}
	if i < len(s) && s[i] == ';' {
		i++
	}
	return byte(v), i
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

func hexVal(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// PlantedToken is the refusal for a token-like value found in where (a
// form field, a JSON key, the query string …), named by place, never by value.
func PlantedToken(where string) error {
	return bodyError(ErrPlantedToken, "a phiguard token (or text that spells one) was sent in "+where+"; only phiguard writes tokens")
}

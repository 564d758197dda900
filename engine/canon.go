package engine

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// errAmbiguousPath: the path cannot be normalized to one meaning.
var errAmbiguousPath = errors.New("ambiguous path")

// canonicalPath is a request path normalized once: matched by the policy in
// its decoded form and forwarded to the app in its escaped form.
type canonicalPath struct {
	decoded string
	escaped string
}

// canonicalize normalizes a raw request path: percent-escapes of unreserved
// characters are decoded, other escapes are upper-cased, repeated slashes
// and dot segments are removed. What would mean different things to
// different servers is refused: an encoded '/' or '\', a raw '\', ';' path
// parameters (raw or encoded), NUL and control characters, raw non-ASCII
// bytes, malformed escapes, escapes that do not decode to UTF-8, and '..'
// above the root.
func canonicalize(raw string) (canonicalPath, error) {
	if alreadyCanonical(raw) {
		return canonicalPath{decoded: raw, escaped: raw}, nil
	}
	return normalize(raw)
}

// alreadyCanonical reports whether raw is its own canonical form: printable
// ASCII without '%', ';' or '\', and no empty, "." or ".." segment but a
// trailing slash. Most request paths are; they need no copy.
func alreadyCanonical(raw string) bool {
	if raw == "" || raw[0] != '/' {
		return false
	}
	start := 1 // of the current segment
	for i := 1; i <= len(raw); i++ {
		if i < len(raw) {
			c := raw[i]
			if c < 0x21 || c >= 0x7f || c == '%' || c == ';' || c == '\\' {
				return false
			}
			if c != '/' {
				continue
			}
		} else if start == len(raw) {
			return true // "/" or a trailing slash
		}
		switch raw[start:i] {
		case "", ".", "..":
			return false
		}
		start = i + 1
	}
	return true
}

func normalize(raw string) (canonicalPath, error) {
	if raw == "" || raw[0] != '/' {
		return canonicalPath{}, errors.New("the path must start with '/'")
	}
	var dec, esc strings.Builder
	dec.Grow(len(raw))
	esc.Grow(len(raw))
	var segsDec, segsEsc []string
	trailing := false
	flush := func() {
		d, e := dec.String(), esc.String()
		dec.Reset()
		esc.Reset()
		switch d {
		case "":
			trailing = true
		case ".":
			trailing = true
		case "..":
			trailing = true
			if len(segsDec) == 0 {
				segsDec = append(segsDec, "\x00") // marks an escape above the root
				return
			}
			segsDec, segsEsc = segsDec[:len(segsDec)-1], segsEsc[:len(segsEsc)-1]
		default:
			trailing = false
			segsDec = append(segsDec, d)
			segsEsc = append(segsEsc, e)
		}
	}
	for i := 1; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '/':
			flush()
			if len(segsDec) > 0 && segsDec[len(segsDec)-1] == "\x00" {
				return canonicalPath{}, errors.New("'..' climbs above the root")
			}
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return canonicalPath{}, errors.New("malformed percent-escape")
			}
			b := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
			switch {
			case isUnreserved(b):
				dec.WriteByte(b)
				esc.WriteByte(b)
			case b == '/' || b == '\\':
				return canonicalPath{}, errors.New("encoded '/' or '\\' in the path")
			case b == ';':
				return canonicalPath{}, errors.New("';' path parameters are not accepted")
			case b < 0x20 || b == 0x7f:
				return canonicalPath{}, errors.New("control character in the path")
			default:
				dec.WriteByte(b)
				esc.WriteByte('%')
				esc.WriteByte(upperHex[b>>4])
				esc.WriteByte(upperHex[b&15])
			}
		case c == ';':
			return canonicalPath{}, errors.New("';' path parameters are not accepted")
		case c == '\\':
			return canonicalPath{}, errors.New("'\\' in the path")
		case c < 0x21 || c >= 0x7f:
			return canonicalPath{}, errors.New("control, space or non-ASCII byte in the path")
		default:
			dec.WriteByte(c)
			esc.WriteByte(c)
		}
	}
	flush()
	if len(segsDec) > 0 && segsDec[len(segsDec)-1] == "\x00" {
		return canonicalPath{}, errors.New("'..' climbs above the root")
	}
	d := "/" + strings.Join(segsDec, "/")
	e := "/" + strings.Join(segsEsc, "/")
	if trailing && len(segsDec) > 0 {
		d += "/"
		e += "/"
	}
	if !utf8.ValidString(d) {
		return canonicalPath{}, errors.New("the path does not decode to UTF-8")
	}
	return canonicalPath{decoded: d, escaped: e}, nil
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved reports RFC 3986 unreserved characters.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

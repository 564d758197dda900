package audit

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// AppendJSON appends r to dst as one JSON object, without a trailing
// newline, and returns the extended buffer. It writes what json.Marshal of
// encoding/json writes for r, byte for byte, without reflection: the same
// field order, the same omitempty fields left out, strings escaped alike
// (<, > and & as \u003c and so on, U+2028 and U+2029 escaped, each invalid
// UTF-8 byte replaced by \ufffd).
//
// Where json.Marshal fails, AppendJSON still writes valid JSON, so a record
// is never lost to its encoding: a NaN or infinite latency is written as
// null, and a time outside what RFC 3339 can say (a year past 9999, an
// offset of a day or more) is written as time.Time.AppendFormat spells it.
func (r *Record) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"time":"`...)
	dst = r.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","request_id":`...)
	dst = appendString(dst, r.RequestID)
	dst = appendNonEmpty(dst, `,"org":`, r.Org)
	dst = appendNonEmpty(dst, `,"user":`, r.User)
	dst = appendNonEmpty(dst, `,"role":`, r.Role)
	dst = appendNonEmpty(dst, `,"session":`, r.Session)
	dst = appendNonEmpty(dst, `,"client_ip":`, r.ClientIP)
	dst = appendNonEmpty(dst, `,"user_agent":`, r.UserAgent)
	dst = appendNonEmpty(dst, `,"route":`, r.Route)
	dst = appendNonEmpty(dst, `,"destination":`, r.Destination)
	dst = append(dst, `,"method":`...)
	dst = appendString(dst, r.Method)
	dst = append(dst, `,"path":`...)
	dst = appendString(dst, r.Path)
	dst = appendValues(dst, `,"params":`, r.Params)
	if len(r.Actions) > 0 {
		dst = append(dst, `,"actions":[`...)
		for i, a := range r.Actions {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, a)
		}
		dst = append(dst, ']')
	}
	if len(r.Fields) > 0 {
		dst = append(dst, `,"fields":[`...)
		for i := range r.Fields {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = r.Fields[i].appendJSON(dst)
		}
		dst = append(dst, ']')
	}
	dst = appendNonEmpty(dst, `,"phase":`, r.Phase)
	dst = append(dst, `,"decision":`...)
	dst = appendString(dst, r.Decision)
	dst = appendNonEmpty(dst, `,"reason":`, r.Reason)
	dst = appendNonEmpty(dst, `,"break_glass":`, r.BreakGlass)
	dst = appendNonEmpty(dst, `,"integration":`, r.Integration)
	dst = appendNonEmpty(dst, `,"scope":`, r.Scope)
	dst = appendValues(dst, `,"recorded":`, r.Recorded)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	if r.UpstreamStatus != 0 {
		dst = append(dst, `,"upstream_status":`...)
		dst = strconv.AppendInt(dst, int64(r.UpstreamStatus), 10)
	}
	dst = append(dst, `,"latency_ms":`...)
	dst = appendFloat(dst, r.LatencyMS)
	dst = appendNonEmpty(dst, `,"policy":`, r.Policy)
	return append(dst, '}')
}

func (f *Field) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"action":`...)
	dst = appendString(dst, f.Action)
	dst = append(dst, `,"path":`...)
	dst = appendString(dst, f.Path)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, int64(f.Count), 10)
	dst = appendNonEmpty(dst, `,"reason":`, f.Reason)
	return append(dst, '}')
}

// appendNonEmpty appends key and s, unless s is empty (omitempty).
func appendNonEmpty(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendString(append(dst, key...), s)
}

// appendFloat writes f as encoding/json does: ES6 number formatting, which
// jsontext.AppendFloat implements with the same cutoffs ('e' below 1e-6 and
// from 1e21, exponents without a leading zero). encoding/json refuses NaN
// and infinities; a record writes null instead.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return jsontext.AppendFloat(dst, f, 64)
}

// safeASCII[c] says whether the ASCII byte c goes into a JSON string as it
// is. encoding/json's HTML-safe set: printable, but not ", \, <, > or &.
var safeASCII = func() (safe [utf8.RuneSelf]bool) {
	for c := byte(' '); c < utf8.RuneSelf; c++ {
		safe[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return safe
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json escapes
// it (jsontext.AppendQuote escapes less and refuses invalid UTF-8).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default: // other control bytes, <, > and &
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but line breaks to JavaScript.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendValues appends key and the values as [{"name":…,"value":…},…],
// unless there are none.
func appendValues(dst []byte, key string, vs []Value) []byte {
	if len(vs) == 0 {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '[')
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, v.Name)
		dst = append(dst, `,"value":`...)
		dst = appendString(dst, v.Value)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

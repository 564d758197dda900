// Package liblog sends the standard library's log lines to slog with every value withheld.
//
// net/http, httputil and http2 log through a *log.Logger, and their lines
// can quote the bytes of a request or response: the Transport's
// `Unsolicited response received on idle HTTP channel starting with "…"`
// prints the first bytes of a body that may be a stored PHI value, a
// textproto error prints the raw header line. liblog keeps only the fixed
// wording in front of such values.
//
// The rule, applied to each line:
//
//  1. A leading "pkg: " prefix (a lowercase word of letters, digits and
//     '/', '.', '_', '-', at most 32 bytes, then ": "), such as "http: ",
//     "http2: " or "httputil: ", is moved into a component attribute.
//  2. Only the text before the first double quote, single quote, backquote,
//     colon, '=', '{', '[' or line break is kept, so quoted bytes, error
//     details and key=value tails never pass.
//  3. That text is trimmed of spaces and cut to at most 160 bytes (at a
//     UTF-8 boundary); if nothing is left, the text is "(withheld)".
//
// Each line becomes one Warn record, message "library log", with the
// attributes source (who logged: "go-stdlib", "net/http server"), component
// when there was one, and text. What is cut is never logged, not even its
// length. Wording before a stop character survives the rule, so a library
// line that printed a value without quoting or a colon in front of it, such
// as a remote address in "http: TLS handshake error from 10.0.0.7:51234: …"
// (kept: "TLS handshake error from 10.0.0.7"), still shows it.
package liblog

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Message is the message of every record liblog writes.
const Message = "library log"

// Withheld is the text of a record when nothing of the line may be shown.
const Withheld = "(withheld)"

// maxText is the longest text kept, in bytes.
const maxText = 160

// maxComponent is the longest "pkg" in a leading "pkg: " prefix.
const maxComponent = 32

// New returns a standard logger, flags 0 and no prefix, for a library's
// ErrorLog field (http.Server, httputil.ReverseProxy): each line it prints
// becomes one record on lg as the package comment describes. source names
// the library or the value that holds the logger. A nil lg drops the lines.
func New(lg *slog.Logger, source string) *log.Logger {
	return log.New(Writer(lg, source), "", 0)
}

// Writer returns an io.Writer for log.SetOutput or log.New: each call to
// Write is one line (a *log.Logger writes each line with one call) and
// becomes one record on lg; Write never fails. Set the logger's flags to 0
// and its prefix to "", or the date and prefix hide a "pkg: " component. A
// nil lg drops the lines.
func Writer(lg *slog.Logger, source string) io.Writer {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &writer{log: lg, source: source}
}

type writer struct {
	log    *slog.Logger
	source string
}

func (w *writer) Write(p []byte) (int, error) {
	component, text := withhold(string(p))
	attrs := make([]slog.Attr, 0, 3)
	attrs = append(attrs, slog.String("source", w.source))
	if component != "" {
		attrs = append(attrs, slog.String("component", component))
	}
	attrs = append(attrs, slog.String("text", text))
	w.log.LogAttrs(context.Background(), slog.LevelWarn, Message, attrs...)
	return len(p), nil
}

// withhold applies the package's rule to one line.
func withhold(line string) (component, text string) {
	component, rest := splitComponent(line)
	if i := strings.IndexAny(rest, "\"'`:={[\r\n"); i >= 0 {
		rest = rest[:i]
	}
	rest = strings.TrimSpace(rest)
	if len(rest) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(rest[cut]) {
			cut--
		}
		rest = strings.TrimSpace(rest[:cut])
	}
	if rest == "" {
		rest = Withheld
	}
	return component, rest
}

// splitComponent splits a leading "pkg: " from line.
func splitComponent(line string) (component, rest string) {
	i := strings.Index(line, ": ")
	if i <= 0 || i > maxComponent {
		return "", line
	}
	word := line[:i]
	if c := word[0]; c < 'a' || c > 'z' {
		return "", line
	}
	for j := 0; j < len(word); j++ {
		c := word[j]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '/', c == '.', c == '_', c == '-':
		default:
			return "", line
		}
	}
	return word, line[i+2:]
}

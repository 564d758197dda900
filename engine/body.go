package engine

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
)

type bodyKind uint8

const (
	bodyJSON bodyKind = iota + 1
	bodyForm
)

var errUnsupportedMedia = errors.New("unsupported media")

// requestMediaKind reads a request's Content-Type strictly: only media
// types whose meaning is the plain JSON or form document the selectors
// address are read. JSON is application/json, JSON Merge Patch
// (application/merge-patch+json: the same document, null for removal),
// FHIR resources (application/fhir+json), HAL (application/hal+json) and
// vendor types (application/vnd.*+json). Other +json types have a grammar
// of their own: JSON Patch (RFC 6902) is a list of operations whose values
// selectors cannot reach, JSON-LD renames keys through @context, and so on;
// they are refused, as is every other type.
func requestMediaKind(h http.Header) (bodyKind, string, error) {
	kind, mt, why, err := parseMediaType(h)
	if err != nil || kind == bodyForm || plainJSONTypes[mt] || strings.HasPrefix(mt, "application/vnd.") && strings.HasSuffix(mt, "+json") {
		return kind, why, err
	}
	if mt == "application/json-patch+json" {
		return 0, "JSON Patch (application/json-patch+json) is refused on routes that carry PHI: its values cannot be selected; send the object, or a JSON Merge Patch (application/merge-patch+json)", errUnsupportedMedia
	}
	return 0, "this +json media type has a grammar of its own; routes that carry PHI read application/json, merge-patch+json, fhir+json, hal+json, vnd.*+json and forms", errUnsupportedMedia
}

// plainJSONTypes are read as the JSON document they are.
var plainJSONTypes = map[string]bool{
	"application/json": true, "application/merge-patch+json": true, "application/fhir+json": true, "application/hal+json": true,
}

// mediaKind reads a response's Content-Type: JSON (application/json or any
// +json) or form, with a UTF-8 charset if any.
func mediaKind(h http.Header) (bodyKind, string, error) {
	kind, _, why, err := parseMediaType(h)
	return kind, why, err
}

func parseMediaType(h http.Header) (bodyKind, string, string, error) {
	values := h.Values("Content-Type")
	if len(values) != 1 {
		if len(values) == 0 {
			return 0, "", "a body needs a Content-Type", errUnsupportedMedia
		}
		return 0, "", "more than one Content-Type", errUnsupportedMedia
	}
	if kind, mt, ok := commonMediaType(values[0]); ok {
		return kind, mt, "", nil
	}
	return readMediaType(values[0])
}

// commonMediaType reads the usual spellings of the JSON and form types
// without parsing, as readMediaType would read them.
func commonMediaType(v string) (bodyKind, string, bool) {
	switch v {
	case "application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8", "application/json;charset=utf-8", "application/json;charset=UTF-8":
		return bodyJSON, "application/json", true
	case "application/x-www-form-urlencoded":
		return bodyForm, "application/x-www-form-urlencoded", true
	}
	return 0, "", false
}

func readMediaType(v string) (bodyKind, string, string, error) {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return 0, "", "unreadable Content-Type", errUnsupportedMedia
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, mt, "only the UTF-8 charset is read", errUnsupportedMedia
	}
	switch {
	case mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return bodyJSON, mt, "", nil
	case mt == "application/x-www-form-urlencoded":
		return bodyForm, mt, "", nil
	}
	return 0, mt, "this route reads only JSON and form bodies", errUnsupportedMedia
}

// contentEncoding reads a Content-Encoding: "" (none), or gzip.
func contentEncoding(h http.Header) (gzipped bool, ok bool) {
	values := h.Values("Content-Encoding")
	switch len(values) {
	case 0:
		return false, true
	case 1:
		switch strings.ToLower(strings.TrimSpace(values[0])) {
		case "", "identity":
			return false, true
		case "gzip", "x-gzip":
			return true, true
		}
	}
	return false, false
}

// readBody reads all of body, decoding gzip when asked, and fails with
// errTooLarge past limit bytes, before or after decompression: a small
// gzip bomb is refused as surely as a large body. size is the declared
// length (-1 when unknown): the buffer is sized for it up to limit, so a
// body of known length is read without regrowing. The buffer is lent
// (getBuffer): give it back with putBuffer once done with it.
func readBody(body io.Reader, size int64, gzipped bool, limit int64) ([]byte, error) {
	raw, err := readLimited(body, size, limit)
	if err != nil {
		return nil, err
	}
	if !gzipped {
		return raw, nil
	}
	defer putBuffer(raw)
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, errBadGzip
	}
	defer zr.Close()
	out, err := readLimited(zr, -1, limit)
	if errors.Is(err, errReadBody) {
		return nil, errBadGzip
	}
	return out, err
}

func readLimited(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, errTooLarge
	}
	// A body of declared length is read into one buffer of that length
	// plus a byte, to see EOF; one of unknown length starts small and grows.
	// The declared length is only a claim: up front, no more than the
	// largest pooled buffer is reserved, so headers alone cannot make
	// phiguard hold max_body_bytes for a body that never comes.
	c := int64(512)
	if size >= 0 {
		c = min(size+1, int64(maxPooled))
	}
	buf := getBuffer(int(min(c, limit+1)))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				putBuffer(buf)
				return nil, errTooLarge
			}
			grown := getBuffer(len(buf) + int(min(int64(cap(buf)), limit+1-int64(len(buf)))))
			grown = append(grown, buf...)
			putBuffer(buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			putBuffer(buf)
			return nil, errTooLarge
		}
		switch {
		case err == io.EOF:
			return buf, nil
		case err != nil:
			putBuffer(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errReadTimeout
			}
			return nil, errReadBody
		}
	}
}

var (
	errBadGzip  = badRequest("the gzip body does not decompress")
	errReadBody = badRequest("the body could not be read")
)

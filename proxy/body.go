package proxy

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
)

type bodyKind uint8

const (
	bodyJSON bodyKind = iota + 1
	bodyForm
)

var errUnsupportedMedia = errors.New("unsupported media")

// mediaKind reads a Content-Type: JSON (application/json or any +json) or
// form (application/x-www-form-urlencoded), with a UTF-8 charset if any.
func mediaKind(h http.Header) (bodyKind, string, error) {
	values := h.Values("Content-Type")
	if len(values) != 1 {
		if len(values) == 0 {
			return 0, "a body needs a Content-Type", errUnsupportedMedia
		}
		return 0, "more than one Content-Type", errUnsupportedMedia
	}
	mt, params, err := mime.ParseMediaType(values[0])
	if err != nil {
		return 0, "unreadable Content-Type", errUnsupportedMedia
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, "only the UTF-8 charset is read", errUnsupportedMedia
	}
	switch {
	case mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return bodyJSON, "", nil
	case mt == "application/x-www-form-urlencoded":
		return bodyForm, "", nil
	}
	return 0, "this route reads only JSON and form bodies", errUnsupportedMedia
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
// gzip bomb is refused as surely as a large body.
func readBody(body io.Reader, gzipped bool, limit int64) ([]byte, error) {
	raw, err := readLimited(body, limit)
	if err != nil {
		return nil, err
	}
	if !gzipped {
		return raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, errBadGzip
	}
	defer zr.Close()
	out, err := readLimited(zr, limit)
	if errors.Is(err, errReadBody) {
		return nil, errBadGzip
	}
	return out, err
}

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if n > limit {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, errReadBody
	}
	return buf.Bytes(), nil
}

var (
	errBadGzip  = badRequest("the gzip body does not decompress")
	errReadBody = badRequest("the body could not be read")
)

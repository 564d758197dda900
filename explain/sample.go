package explain

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// A sample is an HTTP/1.1 message written as text: the request (or status)
// line, the headers, a blank line, then the body. Lines may end in \n or
// \r\n. The body is everything after the blank line but for one final
// line end (an editor's); Content-Length and Transfer-Encoding are set
// from it, whatever the sample says. A request line without its version
// (POST /path) is read as HTTP/1.1.

// ParseRequest reads a sample request. Its errors never quote the sample.
func ParseRequest(raw []byte) (*http.Request, []byte, error) {
	head, body, err := splitMessage(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("request: %w", err)
	}
	if f := strings.Fields(head[0]); len(f) == 2 {
		head[0] = f[0] + " " + f[1] + " HTTP/1.1"
	}
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(joinHead(head))))
	if err != nil {
		return nil, nil, errors.New("request: not an HTTP/1.1 request (a request line METHOD TARGET HTTP/1.1, headers as Name: value, a blank line, the body)")
	}
	frameSample(r.Header, body)
	r.TransferEncoding, r.ContentLength = nil, int64(len(body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	return r, body, nil
}

// ParseResponse reads a sample answer to req: an HTTP/1.1 response, or,
// when it starts with '{' or '[', a JSON body taken as a 200 answer of
// type application/json. Its errors never quote the sample.
func ParseResponse(raw []byte, req *http.Request) (*http.Response, []byte, error) {
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")), " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		body := trimFinalLineEnd(trimmed)
		h := http.Header{"Content-Type": {"application/json"}}
		frameSample(h, body)
		return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
			ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)), Request: req}, body, nil
	}
	head, body, err := splitMessage(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("response: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(joinHead(head))), req)
	if err != nil {
		return nil, nil, errors.New("response: not an HTTP/1.1 response (a status line HTTP/1.1 CODE, headers as Name: value, a blank line, the body) nor a JSON body")
	}
	frameSample(resp.Header, body)
	resp.TransferEncoding, resp.ContentLength = nil, int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, body, nil
}

// splitMessage returns a message's head lines (blank lines before the
// first one skipped) and its body.
func splitMessage(raw []byte) ([]string, []byte, error) {
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	var head []string
	for len(raw) > 0 {
		line, rest, found := bytes.Cut(raw, []byte{'\n'})
		raw = rest
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			if len(head) == 0 {
				continue
			}
			return head, trimFinalLineEnd(raw), nil
		}
		head = append(head, string(line))
		if !found {
			break
		}
	}
	if len(head) == 0 {
		return nil, nil, errors.New("the file is empty")
	}
	return head, nil, nil
}

func trimFinalLineEnd(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

// joinHead is the head as net/http reads it, without the framing
// headers the body decides.
func joinHead(head []string) []byte {
	var b bytes.Buffer
	for i, line := range head {
		if i > 0 {
			name, _, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "content-length", "transfer-encoding":
				continue
			}
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func frameSample(h http.Header, body []byte) {
	h.Del("Transfer-Encoding")
	if len(body) > 0 {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	} else {
		h.Del("Content-Length")
	}
}

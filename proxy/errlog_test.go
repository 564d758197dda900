package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/engine"
)

type failingTransport struct{ err error }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// TestUpstreamErrorsAreLoggedWithoutText: a transport error can quote what
// the app sent (a body read as a status line, a raw header line); the
// operational log names the kind of failure, never that text.
func TestUpstreamErrorsAreLoggedWithoutText(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		kind string
	}{
		{"malformed status line", fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w",
			fmt.Errorf("malformed HTTP response %q", `{"body":"`+canary+`"}`)), "*errors.errorString"},
		{"malformed header line", fmt.Errorf("read: %w", textproto.ProtocolError("malformed MIME header line: "+canary)), "textproto.ProtocolError"},
		{"closed early", fmt.Errorf("reading %q: %w", canary, io.ErrUnexpectedEOF), "connection closed by the app"},
		{"network", &net.OpError{Op: "read", Net: "tcp", Err: errors.New(canary)}, "network error during read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			p := newBareProxy(t, slog.New(slog.NewJSONHandler(&logs, nil)), failingTransport{tc.err})
			r := httptest.NewRequest("POST", msgPath, bytes.NewReader(message))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			p.ServeHTTP(w, r)
			if w.Code != http.StatusBadGateway || strings.Contains(w.Body.String(), canary) {
				t.Errorf("answer %d %s, want a 502 without the app's bytes", w.Code, w.Body)
			}
			if strings.Contains(logs.String(), canary) {
				t.Errorf("the log holds the app's bytes:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), `"err_kind":"`+tc.kind+`"`) {
				t.Errorf("the log does not name the kind %q:\n%s", tc.kind, logs.String())
			}
		})
	}
}

func TestErrorKindConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.Dial("tcp", addr)
	if got := engine.ErrorKind(err); got != "connection refused" {
		t.Errorf("engine.ErrorKind(%v) = %q, want connection refused", err, got)
	}
}

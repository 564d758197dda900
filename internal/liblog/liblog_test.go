package liblog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"testing"
)

const canary = "CANARY-PHI-liblog"

func TestNew(t *testing.T) {
	long := strings.Repeat("word ", 40) + "then " + canary // 200 bytes of wording before the canary
	for _, tc := range []struct {
		name          string
		line          string // what the library prints, through Printf
		component     string
		text          string
		withoutCanary bool // the line holds no canary, so there is nothing to search for
	}{
		{
			name: "unsolicited response",
			line: fmt.Sprintf("Unsolicited response received on idle HTTP channel starting with %q; err=%v",
				"HTTP/1.1 200 OK\r\n\r\n{\"note\":\""+canary+"\"}", io.EOF),
			text: "Unsolicited response received on idle HTTP channel starting with",
		},
		{
			name:      "tls handshake error",
			line:      "http: TLS handshake error from 127.0.0.1:51234: tls: first record does not look like a TLS handshake " + canary,
			component: "http",
			text:      "TLS handshake error from 127.0.0.1",
		},
		{
			name:      "malformed mime header line",
			line:      "http: proxy error: malformed MIME header line: X-Note " + canary,
			component: "http",
			text:      "proxy error",
		},
		{
			name: "bare textproto error",
			line: "malformed MIME header line: X-Note " + canary,
			text: "malformed MIME header line",
		},
		{
			name:      "key=value",
			line:      "http2: server encoding header note=" + canary,
			component: "http2",
			text:      "server encoding header note",
		},
		{
			name:      "quoted in single quotes",
			line:      "httputil: ReverseProxy read error '" + canary + "'",
			component: "httputil",
			text:      "ReverseProxy read error",
		},
		{
			name: "json body",
			line: "upstream said {\"note\":\"" + canary + "\"}",
			text: "upstream said",
		},
		{
			name: "line break",
			line: "panic serving\n" + canary,
			text: "panic serving",
		},
		{
			name:          "empty line",
			line:          "",
			text:          Withheld,
			withoutCanary: true,
		},
		{
			name:      "nothing but a quoted value",
			line:      "net/http: " + fmt.Sprintf("%q", canary),
			component: "net/http",
			text:      Withheld,
		},
		{
			name: "very long line",
			line: long,
			text: strings.TrimSpace(long[:maxText]),
		},
		{
			name: "capitalized first word is no component",
			line: "Transport: unhandled response frame type " + canary,
			text: "Transport",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			l := New(slog.New(slog.NewJSONHandler(&out, nil)), "net/http")
			l.Print(tc.line)
			if !tc.withoutCanary && !strings.Contains(tc.line, canary) {
				t.Fatalf("case line %q holds no canary", tc.line)
			}
			if bytes.Contains(out.Bytes(), []byte(canary)) || bytes.Contains(out.Bytes(), []byte("CANARY")) {
				t.Errorf("the record holds the canary: %s", out.Bytes())
			}
			rec := oneRecord(t, out.Bytes())
			want := map[string]any{"level": "WARN", "msg": Message, "source": "net/http", "text": tc.text}
			if tc.component != "" {
				want["component"] = tc.component
			}
			delete(rec, "time")
			if got, wantJSON := mustJSON(t, rec), mustJSON(t, want); got != wantJSON {
				t.Errorf("got %s, want %s", got, wantJSON)
			}
			if n := len(rec["text"].(string)); n > maxText {
				t.Errorf("text is %d bytes, want at most %d", n, maxText)
			}
		})
	}
}

// TestWriterUTF8Cut: a cut never splits a character.
func TestWriterUTF8Cut(t *testing.T) {
	var out bytes.Buffer
	w := Writer(slog.New(slog.NewJSONHandler(&out, nil)), "go-stdlib")
	line := strings.Repeat("a", maxText-1) + "é" + " " + canary // 'é' straddles byte 160
	if _, err := w.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	rec := oneRecord(t, out.Bytes())
	if got, want := rec["text"], strings.Repeat("a", maxText-1); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if bytes.Contains(out.Bytes(), []byte(canary)) {
		t.Errorf("the record holds the canary: %s", out.Bytes())
	}
}

// TestWriterWithLogPackage: a *log.Logger writes each line with one Write,
// so every line is one record.
func TestWriterWithLogPackage(t *testing.T) {
	var out bytes.Buffer
	l := log.New(Writer(slog.New(slog.NewJSONHandler(&out, nil)), "go-stdlib"), "", 0)
	l.Printf("first %q", canary)
	l.Printf("second=%s", canary)
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d records, want 2:\n%s", len(lines), out.Bytes())
	}
	for i, want := range []string{"first", "second"} {
		rec := oneRecord(t, lines[i])
		if rec["text"] != want || rec["source"] != "go-stdlib" {
			t.Errorf("record %d: got %v, want text %q from go-stdlib", i, rec, want)
		}
	}
	if bytes.Contains(out.Bytes(), []byte(canary)) {
		t.Errorf("the records hold the canary: %s", out.Bytes())
	}
}

func TestNilLogger(t *testing.T) {
	if n, err := Writer(nil, "x").Write([]byte("a line")); n != 6 || err != nil {
		t.Errorf("got %d, %v, want 6, nil", n, err)
	}
	New(nil, "x").Print("a line")
}

func oneRecord(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if n := bytes.Count(bytes.TrimSpace(b), []byte("\n")) + 1; n != 1 {
		t.Fatalf("got %d records, want 1:\n%s", n, b)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("record %s: %v", b, err)
	}
	return rec
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

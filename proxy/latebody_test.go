package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lateTransport answers every request at once and goes on reading its
// body on another goroutine, as net/http's Transport does when the app
// answers before it has read the whole body. Each body read is reported
// on done: all of it, or an error.
type lateTransport struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	read []lateRead
}

type lateRead struct {
	body []byte
	err  error
}

func (t *lateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.wg.Go(func() {
		var got []byte
		buf := make([]byte, 512)
		var err error
		for {
			var n int
			n, err = r.Body.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			err = nil
		}
		t.mu.Lock()
		t.read = append(t.read, lateRead{got, err})
		t.mu.Unlock()
	})
	return &http.Response{StatusCode: 202, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// TestSealedBodyReadAfterAnswer: a transport still reading the sealed
// request body while the answer goes back, and after other requests have
// taken buffers from the pool, reads the whole sealed body or fails: never
// a wiped body or another request's bytes. Run with -race.
func TestSealedBodyReadAfterAnswer(t *testing.T) {
	tr := &lateTransport{}
	p := newBareProxy(t, slog.New(slog.DiscardHandler), tr)
	const n = 40
	for i := range n {
		body := []byte(`{"body":"` + canary + ` message ` + strconv.Itoa(i) + `","note":"` + strings.Repeat("x", 3000) + `"}`)
		r := httptest.NewRequest("POST", msgPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != 202 {
			t.Fatalf("request %d: status %d: %s", i, w.Code, w.Body)
		}
	}
	tr.wg.Wait()
	seen := map[string]bool{}
	for i, got := range tr.read {
		if got.err != nil {
			continue // the read was stopped: the app gets no body, never a wrong one
		}
		var doc struct{ Body, Note string }
		if err := json.Unmarshal(got.body, &doc); err != nil {
			t.Fatalf("read %d: the app read %q: %v", i, got.body, err)
		}
		if !strings.HasPrefix(doc.Body, "ephi:v1:org_a:") || doc.Note != strings.Repeat("x", 3000) || bytes.Contains(got.body, []byte(canary)) {
			t.Fatalf("read %d: the app read a damaged body: %q", i, got.body)
		}
		if seen[doc.Body] {
			t.Fatalf("read %d: the app read another request's token", i)
		}
		seen[doc.Body] = true
	}
}

package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

func TestConcurrencyCap(t *testing.T) {
	h := newHarnessWithPolicy(t, strings.Replace(testPolicy, "max_body_bytes: 4096}", "max_body_bytes: 4096, max_concurrent_requests: 2}", 1))
	entered, release := make(chan struct{}, 2), make(chan struct{})
	h.app.answer = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	}
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			resp, _ := h.do("GET", "/healthz", "", "", nil)
			codes[i] = resp.StatusCode
		})
	}
	<-entered
	<-entered // both slots are taken by requests the app is holding
	resp, body := h.do("POST", msgPath, "alice", "application/json", message)
	h.wantRefused(resp, body, http.StatusServiceUnavailable, 2)
	if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "over_capacity") {
		t.Errorf("saturated answer %v %s, want over_capacity with Retry-After", resp.Header, body)
	}
	close(release)
	wg.Wait()
	if codes[0] != 204 || codes[1] != 204 {
		t.Errorf("held requests answered %v, want 204s", codes)
	}
	h.app.answer = nil
	if resp, body := h.do("POST", msgPath, "alice", "application/json", message); resp.StatusCode != 201 {
		t.Errorf("after the burst: %d %s, want the slots back", resp.StatusCode, body)
	}
}

// TestWhatIsAcceptedCanBeReturned: encryption lengthens values, so the
// response limit leaves room for it, and a body whose encrypted form would
// not fit is refused before the app stores it.
func TestWhatIsAcceptedCanBeReturned(t *testing.T) {
	h := newHarness(t) // max_body_bytes 4096, max_response_bytes by default 4×
	big := []byte(`{"body":"` + canary + strings.Repeat("x", 4000) + `"}`)
	resp, body := h.do("POST", msgPath, "alice", "application/json", big)
	if resp.StatusCode != 201 || !bytes.Equal(body, big) {
		t.Fatalf("a body near the limit, echoed: %d (%d bytes)", resp.StatusCode, len(body))
	}
	if stored := h.app.last(t).body; len(stored) <= 4096 || bytes.Contains(stored, []byte(canary)) {
		t.Errorf("stored %d bytes; want ciphertext longer than max_body_bytes", len(stored))
	}
	// Tiny values grow the most: 280 captions of one digit each.
	bomb := []byte(`{"attachments":[` + strings.TrimSuffix(strings.Repeat(`{"caption":1},`, 280), ",") + `]}`)
	if len(bomb) > 4096 {
		t.Fatalf("test body is %d bytes", len(bomb))
	}
	hits := h.app.hits()
	resp, body = h.do("POST", msgPath, "alice", "application/json", bomb)
	h.wantRefused(resp, body, http.StatusRequestEntityTooLarge, hits)
	h.wantAudited(http.StatusRequestEntityTooLarge, "max_response_bytes")
}

func TestResponseLimitSetting(t *testing.T) {
	h := newHarnessWithPolicy(t, strings.Replace(testPolicy, "max_body_bytes: 4096}", "max_body_bytes: 4096, max_response_bytes: 5000}", 1))
	h.app.answer = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"data":[],"pad":"` + strings.Repeat("x", 5000) + `"}`))
	}
	resp, body := h.do("GET", msgPath, "alice", "", nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "upstream_too_large") {
		t.Errorf("%d %s, want 502 upstream_too_large", resp.StatusCode, body)
	}
}

func TestUpstreamProxy(t *testing.T) {
	// Proxy settings in the environment are never used.
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:9")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9")
	t.Setenv("NO_PROXY", "")
	pol, err := policy.Parse("p.yaml", []byte("version: 1\ningress: {upstream: \"http://app.internal:8080\"}\nroutes: [{name: h, match: {path: /h}, auth: none}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tr := NewTransport(pol); tr.Proxy != nil {
		t.Error("the transport has a proxy function although the policy names none")
	}
	// A proxy the policy names carries the app's traffic.
	var mu sync.Mutex
	var via []string
	fwd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		via = append(via, r.URL.String())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(fwd.Close)
	h := newHarnessWithPolicy(t, strings.Replace(testPolicy, "max_body_bytes: 4096}", "max_body_bytes: 4096, upstream_proxy: \""+fwd.URL+"\"}", 1))
	if resp, body := h.do("GET", "/healthz", "", "", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(via) != 1 || !strings.HasPrefix(via[0], h.appSrv.URL+"/healthz") || h.app.hits() != 0 {
		t.Errorf("the proxy saw %v and the app %d requests; want the request through the proxy", via, h.app.hits())
	}
}

// TestUpstreamConnectionsAreReused: a wave of concurrent requests leaves
// its connections to the app idle for the next wave, instead of the two Go
// keeps by default; a busy sidecar must not open a connection per request.
func TestUpstreamConnectionsAreReused(t *testing.T) {
	const wave = 12
	h := newHarness(t)
	var mu sync.Mutex
	conns := map[string]bool{}
	var arrived sync.WaitGroup
	release := make(chan struct{})
	h.app.answer = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		wait := release
		mu.Unlock()
		arrived.Done()
		<-wait // every request of the wave is in flight at once
		w.WriteHeader(http.StatusNoContent)
	}
	runWave := func() {
		arrived.Add(wave)
		mu.Lock()
		release = make(chan struct{})
		mu.Unlock()
		var done sync.WaitGroup
		for range wave {
			done.Go(func() {
				resp, err := http.Get(h.proxy.URL + "/healthz")
				if err != nil {
					t.Error(err)
					arrived.Done()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		arrived.Wait()
		mu.Lock()
		close(release)
		mu.Unlock()
		done.Wait()
	}
	runWave()
	mu.Lock()
	first := len(conns)
	mu.Unlock()
	runWave()
	mu.Lock()
	defer mu.Unlock()
	if first != wave || len(conns) != wave {
		t.Errorf("the app saw %d connections after the first wave and %d after the second, want %d and %d", first, len(conns), wave, wave)
	}
}

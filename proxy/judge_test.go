package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phiguard/phiguard/keys"
)

// Judge what you forward, forward what you judged: one test per principle.

// rawRequest sends bytes as written, so no client library normalizes the path.
func rawRequest(t *testing.T, h *harness, method, target, user string, body []byte, extra ...string) (int, string) {
	t.Helper()
	addr := strings.TrimPrefix(h.proxy.URL, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	if user != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", h.tokens[user])
	}
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

func TestOneCanonicalPath(t *testing.T) {
	h := newHarness(t)
	// Every spelling of the denied path is judged as the denied path.
	for _, p := range []string{
		"/api/v1/tokens", "/API/V1/TOKENS", "/api//v1/tokens", "/api/v1/./tokens", "/api/x/../v1/tokens",
		"/api/v1/%74okens", "/api/v1/tok%65ns/", "/api/v1/x/%2e%2e/tokens", "/api/v1/tokens/",
	} {
		code, body := rawRequest(t, h, "GET", p, "alice", nil)
		if code != 403 || !strings.Contains(body, "personal access tokens") {
			t.Errorf("GET %s: %d %s, want the deny route's 403", p, code, body)
		}
	}
	// What cannot be normalized unambiguously is refused.
	for _, p := range []string{
		"/api/v1%2Ftokens", "/api/v1%2ftokens/x", "/api/v1%5Ctokens", "/api/v1/tokens;x=1", "/api/v1/tokens%3B",
		"/api/v1/tokens%00", "/../api/v1/tokens", "/api/v1/tokens/%zz",
	} {
		if code, body := rawRequest(t, h, "GET", p, "alice", nil); code != 400 {
			t.Errorf("GET %s: %d %s, want 400", p, code, body)
		}
	}
	if h.app.hits() != 0 {
		t.Fatalf("the app saw %d requests that were denied or refused", h.app.hits())
	}
	// The app receives the path that was judged, with the body encrypted by the matched route.
	for _, p := range []string{"/api/v1/conversations/c1/./messages", "/api//v1/conversations/c1/messages", "/api/v1/conversations/x/../c1/messages", "/api/v1/%63onversations/c1/messages"} {
		code, body := rawRequest(t, h, "POST", p, "alice", message)
		if code != 201 {
			t.Fatalf("POST %s: %d %s", p, code, body)
		}
		got := h.app.last(t)
		if got.rawPath != "/api/v1/conversations/c1/messages" || bytes.Contains(got.body, []byte(canary)) {
			t.Errorf("POST %s: the app saw path %q and body %s", p, got.rawPath, got.body)
		}
	}
}

func TestTheMethodJudgedIsTheMethodUsed(t *testing.T) {
	h := newHarness(t)
	overrides := []string{
		"X-HTTP-Method-Override: DELETE", "X-HTTP-Method: DELETE", "X-Method-Override: DELETE",
		"X-Original-URL: /api/v1/tokens", "X-Rewrite-URL: /api/v1/tokens",
		"X-Forwarded-For: 10.9.9.9", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "Forwarded: for=10.9.9.9",
		"X-Real-IP: 10.9.9.9", "True-Client-IP: 10.9.9.9",
		"X-Phiguard-Org: org_b", "X-Phiguard-User: admin", "X-Phiguard-Role: admin",
	}
	code, body := rawRequest(t, h, "POST", "/api/v1/conversations/c1/messages", "alice", message, overrides...)
	if code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	got := h.app.last(t).header
	for _, name := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Url", "X-Rewrite-Url", "Forwarded", "X-Real-Ip", "True-Client-Ip"} {
		if v := got.Values(name); len(v) > 0 {
			t.Errorf("the app received %s: %v", name, v)
		}
	}
	if xff := got.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want only the real peer", xff)
	}
	if xfh := got.Get("X-Forwarded-Host"); xfh == "evil.example" || xfh == "" {
		t.Errorf("X-Forwarded-Host = %q, want the host phiguard served", xfh)
	}
	if got.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want phiguard's own", got.Get("X-Forwarded-Proto"))
	}
	if got.Get("X-Phiguard-Org") != "org_a" || got.Get("X-Phiguard-User") != "alice" || got.Get("X-Phiguard-Role") != "agent" {
		t.Errorf("identity headers %v: the client's own were not replaced", got)
	}
	// Override parameters in the query are refused outright.
	hits := h.app.hits()
	for _, q := range []string{"?_method=DELETE", "?_METHOD=delete", "?__method=PUT", "?x-http-method-override=GET", "?a=1;_method=DELETE"} {
		if code, body := rawRequest(t, h, "POST", "/api/v1/conversations/c1/messages"+q, "alice", message); code != 400 {
			t.Errorf("query %s: %d %s, want 400", q, code, body)
		}
	}
	// So are override fields in the bodies phiguard reads.
	for _, tc := range []struct{ ct, body string }{
		{"application/json", `{"body":"x","_method":"DELETE"}`},
		{"application/json", `{"_Method":"PUT","body":"x"}`},
	} {
		resp, body := h.do("POST", msgPath, "alice", tc.ct, []byte(tc.body))
		h.wantRefused(resp, body, 400, hits)
	}
	resp, out := h.do("POST", "/webhooks/sms/org_a", "", "application/x-www-form-urlencoded", []byte("Body=hi&_method=DELETE"))
	h.wantRefused(resp, out, 400, hits)
	if h.app.hits() != hits {
		t.Error("the app saw a request with a method override")
	}
	// HEAD is judged as the GET it will be answered as.
	storeAs(t, h, "org_a", `"x"`)
	if code, _ := rawRequest(t, h, "HEAD", "/api/v1/conversations/c1/messages", "", nil); code != 401 {
		t.Errorf("HEAD without a token: %d, want the GET route's 401", code)
	}
}

func TestABodyHasOneMeaning(t *testing.T) {
	h := newHarness(t)
	deep := strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70)
	for _, tc := range []struct{ name, body string }{
		{"duplicate selected key", `{"body":"` + canary + `","body":"decoy"}`},
		{"duplicate key elsewhere", `{"body":"x","meta":{"k":1,"k":2}}`},
		{"duplicate through an escape", `{"body":"x","b\u006fdy":"` + canary + `"}`},
		{"case variant of a selected key", `{"Body":"` + canary + `"}`},
		{"case variant beside it", `{"body":"x","BODY":"` + canary + `"}`},
		{"case variant of a parent", `{"Attachments":[{"caption":"` + canary + `"}]}`},
		{"trailing data", `{"body":"x"}{"body":"` + canary + `"}`},
		{"comment", `{"body":"x" /* ` + canary + ` */}`},
		{"invalid UTF-8", "{\"body\":\"\xff" + canary + "\"}"},
		{"too deep", deep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.do("POST", msgPath, "alice", "application/json", []byte(tc.body))
			h.wantRefused(resp, body, 400, 0)
		})
	}
	// An escaped key is the key it spells: it is encrypted.
	resp, _ := h.do("POST", msgPath, "alice", "application/json", []byte(`{"b\u006fdy":"`+canary+`"}`))
	if resp.StatusCode != 201 || bytes.Contains(h.app.last(t).body, []byte(canary)) {
		t.Errorf("escaped key: status %d, the app got %s", resp.StatusCode, h.app.last(t).body)
	}
}

func TestTokensFromOutsideAreNeverTrusted(t *testing.T) {
	h := newHarness(t)
	// A genuine token of org_a, as an insider could copy it from the database.
	stolen, err := h.keyring.Encrypt(context.Background(), "org_a", []byte(`"`+canary+`"`))
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"body":"` + stolen + `"}`)
	resp, body := h.do("POST", msgPath, "alice", "application/json", in)
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	stored := decodeJSON(t, h.app.last(t).body)["body"].(string)
	if stored == stolen || !keys.LooksLikeToken(stored) {
		t.Fatalf("the incoming token was stored as is: %s", stored)
	}
	// Reading it back gives the opaque string that was sent, not the plaintext inside it.
	if string(body) != string(in) || strings.Contains(string(body), canary) {
		t.Errorf("the response revealed the inner plaintext: %s", body)
	}
}

func TestNoUnreadChannels(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name   string
		extra  []string
		ct     string
		status int
	}{
		{"websocket upgrade", []string{"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="}, "", 400},
		{"h2c upgrade", []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}, "", 400},
		{"declared trailers", []string{"Trailer: X-Body"}, "", 400},
		{"chunked with trailers", []string{"Transfer-Encoding: chunked", "Trailer: X-Body"}, "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := rawRequest(t, h, "POST", msgPath, "alice", message, tc.extra...)
			if code != tc.status {
				t.Errorf("%d %s, want %d", code, body, tc.status)
			}
		})
	}
	for _, ct := range []string{"multipart/form-data; boundary=x", "application/octet-stream", "text/plain", "application/xml"} {
		resp, body := h.do("POST", msgPath, "alice", ct, []byte("--x\r\n"+canary))
		h.wantRefused(resp, body, 415, 0)
	}
	if h.app.hits() != 0 {
		t.Errorf("the app saw %d unread requests", h.app.hits())
	}
}

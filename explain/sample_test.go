package explain

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, raw         string
		method, uri, body string
		host              string
		contentLength     int64
		wantErr           bool
	}{
		{name: "lf", raw: "POST /a?b=1 HTTP/1.1\nHost: x\nContent-Type: application/json\n\n{\"a\":1}\n",
			method: "POST", uri: "/a?b=1", body: `{"a":1}`, host: "x", contentLength: 7},
		{name: "crlf", raw: "POST /a HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n",
			method: "POST", uri: "/a", body: `{"a":1}`, contentLength: 7},
		{name: "no version, wrong length, leading blank lines", raw: "\n\nPUT /a\nContent-Length: 99\nTransfer-Encoding: chunked\n\nx=1&y=2",
			method: "PUT", uri: "/a", body: "x=1&y=2", contentLength: 7},
		{name: "no body", raw: "GET /a HTTP/1.1\nHost: x", method: "GET", uri: "/a", host: "x"},
		{name: "absolute target", raw: "POST http://api.example.com/v1 HTTP/1.1\n\nk=v", method: "POST", uri: "http://api.example.com/v1", body: "k=v", host: "api.example.com", contentLength: 3},
		{name: "only the final line end is dropped", raw: "POST /a\n\nBody=a%0A\n\n", method: "POST", uri: "/a", body: "Body=a%0A\n", contentLength: 10},
		{name: "empty", raw: "\n\n", wantErr: true},
		{name: "garbled", raw: "not a request line at all\n\n", wantErr: true},
		{name: "bad header", raw: "GET / HTTP/1.1\nno colon here CANARY\n\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, body, err := ParseRequest([]byte(tc.raw))
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if strings.Contains(err.Error(), "CANARY") {
					t.Errorf("the error quotes the sample: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r.Body)
			if r.Method != tc.method || r.RequestURI != tc.uri || string(body) != tc.body || string(got) != tc.body || r.Host != tc.host || r.ContentLength != tc.contentLength {
				t.Errorf("got %s %s host %q body %q (%q) length %d; want %s %s host %q body %q length %d",
					r.Method, r.RequestURI, r.Host, body, got, r.ContentLength, tc.method, tc.uri, tc.host, tc.body, tc.contentLength)
			}
			if len(r.TransferEncoding) > 0 || r.Header.Get("Transfer-Encoding") != "" {
				t.Error("the sample's Transfer-Encoding was kept")
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	req, _, _ := ParseRequest([]byte("GET /a HTTP/1.1\n\n"))
	for _, tc := range []struct {
		name, raw, ct, body string
		status              int
	}{
		{"json alone", "  {\"a\": 1}\n", "application/json", `{"a": 1}`, 200},
		{"json array", "[1]", "application/json", `[1]`, 200},
		{"http", "HTTP/1.1 201 Created\nContent-Type: application/hal+json\n\n{\"a\":1}\n", "application/hal+json", `{"a":1}`, 201},
		{"no reason phrase", "HTTP/1.1 404\nContent-Type: text/plain\n\nnope", "text/plain", "nope", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := ParseResponse([]byte(tc.raw), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.ct || string(body) != tc.body || resp.ContentLength != int64(len(tc.body)) {
				t.Errorf("got %d %q %q, want %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.ct, tc.body)
			}
		})
	}
	if _, _, err := ParseResponse([]byte("200 OK CANARY\n\n"), req); err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Errorf("a garbled answer: %v", err)
	}
}

// TestPolicyLeftAlone: explaining a sample against a policy with webhook
// signatures (whose secrets are not set) works, and leaves the policy's
// own routes as they were.
func TestPolicyLeftAlone(t *testing.T) {
	p, err := policy.Load("../configs/reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var signed []*policy.Route
	for _, r := range p.Routes {
		if r.Signature != nil {
			signed = append(signed, r)
		}
	}
	if len(signed) == 0 {
		t.Fatal("the reference policy has no signed webhook")
	}
	e, err := Explain(context.Background(), p, []byte("POST /webhooks/sms/org_a\nContent-Type: application/x-www-form-urlencoded\n\nBody=CANARY&From=%2B15555550100"), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Route == nil || e.Route.Name != "carrier-inbound-webhook" || !e.Decision.Allowed {
		t.Errorf("got route %+v, decision %+v", e.Route, e.Decision)
	}
	for _, r := range signed {
		if r.Signature == nil {
			t.Errorf("route %s lost its signature check", r.Name)
		}
	}
}

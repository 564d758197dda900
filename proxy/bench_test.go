package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// echoTransport answers every request with its own body, as the app would
// echo a created message, without a network in the way.
type echoTransport struct{}

func (echoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	return &http.Response{StatusCode: 201, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

// newBareProxy is the test policy's pipeline with org_a's keys, a fixed
// caller and the given transport in place of the app.
func newBareProxy(tb testing.TB, log *slog.Logger, tr http.RoundTripper) *Proxy {
	tb.Helper()
	pol, err := policy.Parse("p.yaml", []byte(strings.Replace(testPolicy, "http://UPSTREAM", "http://app.invalid", 1)))
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	keys.InitLocal(dir)
	lp, _ := keys.OpenLocal(dir)
	keys.CreateOrg(context.Background(), dir, "org_a", lp)
	kr, err := keys.Open(context.Background(), dir, lp)
	if err != nil {
		tb.Fatal(err)
	}
	aud := audit.NewAuditor(log, true, audit.NewWriterSink("discard", io.Discard))
	p, err := New(Options{Policy: pol, Keys: kr, Verifier: fixedVerifier{}, Auditor: aud, Log: log, Transport: tr})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

type fixedVerifier struct{}

func (fixedVerifier) Verify(context.Context, []string) (*identity.Caller, error) {
	return &identity.Caller{Org: "org_a", User: "u", Role: "agent"}, nil
}

// BenchmarkPipeline measures one send-message request through ServeHTTP:
// canonical path, decision, encryption of two fields, the forward, the
// decryption of the echo and the audit record.
func BenchmarkPipeline(b *testing.B) {
	p := newBareProxy(b, slog.New(slog.DiscardHandler), echoTransport{})
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", msgPath, bytes.NewReader(message))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != 201 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

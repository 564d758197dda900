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

type fixedVerifier struct{}

func (fixedVerifier) Verify([]string) (*identity.Caller, error) {
	return &identity.Caller{Org: "org_a", User: "u", Role: "agent"}, nil
}

// BenchmarkPipeline measures one send-message request through ServeHTTP:
// canonical path, decision, encryption of two fields, the forward, the
// decryption of the echo and the audit record.
func BenchmarkPipeline(b *testing.B) {
	pol, err := policy.Parse("p.yaml", []byte(strings.Replace(testPolicy, "http://UPSTREAM", "http://app.invalid", 1)))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	keys.InitLocal(dir)
	lp, _ := keys.OpenLocal(dir)
	keys.CreateOrg(context.Background(), dir, "org_a", lp)
	kr, err := keys.Open(context.Background(), dir, lp)
	if err != nil {
		b.Fatal(err)
	}
	aud := audit.NewAuditor(slog.New(slog.DiscardHandler), true, audit.NewWriterSink("discard", io.Discard))
	p, err := New(Options{Policy: pol, Keys: kr, Verifier: fixedVerifier{}, Auditor: aud, Transport: echoTransport{}})
	if err != nil {
		b.Fatal(err)
	}
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

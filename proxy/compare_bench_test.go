package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// The in-process side-by-side benchmark: the workloads of make bench, sent
// to phiguard's handler and to a bare httputil.ReverseProxy, both over an
// in-memory app, so the difference is phiguard's own work without the
// sockets (which make bench measures).

var cmpFields = []string{"subject", "body", "patient_name", "date_of_birth", "diagnosis",
	"medications", "allergies", "clinical_notes", "home_address", "insurance_member"}

const cmpPolicy = `version: 1
ingress: {upstream: "http://app.invalid"}
identity:
  jwt: {jwks: unused.json}
  claims: {org: org_id, user: sub, role: role}
keys: {keyring: unused}
orgs: [{id: org_a}]
routes:
  - name: passthrough
    match: {methods: [GET], path: "/api/v1/conversations/{id}"}
  - name: send-message
    match: {methods: [POST], path: "/api/v1/conversations/{id}/messages"}
    encrypt_request: FIELDS
  - name: list-messages
    match: {methods: [GET], path: "/api/v1/conversations/{id}/messages"}
    decrypt_response: ["$.data[*].body"]
    readers: [agent]
  - name: get-message
    match: {methods: [GET], path: "/api/v1/conversations/{id}/messages/{mid}"}
    decrypt_response: FIELDS
    readers: [agent]
`

// cmpDocument is a 4 KB message: metadata, ten 200-byte PHI strings, then
// non-PHI attributes.
func cmpDocument() []byte {
	var b bytes.Buffer
	b.WriteString(`{"id":"m_2001","conversation_id":"cv_1001","sender_id":"u_042","channel":"sms","created_at":"2026-03-01T09:30:00Z"`)
	for _, f := range cmpFields {
		fmt.Fprintf(&b, `,%q:%q`, f, cmpText("PHI "+f+": ", 200))
	}
	for i := 0; b.Len() < 4<<10-300; i++ {
		fmt.Fprintf(&b, `,"attr_%03d":%q`, i, cmpText("note ", 240))
	}
	b.WriteByte('}')
	return b.Bytes()
}

func cmpText(prefix string, n int) string {
	return (prefix + strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit. ", n/50+1))[:n]
}

// cannedApp answers each path with a fixed JSON body; a POST is answered
// with its own body, as an app echoes a created message.
type cannedApp struct{ bodies map[string][]byte }

func (a cannedApp) RoundTrip(r *http.Request) (*http.Response, error) {
	body := a.bodies[r.URL.Path]
	if r.Body != nil {
		in, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if r.Method == http.MethodPost {
			body = in
		}
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}, "Content-Length": {fmt.Sprint(len(body))}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: r}, nil
}

// sealingApp keeps what phiguard forwarded, to serve it back sealed.
type sealingApp struct {
	mu   sync.Mutex
	last []byte
}

func (a *sealingApp) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.last = body
	a.mu.Unlock()
	return &http.Response{StatusCode: 201, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

// discardWriter is a ResponseWriter that keeps nothing but the status.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	w.n += len(p)
	return len(p), nil
}

type cmpWorkload struct {
	name, method, path string
	body               []byte
}

// BenchmarkCompare runs each workload through a bare reverse proxy and
// through phiguard, over the same in-memory app.
func BenchmarkCompare(b *testing.B) {
	const (
		conv = "/api/v1/conversations/cv_1001"
		msgs = conv + "/messages"
		doc  = msgs + "/m_2001"
	)
	log := slog.New(slog.DiscardHandler)
	sels := make([]string, len(cmpFields))
	for i, f := range cmpFields {
		sels[i] = `"$.` + f + `"`
	}
	pol, err := policy.Parse("p.yaml", []byte(strings.ReplaceAll(cmpPolicy, "FIELDS", "["+strings.Join(sels, ", ")+"]")))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := keys.InitLocal(dir); err != nil {
		b.Fatal(err)
	}
	lp, err := keys.OpenLocal(dir)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := keys.CreateOrg(context.Background(), dir, "org_a", lp); err != nil {
		b.Fatal(err)
	}
	kr, err := keys.Open(context.Background(), dir, lp)
	if err != nil {
		b.Fatal(err)
	}
	aud := audit.NewAuditor(log, true, audit.NewWriterSink("discard", io.Discard))
	newPhiguard := func(tr http.RoundTripper) http.Handler {
		p, err := New(Options{Policy: pol, Keys: kr, Verifier: fixedVerifier{}, Auditor: aud, Log: log, Transport: tr})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}

	// Seal the document and the list once, through phiguard itself.
	plain := cmpDocument()
	seal := func(body []byte) []byte {
		app := &sealingApp{}
		w := &discardWriter{h: http.Header{}}
		r, _ := http.NewRequest("POST", msgs, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		newPhiguard(app).ServeHTTP(w, r)
		if w.code != 201 {
			b.Fatalf("sealing: status %d", w.code)
		}
		return app.last
	}
	sealedDoc := seal(plain)
	var list bytes.Buffer
	list.WriteString(`{"data":[`)
	for i := range 50 {
		if i > 0 {
			list.WriteByte(',')
		}
		m := seal([]byte(fmt.Sprintf(`{"body":%q}`, cmpText(fmt.Sprintf("PHI body %02d: ", i), 200))))
		fmt.Fprintf(&list, `{"id":"m_%04d","conversation_id":"cv_1001","sender_id":"u_%03d","direction":"inbound","created_at":"2026-03-01T09:%02d:00Z",%s`,
			3000+i, i, i%60, m[1:])
	}
	list.WriteString(`]}`)
	app := cannedApp{bodies: map[string][]byte{
		conv: []byte(`{"id":"cv_1001","subject_id":"p_77","status":"open","updated_at":"2026-03-01T09:30:00Z"}`),
		msgs: list.Bytes(),
		doc:  sealedDoc,
	}}

	upstream, _ := url.Parse("http://app.invalid")
	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(upstream); pr.SetXForwarded() },
		Transport:  app,
		BufferPool: copyBuffers{},
	}
	proxies := []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"phiguard", newPhiguard(app)}}
	workloads := []cmpWorkload{
		{"passthrough", "GET", conv, nil},
		{"encrypt-10x200B", "POST", msgs, plain},
		{"decrypt-10x200B", "GET", doc, nil},
		{"list-50", "GET", msgs, nil},
	}
	for _, wl := range workloads {
		for _, p := range proxies {
			b.Run("workload="+wl.name+"/proxy="+p.name, func(b *testing.B) {
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				b.SetBytes(int64(max(len(wl.body), len(app.bodies[wl.path]))))
				for b.Loop() {
					var body io.Reader
					if wl.body != nil {
						body = bytes.NewReader(wl.body)
					}
					r, _ := http.NewRequest(wl.method, wl.path, body)
					r.RemoteAddr = "127.0.0.1:40000"
					r.Header["Authorization"] = []string{"Bearer t"}
					r.Header["Accept"] = []string{"application/json"}
					if wl.body != nil {
						r.Header["Content-Type"] = []string{"application/json"}
					}
					clear(w.h)
					w.code, w.n = 0, 0
					p.h.ServeHTTP(w, r)
					if w.code/100 != 2 || w.n == 0 {
						b.Fatalf("status %d, %d bytes", w.code, w.n)
					}
				}
			})
		}
	}
}

package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/phiguard/phiguard/internal/testca"
)

// The demo's vendor credentials and webhook secrets. They are set in the
// environment of phiguard and of the app, never in the policy.
const (
	carrierAccount = "ACdemo"
	carrierToken   = "demo-twilio-auth-token-7f3a9c" // TWILIO_AUTH_TOKEN: the app's API credential, and the key the carrier signs webhooks with
	pushToken      = "demo-fcm-access-token"         // FCM_ACCESS_TOKEN
	webhookSecret  = "demo-webhook-secret-4be1d07e"  // PHIGUARD_WEBHOOK_SECRET: phiguard signs what it forwards, the app checks
	publicURL      = "https://hooks.clinic.example"  // verify_signature.public_url in configs/demo.yaml
	vendorCA       = "vendor-ca.pem"                 // egress.ca_file in configs/demo.yaml
)

// appEnv and phiguardEnv are the environments the app and phiguard run
// in: each gets the secrets it needs, and no other.
func appEnv() []string {
	return append(os.Environ(), "TWILIO_AUTH_TOKEN="+carrierToken, "FCM_ACCESS_TOKEN="+pushToken, "PHIGUARD_WEBHOOK_SECRET="+webhookSecret)
}

func phiguardEnv() []string {
	return append(os.Environ(), "TWILIO_AUTH_TOKEN="+carrierToken, "PHIGUARD_WEBHOOK_SECRET="+webhookSecret)
}

// vendor is a fake vendor on a loopback TLS listener. It answers as the
// real one would and keeps what it received, which GET /received shows.
type vendor struct {
	srv      *http.Server
	mu       sync.Mutex
	received []json.RawMessage
}

func (v *vendor) keep(raw json.RawMessage) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.received = append(v.received, raw)
}

func (v *vendor) showReceived(w http.ResponseWriter, _ *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	answer(w, http.StatusOK, append([]json.RawMessage{}, v.received...))
}

// startVendors writes a fresh CA to dir/vendor-ca.pem and starts the fake
// SMS carrier (Twilio's API) on e.carrier and the fake push provider
// (FCM's HTTP v1 API) on e.push, with certificates it issued for
// 127.0.0.1 and localhost. stop closes both.
func startVendors(e env) (stop func(), err error) {
	ca, err := testca.New()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.dir, vendorCA), ca.PEM, 0o644); err != nil {
		return nil, err
	}
	carrier, push := &vendor{}, &vendor{}
	cmux := http.NewServeMux()
	cmux.HandleFunc("POST /2010-04-01/Accounts/{account}/Messages.json", func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != r.PathValue("account") || pass != carrierToken {
			answer(w, http.StatusUnauthorized, map[string]any{"code": 20003, "message": "Authenticate"})
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		form, err := url.ParseQuery(string(body))
		if err != nil || form.Get("To") == "" || form.Get("Body") == "" {
			answer(w, http.StatusBadRequest, map[string]any{"code": 21602, "message": "Message body and To are required"})
			return
		}
		got := map[string]string{}
		for k := range form {
			got[k] = form.Get(k)
		}
		raw, _ := json.Marshal(got)
		carrier.keep(raw)
		// As Twilio does, the answer echoes the text.
		answer(w, http.StatusCreated, map[string]string{"sid": "SM" + randomHex(16), "status": "queued", "to": form.Get("To"), "body": form.Get("Body")})
	})
	cmux.HandleFunc("GET /received", carrier.showReceived)
	pmux := http.NewServeMux()
	pmux.HandleFunc("POST /v1/projects/{project}/messages:send", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+pushToken {
			answer(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401, "status": "UNAUTHENTICATED"}})
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var m struct {
			Message json.RawMessage `json:"message"`
		}
		if json.Unmarshal(body, &m) != nil || m.Message == nil {
			answer(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "status": "INVALID_ARGUMENT"}})
			return
		}
		push.keep(body)
		answer(w, http.StatusOK, map[string]string{"name": "projects/" + r.PathValue("project") + "/messages/" + randomHex(8)})
	})
	pmux.HandleFunc("GET /received", push.showReceived)

	var started []*vendor
	stop = func() {
		for _, v := range started {
			v.srv.Close()
		}
	}
	for _, s := range []struct {
		v    *vendor
		addr string
		mux  http.Handler
	}{{carrier, e.carrier, cmux}, {push, e.push, pmux}} {
		cert, err := ca.Issue("127.0.0.1", "localhost")
		if err != nil {
			stop()
			return nil, err
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			stop()
			return nil, err
		}
		s.v.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
		go s.v.srv.Serve(tls.NewListener(ln, s.v.srv.TLSConfig))
		started = append(started, s.v)
	}
	return stop, nil
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// twilioSignature is what the carrier sends in X-Twilio-Signature: the
// base64 HMAC-SHA1, under the account's auth token, of the URL it posts
// to followed by each form parameter's name and value, sorted by name.
func twilioSignature(u string, form url.Values) string {
	data := u
	for _, k := range slices.Sorted(maps.Keys(form)) {
		for _, v := range form[k] {
			data += k + v
		}
	}
	m := hmac.New(sha1.New, []byte(carrierToken))
	m.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

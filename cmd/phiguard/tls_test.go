package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/phiguard/phiguard/policy"
)

// TestServeTLS: with ingress.tls, phiguard serves HTTPS and negotiates HTTP/2.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, pool := selfSigned(t, dir)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	defer app.Close()
	src := `version: 1
ingress: {upstream: "` + app.URL + `", tls: {cert: "` + certPath + `", key: "` + keyPath + `"}}
admin: {listen: "off"}
default: allow
`
	pol, err := policy.Parse(filepath.Join(dir, "p.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sc, err := newSidecar(ctx, filepath.Join(dir, "p.yaml"), pol, io.Discard, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	done := make(chan error, 1)
	go func() { done <- sc.serve(ctx, ln, nil, signals{}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "app" {
		t.Errorf("over TLS: proto %s, body %q; want HTTP/2 and the app's answer", resp.Proto, body)
	}
}

func selfSigned(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "phiguard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// TestTLSCertificateRenewed: a certificate renewed at the same paths is
// served from the next handshake on after SIGHUP; a broken pair keeps the
// one in force.
func TestTLSCertificateRenewed(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, firstPool := selfSigned(t, dir)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	defer app.Close()
	polPath := filepath.Join(dir, "p.yaml")
	src := `version: 1
ingress: {upstream: "` + app.URL + `", tls: {cert: "` + certPath + `", key: "` + keyPath + `"}}
admin: {listen: "off"}
reload: {watch: false}
default: allow
`
	pol, err := policy.Parse(polPath, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(polPath, []byte(src), 0o600)
	logs := newLockedBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	sc, err := newSidecar(ctx, polPath, pol, io.Discard, io.Discard, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- sc.serve(ctx, ln, nil, signals{hup: hup}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	get := func(pool *x509.CertPool) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := c.Get("https://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(firstPool); err != nil {
		t.Fatalf("first certificate: %v", err)
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	never := make(chan struct{})

	// A broken pair: logged, the first certificate stays.
	os.WriteFile(keyPath, []byte("not a key"), 0o600)
	hup <- syscall.SIGHUP
	waitLogMsg(t, logs, never, deadline.C, "TLS certificate not reloaded; the one in force stays")
	if err := get(firstPool); err != nil {
		t.Errorf("after a broken renewal: %v, want the first certificate still served", err)
	}

	_, _, secondPool := selfSigned(t, dir) // renewed at the same paths
	hup <- syscall.SIGHUP
	waitLogMsg(t, logs, never, deadline.C, "TLS certificate reloaded")
	if err := get(secondPool); err != nil {
		t.Errorf("after the renewal: %v, want the new certificate", err)
	}
	if err := get(firstPool); err == nil {
		t.Error("the old certificate is still served")
	}
}

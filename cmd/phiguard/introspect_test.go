package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestIntrospectionServe: a sidecar identifies an opaque session token
// through the authorization server's introspection endpoint, with its
// client secret from a file; an inactive token gets 401, and the server
// down 503 identity_unavailable, never the app.
func TestIntrospectionServe(t *testing.T) {
	var down atomic.Bool
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, secret, _ := r.BasicAuth(); down.Load() || secret != "s3cret" {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"active": r.FormValue("token") == "sess-abc", "sub": "alice", "org_id": "org_a"})
	}))
	defer auth.Close()
	var hits atomic.Int64
	app := newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(`{"user":"` + r.Header.Get("X-Phiguard-User") + `"}`))
	}))
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	s := startOps(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "`+app+`"}
admin: {listen: "127.0.0.1:0"}
identity:
  introspection: {url: "`+auth.URL+`", client_id: phiguard, client_secret_file: "`+secret+`"}
routes:
  - {name: me, match: {path: /me}}
`)
	get := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+s.proxy+"/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			User  string
			Error struct{ Code string }
		}
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.User + body.Error.Code
	}
	if code, got := get("sess-abc"); code != 200 || got != "alice" {
		t.Errorf("an active session token: %d %q", code, got)
	}
	if code, _ := get("sess-revoked"); code != 401 {
		t.Errorf("an inactive token: %d", code)
	}
	down.Store(true)
	n := hits.Load()
	if code, got := get("sess-new"); code != 503 || got != "identity_unavailable" || hits.Load() != n {
		t.Errorf("the server down: %d %q (app called %v)", code, got, hits.Load() != n)
	}
}

// TestAuthRequestServe: the app's own "who am I" endpoint identifies the
// caller of an opaque session token; a session it does not know gets 401
// and never reaches the app's other routes.
func TestAuthRequestServe(t *testing.T) {
	var data atomic.Int64
	app := newApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/me" {
			if r.Header.Get("Authorization") != "Bearer sess-abc" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"id":"alice","team_id":"org_a"}`))
			return
		}
		data.Add(1)
		w.Write([]byte(`{"user":"` + r.Header.Get("X-Phiguard-User") + `"}`))
	}))
	s := startOps(t, `version: 1
ingress: {listen: "127.0.0.1:0", upstream: "`+app+`"}
admin: {listen: "127.0.0.1:0"}
identity:
  auth_request: {url: "`+app+`/api/me"}
  claims: {org: team_id, user: id}
routes:
  - {name: data, match: {path: /data}}
`)
	for tok, want := range map[string]int{"sess-abc": 200, "sess-unknown": 401} {
		req, _ := http.NewRequest("GET", "http://"+s.proxy+"/data", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ User string }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && body.User != "alice" {
			t.Errorf("%s: %d %q, want %d", tok, resp.StatusCode, body.User, want)
		}
	}
	if data.Load() != 1 {
		t.Errorf("the app's data route was called %d times, want 1", data.Load())
	}
}

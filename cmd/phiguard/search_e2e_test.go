package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestSearchEndToEnd runs the demo policy in front of the demo app, whose
// search is a real SQLite FTS5 index and whose contacts are looked up by
// SQL equality: word searches through phiguard find exactly the messages
// that hold the words, in any case or accent; an exact lookup by phone
// number finds the contact however the number is written; another org's
// identical message is never found; the app's database, its store and its
// access log hold no plaintext word, number or search term.
func TestSearchEndToEnd(t *testing.T) {
	s := startStack(t, false)
	post := func(user, path, body string) []byte {
		t.Helper()
		code, out := s.do(t, "POST", s.proxyURL+path, user, "application/json", []byte(body))
		if code != 201 && code != 200 {
			t.Fatalf("POST %s as %s: %d %s", path, user, code, out)
		}
		return out
	}
	send := func(user, conv, text string) string {
		t.Helper()
		var m struct{ ID string }
		json.Unmarshal(post(user, "/api/v1/conversations/"+conv+"/messages", `{"body":"`+text+`"}`), &m)
		return m.ID
	}
	chest := send("alice", "cv_a1", "Chest pain since Tuesday, Zephyrine says")
	xray := send("alice", "cv_a2", "Your CHEST X-ray results are ready")
	refill := send("alice", "cv_a1", "Refill for metformin approved")
	bobChest := send("bob", "cv_b1", "Chest pain since Tuesday, Zephyrine says")
	cafe := send("alice", "cv_a3", "Meet at the café crème counter")
	post("alice", "/api/v1/contacts", `{"name":"Pat","phone":"(555) 867-5309","notes":"prefers texts"}`)
	post("bob", "/api/v1/contacts", `{"name":"Pat","phone":"555-867-5309","notes":"prefers calls"}`)

	type msg struct {
		ID   string `json:"id"`
		Body string `json:"body"`
	}
	find := func(user, q string) []msg {
		t.Helper()
		code, out := s.do(t, "GET", s.proxyURL+"/api/v1/messages/search?q="+url.QueryEscape(q), user, "", nil)
		if code != 200 {
			t.Fatalf("search %q as %s: %d %s", q, user, code, out)
		}
		var r struct{ Data []msg }
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		return r.Data
	}
	ids := func(ms []msg) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(v ...string) []string { slices.Sort(v); return v }
	for _, c := range []struct {
		user, q string
		want    []string
	}{
		{"alice", "chest", sorted(chest, xray)},
		{"alice", "CHEST pain", []string{chest}},
		{"alice", "tuesday zephyrine", []string{chest}},
		{"alice", "metformin", []string{refill}},
		{"alice", "Metformin refill", []string{refill}},
		{"alice", "cafe creme", []string{cafe}},
		{"alice", "Café", []string{cafe}},
		{"alice", "chest metformin", nil},
		{"alice", "pai", nil},
		{"alice", "x ray", []string{xray}},
		{"bob", "chest", []string{bobChest}},
		{"bob", "metformin", nil},
	} {
		got := find(c.user, c.q)
		if !slices.Equal(ids(got), c.want) {
			t.Errorf("%s searching %q: found %q, want %q", c.user, c.q, ids(got), c.want)
		}
		for _, m := range got {
			if strings.Contains(m.Body, "ephi:") || strings.Contains(m.Body, " w9") {
				t.Errorf("%s searching %q: a result's body %q is not plaintext", c.user, c.q, m.Body)
			}
		}
	}
	if got := find("alice", "chest"); len(got) == 2 && !strings.HasPrefix(got[0].Body, "Chest pain") && !strings.HasPrefix(got[1].Body, "Chest pain") {
		t.Errorf("results %q: want the plaintext bodies", got)
	}
	// The JSON search body is rewritten the same way.
	code, out := s.do(t, "POST", s.proxyURL+"/api/v1/messages/search", "alice", "application/json", []byte(`{"terms":"Refill"}`))
	if code != 200 || !bytes.Contains(out, []byte(refill)) || bytes.Contains(out, []byte(chest)) {
		t.Errorf("JSON search: %d %s", code, out)
	}
	// A term of stop words only is refused, not sent as an empty search.
	if code, out := s.do(t, "GET", s.proxyURL+"/api/v1/messages/search?q=the+of", "alice", "", nil); code != 400 || !bytes.Contains(out, []byte("no word phiguard indexes")) {
		t.Errorf("stop words only: %d %s", code, out)
	}

	// Exact lookup: any way of writing the number finds alice's contact,
	// and never bob's.
	for _, phone := range []string{"5558675309", "+1 (555) 867-5309", "555.867.5309"} {
		code, out := s.do(t, "GET", s.proxyURL+"/api/v1/contacts?phone="+url.QueryEscape(phone), "alice", "", nil)
		var r struct {
			Data []struct{ Name, Phone, Notes string }
		}
		json.Unmarshal(out, &r)
		if code != 200 || len(r.Data) != 1 || r.Data[0].Phone != "+15558675309" || r.Data[0].Notes != "prefers texts" {
			t.Errorf("lookup %q: %d %s", phone, code, out)
		}
	}
	if code, out := s.do(t, "GET", s.proxyURL+"/api/v1/contacts?phone=not+a+number", "alice", "", nil); code != 400 {
		t.Errorf("lookup by a non-number: %d %s", code, out)
	}

	// What the app holds: tokens and index words, no word of any message,
	// no phone number, no search term.
	for name, raw := range map[string][]byte{
		"store.json": s.read(t, "store.json"), "store.db": s.read(t, "store.db"),
		"store.db-wal": s.read(t, "store.db-wal"), "access log": s.appLog.Bytes(),
	} {
		// Words as they were written and searched for, long enough that
		// random base64 cannot spell them by chance.
		for _, w := range []string{"Chest", "chest", "CHEST", "Tuesday", "tuesday", "Zephyrine", "zephyrine", "metformin", "Metformin",
			"Refill", "café", "Café", "crème", "X-ray", "8675309", "867-5309"} {
			if bytes.Contains(raw, []byte(w)) {
				t.Errorf("the app's %s holds %q", name, w)
			}
		}
	}
	if !bytes.Contains(s.read(t, "store.json"), []byte(" w9")) || !bytes.Contains(s.appLog.Bytes(), []byte("q=w9")) {
		t.Errorf("the app's store or log has no index words:\n%s", s.appLog.Bytes())
	}
	if code, _ := s.do(t, "GET", s.appURL+"/healthz", "", "", nil); code != http.StatusOK {
		t.Errorf("app health: %d", code)
	}
	// Metrics and audit count index and search words, never name them.
	_, metrics := s.do(t, "GET", "http://"+s.admin+"/metrics", "", "", nil)
	for _, series := range []string{`phiguard_fields_total{action="search",reason="",route="search-messages"}`, `phiguard_fields_total{action="index",reason="",route="send-message"}`} {
		if !bytes.Contains(metrics, []byte(series)) {
			t.Errorf("no %s in the metrics", series)
		}
	}
	trail := s.read(t, "audit.jsonl")
	if !bytes.Contains(trail, []byte(`"action":"search","path":"query:q","count":2`)) || bytes.Contains(trail, []byte("Zephyrine")) || bytes.Contains(trail, []byte("metformin")) {
		t.Errorf("audit trail without search counts, or with a word:\n%s", trail)
	}
}

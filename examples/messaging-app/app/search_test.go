package app

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const ephiBody = "ephi:v1:org_a:00000001:QUJD w9aaaaaaa w9bbbbbbb"

// server is the app on a loopback listener, with its store in a temporary folder.
type server struct {
	app *App
	url string
	dir string
}

func start(t *testing.T, setup func(*App)) *server {
	t.Helper()
	dir := t.TempDir()
	a, err := New(filepath.Join(dir, "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(a)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return &server{app: a, url: srv.URL, dir: dir}
}

// call sends body (JSON-encoded unless it is a string) and decodes the JSON answer into out, if not nil.
func (s *server) call(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

func (s *server) send(t *testing.T, conversation string, m any) Message {
	t.Helper()
	var got Message
	if code := s.call(t, "POST", "/api/v1/conversations/"+conversation+"/messages", m, &got); code != 201 {
		t.Fatalf("send: status %d, want 201", code)
	}
	return got
}

// search runs terms through GET ?q= and through POST, checks both answer
// the same, and returns the status and the ids found.
func (s *server) search(t *testing.T, terms string) (int, []string) {
	t.Helper()
	var get, post struct {
		Data  []Message `json:"data"`
		Error string    `json:"error"`
	}
	getCode := s.call(t, "GET", "/api/v1/messages/search?q="+url.QueryEscape(terms), nil, &get)
	postCode := s.call(t, "POST", "/api/v1/messages/search", map[string]string{"terms": terms}, &post)
	if getCode != postCode || !slices.Equal(ids(get.Data), ids(post.Data)) {
		t.Errorf("search %q: GET answered %d %v, POST %d %v", terms, getCode, ids(get.Data), postCode, ids(post.Data))
	}
	if getCode != 200 && get.Error == "" {
		t.Errorf("search %q: status %d without a JSON error", terms, getCode)
	}
	return getCode, ids(get.Data)
}

func ids(ms []Message) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestSQLiteHasFTS5(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "fts.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE VIRTUAL TABLE t USING fts5(body, tokenize = 'unicode61')`); err != nil {
		t.Fatalf("create fts5 table: %v", err)
	}
	if _, err := db.Exec(`INSERT INTO t (body) VALUES (?)`, ephiBody); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t WHERE t MATCH 'w9bbbbbbb'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("got %d matches, want 1", n)
	}
}

func TestSearchMessages(t *testing.T) {
	s := start(t, nil)
	ephi := s.send(t, "cv_1", map[string]any{"body": ephiBody})
	other := s.send(t, "cv_2", map[string]any{"body": "ephi:v1:org_a:00000002:REVG w9ccccccc w9ddddddd"})
	object := s.send(t, "cv_1", map[string]any{"body": map[string]string{"text": "w9eeeeeee"}})
	caption := s.send(t, "cv_2", map[string]any{"body": "see attached", "attachments": []map[string]any{
		{"url": "https://files.example/1", "caption": "ephi:v1:org_a:00000003:R0hJ w9fffffff"},
	}})

	for _, tc := range []struct {
		terms string
		want  []string
	}{
		{"w9aaaaaaa", []string{ephi.ID}},
		{"w9bbbbbbb", []string{ephi.ID}},
		{"w9aaaaaaa w9bbbbbbb", []string{ephi.ID}},
		{"w9aaaaaaa AND w9bbbbbbb", []string{ephi.ID}},
		{"w9aaaaaaa w9ccccccc", []string{}}, // both words: no message has both
		{"w9ccccccc", []string{other.ID}},   // not the ephi message
		{"w9aaaaaa", []string{}},            // a prefix is not a word
		{"w9aaaaaaaa", []string{}},          // nor is a longer one
		{"w9zzzzzzz", []string{}},           // nor one that is nowhere
		{"w9aaaaaaa OR w9ccccccc", []string{ephi.ID, other.ID}},
		{"W9AAAAAAA", []string{ephi.ID}},    // unicode61 folds case
		{"w9eeeeeee", []string{object.ID}},  // a body that is a JSON object
		{"w9fffffff", []string{caption.ID}}, // an attachment caption
		{"attached", []string{caption.ID}},  // a plain body
	} {
		t.Run(tc.terms, func(t *testing.T) {
			code, got := s.search(t, tc.terms)
			if code != 200 || !slices.Equal(got, tc.want) {
				t.Errorf("got %d %v, want 200 %v", code, got, tc.want)
			}
		})
	}
}

func TestSearchAnswersListShape(t *testing.T) {
	s := start(t, nil)
	sent := s.send(t, "cv_1", map[string]any{"body": ephiBody, "attachments": []map[string]any{
		{"url": "https://files.example/1", "caption": map[string]int{"n": 1}},
	}})
	var list, found json.RawMessage
	if code := s.call(t, "GET", "/api/v1/conversations/cv_1/messages", nil, &list); code != 200 {
		t.Fatalf("list: status %d", code)
	}
	if code := s.call(t, "GET", "/api/v1/messages/search?q=w9aaaaaaa", nil, &found); code != 200 {
		t.Fatalf("search: status %d", code)
	}
	if !bytes.Equal(found, list) {
		t.Errorf("search answered\n%s\nlist answered\n%s", found, list)
	}
	if !bytes.Contains(found, []byte(`"body":"`+ephiBody+`"`)) || !bytes.Contains(found, []byte(sent.ID)) {
		t.Errorf("search answered %s, want the message as sent", found)
	}
}

func TestSearchOrdersByCreatedThenID(t *testing.T) {
	dir := t.TempDir()
	store := `{"messages": [
		{"id": "msg_c", "conversation_id": "cv_1", "body": "w9aaaaaaa", "created_at": "2026-01-02T00:00:00Z"},
		{"id": "msg_b", "conversation_id": "cv_1", "body": "w9aaaaaaa", "created_at": "2026-01-01T00:00:00.5Z"},
		{"id": "msg_a", "conversation_id": "cv_2", "body": "w9aaaaaaa", "created_at": "2026-01-01T00:00:00.5Z"},
		{"id": "msg_d", "conversation_id": "cv_2", "body": "w9aaaaaaa", "created_at": "2026-01-01T00:00:00Z"}
	]}`
	if err := os.WriteFile(filepath.Join(dir, "store.json"), []byte(store), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(filepath.Join(dir, "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer a.Close()
	defer srv.Close()
	s := &server{app: a, url: srv.URL, dir: dir}
	code, got := s.search(t, "w9aaaaaaa")
	if want := []string{"msg_d", "msg_a", "msg_b", "msg_c"}; code != 200 || !slices.Equal(got, want) {
		t.Errorf("got %d %v, want 200 %v", code, got, want)
	}
}

func TestSearchRejects(t *testing.T) {
	s := start(t, nil)
	s.send(t, "cv_1", map[string]any{"body": ephiBody})
	for _, terms := range []string{
		`"w9aaaaaaa`,             // unterminated string
		`w9aaaaaaa OR`,           // operator without a right side
		`AND w9aaaaaaa`,          // operator without a left side
		`(w9aaaaaaa`,             // unbalanced parenthesis
		`nosuchcolumn:w9aaaaaaa`, // unknown column filter
		"",
		"   ",
	} {
		t.Run(terms, func(t *testing.T) {
			if code, got := s.search(t, terms); code != 400 {
				t.Errorf("got %d %v, want 400", code, got)
			}
		})
	}
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/messages/search", ""},
		{"POST", "/api/v1/messages/search", "{}"},
		{"POST", "/api/v1/messages/search", "not json"},
	} {
		var e struct{ Error string }
		if code := s.call(t, tc.method, tc.path, tc.body, &e); code != 400 || e.Error == "" {
			t.Errorf("%s %s %q: got %d %+v, want 400 with an error", tc.method, tc.path, tc.body, code, e)
		}
	}
}

func TestContactsByPhone(t *testing.T) {
	s := start(t, nil)
	var created []Contact
	for _, c := range []Contact{
		{Name: "a", Phone: "ephi:v1:org_a:00000001:AAAA"},
		{Name: "b", Phone: "ephi:v1:org_a:00000001:AAAAB"},
		{Name: "c", Phone: "EPHI:V1:ORG_A:00000001:AAAA"},
		{Name: "d", Phone: "ephi:v1:org_a:00000001:AAAA", Notes: json.RawMessage(`"follow up"`)},
		{Name: "e", Phone: ""},
	} {
		var got Contact
		if code := s.call(t, "POST", "/api/v1/contacts", c, &got); code != 201 {
			t.Fatalf("create contact: status %d", code)
		}
		created = append(created, got)
	}
	names := func(query string) []string {
		var out struct{ Data []Contact }
		if code := s.call(t, "GET", "/api/v1/contacts"+query, nil, &out); code != 200 {
			t.Fatalf("list %q: status %d", query, code)
		}
		got := []string{}
		for _, c := range out.Data {
			got = append(got, c.Name)
		}
		return got
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"a", "b", "c", "d", "e"}},
		{"?phone=" + url.QueryEscape(created[0].Phone), []string{"a", "d"}},
		{"?phone=" + url.QueryEscape(created[1].Phone), []string{"b"}},
		{"?phone=ephi:v1:org_a:00000001", []string{}},
		{"?phone=", []string{"e"}},
		{"?phone=nobody", []string{}},
	} {
		if got := names(tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("GET /api/v1/contacts%s: got %v, want %v", tc.query, got, tc.want)
		}
	}
}

func TestAccessLog(t *testing.T) {
	var log syncBuffer
	s := start(t, func(a *App) { a.AccessLog = &log })
	s.send(t, "cv_1", map[string]any{"body": ephiBody})
	s.call(t, "GET", "/api/v1/messages/search?q=w9aaaaaaa%20w9bbbbbbb", nil, nil)
	s.call(t, "GET", "/api/v1/messages/search?q=%22w9aaaaaaa", nil, nil)
	s.call(t, "GET", "/api/v1/contacts?phone=%2B15550001", nil, nil)
	s.call(t, "POST", "/api/v1/messages/search", `{"terms": "w9aaaaaaa"}`, nil)
	want := strings.Join([]string{
		"POST /api/v1/conversations/cv_1/messages 201",
		"GET /api/v1/messages/search?q=w9aaaaaaa%20w9bbbbbbb 200",
		"GET /api/v1/messages/search?q=%22w9aaaaaaa 400",
		"GET /api/v1/contacts?phone=%2B15550001 200",
		"POST /api/v1/messages/search 200",
	}, "\n") + "\n"
	if got := log.String(); got != want {
		t.Errorf("got access log\n%s\nwant\n%s", got, want)
	}
}

func TestIndexBesideStore(t *testing.T) {
	s := start(t, nil)
	s.send(t, "cv_1", map[string]any{"body": ephiBody})
	s.send(t, "cv_1", map[string]any{"body": map[string]string{"text": "hi"}})
	var c Contact
	s.call(t, "POST", "/api/v1/contacts", map[string]any{"name": "n", "phone": "p1", "notes": "x"}, &c)
	for _, name := range []string{"store.json", "store.db"} {
		if _, err := os.Stat(filepath.Join(s.dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	db, err := sql.Open("sqlite", filepath.Join(s.dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var bodies []string
	rows, err := db.Query(`SELECT id, conversation_id, body FROM messages ORDER BY created_at`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, conv, body string
		if err := rows.Scan(&id, &conv, &body); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, body)
		if conv != "cv_1" {
			t.Errorf("message %s: conversation %q, want cv_1", id, conv)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{ephiBody, `{"text":"hi"}`}; !slices.Equal(bodies, want) {
		t.Errorf("got bodies %q, want %q", bodies, want)
	}
	var phone, notes string
	if err := db.QueryRow(`SELECT phone, notes FROM contacts WHERE id = ?`, c.ID).Scan(&phone, &notes); err != nil {
		t.Fatal(err)
	}
	if phone != "p1" || notes != "x" {
		t.Errorf("got phone %q notes %q, want p1 x", phone, notes)
	}
	var plan string
	if err := db.QueryRow(`EXPLAIN QUERY PLAN SELECT id FROM contacts WHERE phone = ?`, "p1").Scan(new(int), new(int), new(int), &plan); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "contacts_phone") {
		t.Errorf("phone lookup plan %q does not use the contacts_phone index", plan)
	}
}

func TestIndexRebuiltOnStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	serve := func() (*server, func()) {
		a, err := New(path)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(a)
		return &server{app: a, url: srv.URL}, func() { srv.Close(); a.Close() }
	}
	s, stop := serve()
	m := s.send(t, "cv_1", map[string]any{"body": ephiBody})
	stop()

	// A store written before the app had an index, or left ahead of it by a
	// crash, is indexed again when the app starts.
	if err := os.Remove(strings.TrimSuffix(path, ".json") + ".db"); err != nil {
		t.Fatal(err)
	}
	s, stop = serve()
	defer stop()
	if code, got := s.search(t, "w9bbbbbbb"); code != 200 || !slices.Equal(got, []string{m.ID}) {
		t.Errorf("got %d %v, want 200 [%s]", code, got, m.ID)
	}
}

func TestIndexErrorAnswers500(t *testing.T) {
	s := start(t, nil)
	s.send(t, "cv_1", map[string]any{"body": "kept"})
	before, err := os.ReadFile(filepath.Join(s.dir, "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.app.index.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		body any
	}{
		{"/api/v1/conversations/cv_1/messages", map[string]any{"body": "lost"}},
		{"/api/v1/contacts", map[string]any{"name": "n", "phone": "p"}},
	} {
		var e struct{ Error string }
		if code := s.call(t, "POST", tc.path, tc.body, &e); code != 500 || e.Error == "" {
			t.Errorf("POST %s: got %d %+v, want 500 with an error", tc.path, code, e)
		}
	}
	after, err := os.ReadFile(filepath.Join(s.dir, "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Errorf("store.json changed by failed writes:\n%s", after)
	}
	var list struct{ Data []Message }
	s.call(t, "GET", "/api/v1/conversations/cv_1/messages", nil, &list)
	if len(list.Data) != 1 {
		t.Errorf("conversation holds %d messages after a failed send, want 1", len(list.Data))
	}
}

func TestConcurrentSendAndSearch(t *testing.T) {
	s := start(t, nil)
	post := func(path, body string) {
		resp, err := http.Post(s.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("POST %s: status %d", path, resp.StatusCode)
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { post("/api/v1/conversations/cv_1/messages", `{"body": "`+ephiBody+`"}`) })
		wg.Go(func() { post("/api/v1/messages/search", `{"terms": "w9aaaaaaa"}`) })
		wg.Go(func() { post("/api/v1/contacts", `{"name": "n", "phone": "p"}`) })
	}
	wg.Wait()
	if code, got := s.search(t, "w9aaaaaaa"); code != 200 || len(got) != 8 {
		t.Errorf("got %d and %d messages, want 200 and 8", code, len(got))
	}
}

func TestIndexPath(t *testing.T) {
	for _, tc := range []struct{ store, want string }{
		{"store.json", "store.db"},
		{"/data/store.json", "/data/store.db"},
		{"/data/store", "/data/store.db"},
		{"/data.d/store", "/data.d/store.db"},
		{"a.b.json", "a.b.db"},
	} {
		if got := indexPath(tc.store); got != tc.want {
			t.Errorf("indexPath(%q): got %q, want %q", tc.store, got, tc.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines and the test's.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSetRole: a role change answers the user, the role before and the
// role after, and is kept.
func TestSetRole(t *testing.T) {
	a, err := New(filepath.Join(t.TempDir(), "store.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	set := func(role string) (int, RoleChange) {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("PATCH", "/api/v1/users/u_7/role", strings.NewReader(`{"role":"`+role+`"}`)))
		var c RoleChange
		json.Unmarshal(rec.Body.Bytes(), &c)
		return rec.Code, c
	}
	if code, c := set("agent"); code != 201 || c != (RoleChange{UserID: "u_7", Role: "agent"}) {
		t.Errorf("first role: %d %+v", code, c)
	}
	if code, c := set("admin"); code != 201 || c != (RoleChange{UserID: "u_7", PreviousRole: "agent", Role: "admin"}) {
		t.Errorf("second role: %d %+v", code, c)
	}
	if code, _ := set(""); code != 400 {
		t.Errorf("no role: %d", code)
	}
}

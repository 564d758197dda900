// Package app is a small messaging API for a clinic (contacts with notes,
// conversations, messages with attachment captions) persisted to a JSON
// file, with a SQLite database beside it for full-text search of messages
// and lookup of contacts by phone. It texts and pushes a conversation's
// last message through an SMS carrier and a push provider, and takes
// patients' SMS from the carrier's webhook. It knows phiguard only as the
// proxy its vendor calls go through and as the signer of the webhooks it
// receives (X-Phiguard-Signature): otherwise it stores, searches and
// returns what it is given. Like many real apps it has an access-control
// bug: any conversation can be read by id, whatever the caller's
// organization.
package app

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

type Contact struct {
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Phone string          `json:"phone"`
	Notes json.RawMessage `json:"notes,omitempty"`
}

type Conversation struct {
	ID        string `json:"id"`
	ContactID string `json:"contact_id"`
}

type Attachment struct {
	URL     string          `json:"url"`
	Caption json.RawMessage `json:"caption,omitempty"`
}

type Message struct {
	ID             string          `json:"id"`
	ConversationID string          `json:"conversation_id"`
	Body           json.RawMessage `json:"body"`
	Attachments    []Attachment    `json:"attachments,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
}

type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Store is everything the app keeps, as written to its file.
type Store struct {
	Contacts      []Contact      `json:"contacts"`
	Conversations []Conversation `json:"conversations"`
	Messages      []Message      `json:"messages"`
	Tokens        []Token        `json:"tokens"`
	// Inbound holds patients' SMS, as the carrier's webhook delivered them.
	Inbound []Inbound `json:"inbound,omitempty"`
	// Roles holds each user's role, by user id, as admins set them.
	Roles map[string]string `json:"roles,omitempty"`
}

// RoleChange is the answer to a role change: the user, the role before
// and the role after.
type RoleChange struct {
	UserID       string `json:"user_id"`
	PreviousRole string `json:"previous_role"`
	Role         string `json:"role"`
}

// App serves the API.
type App struct {
	// AccessLog, if not nil, gets one line per request:
	// "METHOD REQUEST_URI STATUS", the URI as the client sent it, query
	// included. Set it before serving; lines are written one at a time.
	AccessLog io.Writer
	// Outbound, if not nil, reaches the SMS carrier and the push provider
	// (POST /api/v1/conversations/{id}/notify). Set it before serving.
	Outbound *Outbound
	// WebhookSecret is the secret shared with phiguard: the carrier's
	// webhook (POST /webhooks/sms/{org}) must carry its
	// X-Phiguard-Signature. Empty: every webhook is refused. Set it before
	// serving.
	WebhookSecret []byte

	logMu sync.Mutex
	mu    sync.Mutex // guards store and index, which change together
	path  string
	store Store
	index *index
	mux   *http.ServeMux
}

// New loads (or starts) the store at path and (re)builds its index, a
// SQLite database at path with its extension replaced by ".db".
func New(path string) (*App, error) {
	a := &App{path: path, mux: http.NewServeMux()}
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &a.store); err != nil {
			return nil, err
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	ix, err := openIndex(context.Background(), indexPath(path), &a.store)
	if err != nil {
		return nil, err
	}
	a.index = ix
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, map[string]string{"status": "ok"}) })
	a.mux.HandleFunc("GET /openapi.yaml", serveOpenAPI)
	a.mux.HandleFunc("POST /api/v1/contacts", a.createContact)
	a.mux.HandleFunc("GET /api/v1/contacts", a.listContacts)
	a.mux.HandleFunc("POST /api/v1/conversations", a.createConversation)
	a.mux.HandleFunc("POST /api/v1/conversations/{id}/messages", a.sendMessage)
	a.mux.HandleFunc("GET /api/v1/conversations/{id}/messages", a.listMessages)
	a.mux.HandleFunc("POST /api/v1/conversations/{id}/notify", a.notify)
	a.mux.HandleFunc("POST /webhooks/sms/{org}", a.inboundSMS)
	a.mux.HandleFunc("GET /api/v1/inbound", a.listInbound)
	a.mux.HandleFunc("GET /api/v1/messages/search", a.searchMessages)
	a.mux.HandleFunc("POST /api/v1/messages/search", a.searchMessages)
	a.mux.HandleFunc("POST /api/v1/tokens", a.createToken)
	a.mux.HandleFunc("PATCH /api/v1/users/{id}/role", a.setRole)
	return a, nil
}

// Close closes the index. The JSON file needs no closing.
func (a *App) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index.Close()
}

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.AccessLog == nil {
		a.mux.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	a.mux.ServeHTTP(rec, r)
	a.logRequest(r, rec.status)
}

func (a *App) logRequest(r *http.Request, status int) {
	uri := r.RequestURI
	if uri == "" { // a request built in-process rather than read from a client
		uri = r.URL.RequestURI()
	}
	if status == 0 {
		status = http.StatusOK
	}
	a.logMu.Lock()
	defer a.logMu.Unlock()
	fmt.Fprintf(a.AccessLog, "%s %s %d\n", r.Method, uri, status)
}

// statusRecorder remembers the status a handler answers with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (a *App) createContact(w http.ResponseWriter, r *http.Request) {
	var c Contact
	if !decode(w, r, &c) {
		return
	}
	c.ID = newID("ct")
	a.write(w, r, func(s *Store) any { s.Contacts = append(s.Contacts, c); return c },
		func(ctx context.Context, tx *sql.Tx) error { return addContact(ctx, tx, c) })
}

// listContacts answers every contact, or with ?phone=P those whose phone is exactly P.
func (a *App) listContacts(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !r.URL.Query().Has("phone") {
		reply(w, 200, map[string]any{"data": append([]Contact{}, a.store.Contacts...)})
		return
	}
	ids, err := a.index.contactsByPhone(r.Context(), r.URL.Query().Get("phone"))
	if err != nil {
		reply(w, 500, map[string]string{"error": "could not look up contacts"})
		return
	}
	reply(w, 200, map[string]any{"data": byID(a.store.Contacts, func(c Contact) string { return c.ID }, ids)})
}

func (a *App) createConversation(w http.ResponseWriter, r *http.Request) {
	var c Conversation
	if !decode(w, r, &c) {
		return
	}
	c.ID = newID("cv")
	a.write(w, r, func(s *Store) any { s.Conversations = append(s.Conversations, c); return c }, nil)
}

func (a *App) sendMessage(w http.ResponseWriter, r *http.Request) {
	var m Message
	if !decode(w, r, &m) {
		return
	}
	m.ID, m.ConversationID, m.CreatedAt = newID("msg"), r.PathValue("id"), time.Now().UTC()
	a.write(w, r, func(s *Store) any { s.Messages = append(s.Messages, m); return m },
		func(ctx context.Context, tx *sql.Tx) error { return addMessage(ctx, tx, m) })
}

func (a *App) listMessages(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []Message{}
	for _, m := range a.store.Messages {
		if m.ConversationID == r.PathValue("id") {
			out = append(out, m)
		}
	}
	reply(w, 200, map[string]any{"data": out})
}

// searchMessages answers the messages whose body or attachment captions
// match the terms (GET ?q=TERMS, or POST {"terms": TERMS}), an FTS5 query
// used as is: "a b" finds messages with both words, "a OR b" with either.
func (a *App) searchMessages(w http.ResponseWriter, r *http.Request) {
	terms := r.URL.Query().Get("q")
	if r.Method == http.MethodPost {
		var req struct {
			Terms string `json:"terms"`
		}
		if !decode(w, r, &req) {
			return
		}
		terms = req.Terms
	}
	if strings.TrimSpace(terms) == "" {
		reply(w, 400, map[string]string{"error": "missing search terms"})
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ids, err := a.index.searchMessages(r.Context(), terms)
	switch {
	case errors.Is(err, errBadTerms):
		reply(w, 400, map[string]string{"error": "invalid search terms"})
		return
	case err != nil:
		reply(w, 500, map[string]string{"error": "could not search"})
		return
	}
	reply(w, 200, map[string]any{"data": byID(a.store.Messages, func(m Message) string { return m.ID }, ids)})
}

func (a *App) createToken(w http.ResponseWriter, r *http.Request) {
	var t Token
	if !decode(w, r, &t) {
		return
	}
	t.ID = newID("pat")
	a.write(w, r, func(s *Store) any { s.Tokens = append(s.Tokens, t); return t }, nil)
}

// setRole sets a user's role ({"role": R}) and answers the change
// (201, as every write here).
func (a *App) setRole(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Role string `json:"role"`
	}
	if !decode(w, r, &body) {
		return
	}
	if body.Role == "" {
		reply(w, http.StatusBadRequest, map[string]string{"error": "role is required"})
		return
	}
	id := r.PathValue("id")
	a.write(w, r, func(s *Store) any {
		c := RoleChange{UserID: id, PreviousRole: s.Roles[id], Role: body.Role}
		roles := maps.Clone(s.Roles) // a failed save puts the old map back
		if roles == nil {
			roles = map[string]string{}
		}
		roles[id] = body.Role
		s.Roles = roles
		return c
	}, nil)
}

// write applies change to the store and add (if not nil) to the index,
// persists both, and answers 201 with what change returns. If either
// cannot be saved it answers 500 and the app keeps what it had.
func (a *App) write(w http.ResponseWriter, r *http.Request, change func(*Store) any, add func(context.Context, *sql.Tx) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.store
	out := change(&a.store)
	var err error
	if add == nil {
		err = a.save()
	} else {
		// A write the client gave up on still completes, so file and index agree.
		err = a.index.commit(context.WithoutCancel(r.Context()), add, a.save)
	}
	if err != nil {
		a.store = prev
		reply(w, 500, map[string]string{"error": "could not save"})
		return
	}
	reply(w, 201, out)
}

// save writes the store to its file.
func (a *App) save() error {
	raw, err := json.MarshalIndent(a.store, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, a.path)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		reply(w, 400, map[string]string{"error": "invalid JSON"})
		return false
	}
	return true
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newID(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

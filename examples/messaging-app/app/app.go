// Package app is a small messaging API for a clinic (contacts with notes,
// conversations, messages with attachment captions) persisted to a JSON
// file. It knows nothing of phiguard: it stores and returns what it is
// given. Like many real apps it has an access-control bug: any conversation
// can be read by id, whatever the caller's organization.
package app

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
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
}

// App serves the API.
type App struct {
	mu    sync.Mutex
	path  string
	store Store
	mux   *http.ServeMux
}

// New loads (or starts) the store at path.
func New(path string) (*App, error) {
	a := &App{path: path, mux: http.NewServeMux()}
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &a.store); err != nil {
			return nil, err
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, map[string]string{"status": "ok"}) })
	a.mux.HandleFunc("POST /api/v1/contacts", a.createContact)
	a.mux.HandleFunc("GET /api/v1/contacts", a.listContacts)
	a.mux.HandleFunc("POST /api/v1/conversations", a.createConversation)
	a.mux.HandleFunc("POST /api/v1/conversations/{id}/messages", a.sendMessage)
	a.mux.HandleFunc("GET /api/v1/conversations/{id}/messages", a.listMessages)
	a.mux.HandleFunc("POST /api/v1/tokens", a.createToken)
	return a, nil
}

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *App) createContact(w http.ResponseWriter, r *http.Request) {
	var c Contact
	if !decode(w, r, &c) {
		return
	}
	c.ID = newID("ct")
	a.write(w, func(s *Store) any { s.Contacts = append(s.Contacts, c); return c })
}

func (a *App) listContacts(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	reply(w, 200, map[string]any{"data": append([]Contact{}, a.store.Contacts...)})
}

func (a *App) createConversation(w http.ResponseWriter, r *http.Request) {
	var c Conversation
	if !decode(w, r, &c) {
		return
	}
	c.ID = newID("cv")
	a.write(w, func(s *Store) any { s.Conversations = append(s.Conversations, c); return c })
}

func (a *App) sendMessage(w http.ResponseWriter, r *http.Request) {
	var m Message
	if !decode(w, r, &m) {
		return
	}
	m.ID, m.ConversationID, m.CreatedAt = newID("msg"), r.PathValue("id"), time.Now().UTC()
	a.write(w, func(s *Store) any { s.Messages = append(s.Messages, m); return m })
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

func (a *App) createToken(w http.ResponseWriter, r *http.Request) {
	var t Token
	if !decode(w, r, &t) {
		return
	}
	t.ID = newID("pat")
	a.write(w, func(s *Store) any { s.Tokens = append(s.Tokens, t); return t })
}

// write applies change to the store, persists it, and answers 201 with what change returns.
func (a *App) write(w http.ResponseWriter, change func(*Store) any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := change(&a.store)
	raw, err := json.MarshalIndent(a.store, "", "  ")
	if err == nil {
		tmp := a.path + ".tmp"
		if err = os.WriteFile(tmp, raw, 0o600); err == nil {
			err = os.Rename(tmp, a.path)
		}
	}
	if err != nil {
		reply(w, 500, map[string]string{"error": "could not save"})
		return
	}
	reply(w, 201, out)
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

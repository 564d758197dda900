package main

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is the messaging app both proxies forward to. It runs in the
// harness process. POSTed messages are stored (the last one per
// conversation) and echoed with 201; the GET routes serve the sealed
// documents the harness captured through phiguard (see seed).
type upstream struct {
	ln  net.Listener
	srv *http.Server

	mu     sync.Mutex
	stored map[string][]byte // conversation id → last body received

	doc, list atomic.Pointer[[]byte]

	// conns counts the connections the proxies opened to the upstream.
	conns atomic.Int64
}

var conversationJSON = []byte(`{"id":"cv_1001","title":"Front desk","channel":"sms","participants":["u_042","u_007"],"created_at":"2026-03-01T09:00:00Z","unread":3}`)

func startUpstream(errLog io.Writer) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{ln: ln, stored: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/conversations/{id}/messages", u.postMessage)
	mux.HandleFunc("GET /api/v1/conversations/{id}/messages", func(w http.ResponseWriter, r *http.Request) { serveJSON(w, u.list.Load()) })
	mux.HandleFunc("GET /api/v1/conversations/{id}/messages/{mid}", func(w http.ResponseWriter, r *http.Request) { serveJSON(w, u.doc.Load()) })
	mux.HandleFunc("GET /api/v1/conversations/{id}", func(w http.ResponseWriter, r *http.Request) { serveJSON(w, &conversationJSON) })
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, ErrorLog: log.New(errLog, "upstream: ", 0)}
	u.srv.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	go u.srv.Serve(ln)
	return u, nil
}

func (u *upstream) url() string { return "http://" + u.ln.Addr().String() }

func (u *upstream) close() { u.srv.Close() }

func (u *upstream) postMessage(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	u.stored[r.PathValue("id")] = body
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusCreated)
	w.Write(body)
}

// last is the last body stored for a conversation, nil if none.
func (u *upstream) last(conv string) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stored[conv]
}

// serve makes the GET routes answer with the sealed documents.
func (u *upstream) serve(doc, list []byte) {
	u.doc.Store(&doc)
	u.list.Store(&list)
}

func serveJSON(w http.ResponseWriter, body *[]byte) {
	if body == nil {
		http.Error(w, "not seeded yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(*body)))
	w.Write(*body)
}

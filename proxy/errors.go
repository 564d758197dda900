package proxy

import (
	"encoding/json"
	"net/http"

	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/refusal"
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// writeError answers a refusal: its status, a JSON error naming its kind
// and reason, and headers that keep it out of caches.
func writeError(w http.ResponseWriter, r *refusal.Error, requestID string) {
	status := engine.Status(r.Kind)
	h := w.Header()
	for k := range h {
		if k != "X-Request-Id" {
			delete(h, k)
		}
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.Kind {
	case refusal.Unauthenticated:
		h.Set("WWW-Authenticate", `Bearer realm="phiguard"`)
	case refusal.MethodNotAllowed:
		h.Set("Allow", engine.AllowedMethods)
	case refusal.Busy:
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorBody{Error: errorDetail{Status: status, Code: r.ClientCode(), Message: r.Reason, RequestID: requestID}})
}

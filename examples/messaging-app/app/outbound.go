package app

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Outbound is how the app reaches its vendors: an SMS carrier with
// Twilio's API and a push provider with FCM's. Like most apps it calls
// them with its own credentials over plain URLs, here through a client
// whose transport is phiguard's egress listener (a forward proxy): the
// app holds only tokens, and phiguard decides what each vendor gets.
type Outbound struct {
	// Client sends the vendor calls. Required.
	Client *http.Client
	// CarrierURL is the carrier's base URL (http://api.twilio.com);
	// Account, AuthToken and From are the app's account, its credential
	// and the number it texts from.
	CarrierURL, Account, AuthToken, From string
	// PushURL is the push provider's base URL (http://fcm.googleapis.com);
	// Project and PushToken are the app's project and its bearer token.
	PushURL, Project, PushToken string
}

// maxVendorAnswer bounds a vendor's answer the app reads.
const maxVendorAnswer = 1 << 20

// NotifyRequest is the body of POST /api/v1/conversations/{id}/notify:
// who to tell about the conversation's last message. To texts it (the
// message itself); Device pushes a notification to a phone with Title and
// the message. One of them, at least.
type NotifyRequest struct {
	To     string `json:"to,omitempty"`
	Device string `json:"device,omitempty"`
	Title  string `json:"title,omitempty"`
}

// Delivery is what one vendor answered: its status and its answer, or the
// error that kept the call from being made.
type Delivery struct {
	Status int             `json:"status"`
	Answer json.RawMessage `json:"answer,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// notify sends the conversation's last message, as stored, by SMS and by
// push. It answers 200 with each vendor's answer when every call
// succeeded, else 502 with the same.
func (a *App) notify(w http.ResponseWriter, r *http.Request) {
	var req NotifyRequest
	if !decode(w, r, &req) {
		return
	}
	if req.To == "" && req.Device == "" {
		reply(w, http.StatusBadRequest, map[string]string{"error": "to or device is required"})
		return
	}
	if a.Outbound == nil || a.Outbound.Client == nil {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": "no outbound vendors configured"})
		return
	}
	m, ok := a.lastMessage(r.PathValue("id"))
	if !ok {
		reply(w, http.StatusNotFound, map[string]string{"error": "the conversation has no message"})
		return
	}
	text := indexText(m.Body) // the stored text: a token and its index words, here
	o := a.Outbound
	out := map[string]Delivery{}
	if req.To != "" {
		form := url.Values{"To": {req.To}, "From": {o.From}, "Body": {text}}
		u := strings.TrimSuffix(o.CarrierURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(o.Account) + "/Messages.json"
		out["sms"] = o.send(r, u, "application/x-www-form-urlencoded", []byte(form.Encode()), func(h http.Header) {
			h.Set("Authorization", basicAuth(o.Account, o.AuthToken))
		})
	}
	if req.Device != "" {
		title := req.Title
		if title == "" {
			title = "New message"
		}
		payload := map[string]any{"message": map[string]any{
			"token":        req.Device,
			"notification": map[string]string{"title": title, "body": text},
			"data":         map[string]string{"conversation_id": m.ConversationID, "message_id": m.ID, "body": text},
		}}
		body, _ := json.Marshal(payload)
		u := strings.TrimSuffix(o.PushURL, "/") + "/v1/projects/" + url.PathEscape(o.Project) + "/messages:send"
		out["push"] = o.send(r, u, "application/json", body, func(h http.Header) {
			h.Set("Authorization", "Bearer "+o.PushToken)
		})
	}
	status := http.StatusOK
	for _, d := range out {
		if d.Status/100 != 2 {
			status = http.StatusBadGateway
		}
	}
	reply(w, status, out)
}

// lastMessage is the conversation's most recent message.
func (a *App) lastMessage(conv string) (Message, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.store.Messages) - 1; i >= 0; i-- {
		if m := a.store.Messages[i]; m.ConversationID == conv {
			return m, true
		}
	}
	return Message{}, false
}

// send makes one vendor call and reads its answer.
func (o *Outbound) send(r *http.Request, u, contentType string, body []byte, auth func(http.Header)) Delivery {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Delivery{Status: http.StatusBadGateway, Error: "could not build the vendor call"}
	}
	req.Header.Set("Content-Type", contentType)
	auth(req.Header)
	resp, err := o.Client.Do(req)
	if err != nil {
		return Delivery{Status: http.StatusBadGateway, Error: "the vendor could not be reached"}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxVendorAnswer))
	if err != nil {
		return Delivery{Status: http.StatusBadGateway, Error: "the vendor's answer could not be read"}
	}
	d := Delivery{Status: resp.StatusCode}
	if json.Valid(raw) {
		d.Answer = raw
	} else if len(raw) > 0 {
		d.Answer, _ = json.Marshal(string(raw))
	}
	return d
}

func basicAuth(user, password string) string {
	r := http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, password)
	return r.Header.Get("Authorization")
}

package app

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testSecret = "webhook-secret-0123456789"

func signature(secret string, at time.Time, method, target, body string) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(Sign([]byte(secret), ts, method, target, []byte(body)))
}

// TestInboundSMS: the carrier's webhook is taken only with phiguard's
// signature over what the app received; the sender is filed under the
// contact whose phone token equals From.
func TestInboundSMS(t *testing.T) {
	s := start(t, func(a *App) { a.WebhookSecret = []byte(testSecret) })
	var c Contact
	s.call(t, "POST", "/api/v1/contacts", map[string]any{"name": "n", "phone": "ephi:d1:org_a:1:PHONE"}, &c)
	const path = "/webhooks/sms/org_a?src=sms"
	body := url.Values{"From": {"ephi:d1:org_a:1:PHONE"}, "Body": {"ephi:v1:org_a:1:STOP"}}.Encode()
	now := time.Now()
	post := func(sig, body string) (int, Inbound) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set(SignatureHeader, sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var in Inbound
		raw, _ := io.ReadAll(resp.Body)
		json.Unmarshal(raw, &in)
		return resp.StatusCode, in
	}
	for _, c := range []struct{ name, sig, body string }{
		{"unsigned", "", body},
		{"another secret", signature("another-secret-0123456789", now, "POST", path, body), body},
		{"body altered", signature(testSecret, now, "POST", path, body), body + "&x=1"},
		{"another path", signature(testSecret, now, "POST", "/webhooks/sms/org_b?src=sms", body), body},
		{"stale", signature(testSecret, now.Add(-10*time.Minute), "POST", path, body), body},
		{"not hex", "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=zz", body},
	} {
		if code, _ := post(c.sig, c.body); code != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", c.name, code)
		}
	}
	code, in := post(signature(testSecret, now, "POST", path, body), body)
	if code != http.StatusCreated || in.Org != "org_a" || in.ContactID != c.ID || string(in.Body) != `"ephi:v1:org_a:1:STOP"` {
		t.Errorf("signed: got %d %+v", code, in)
	}
	s.app.mu.Lock()
	n := len(s.app.store.Inbound)
	s.app.mu.Unlock()
	if n != 1 {
		t.Errorf("the store holds %d inbound messages, want 1", n)
	}
}

func TestInboundSMSWithoutSecret(t *testing.T) {
	s := start(t, nil)
	body := "From=x&Body=y"
	req, _ := http.NewRequest("POST", s.url+"/webhooks/sms/org_a", strings.NewReader(body))
	req.Header.Set(SignatureHeader, signature("", time.Now(), "POST", "/webhooks/sms/org_a", body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("got %d, want 401", resp.StatusCode)
	}
}

// TestNotify: the conversation's last message goes, as stored, to the
// carrier as a Twilio form and to the push provider as an FCM message,
// each with the app's credentials; a vendor's refusal makes a 502 that
// carries its answer.
func TestNotify(t *testing.T) {
	type call struct {
		path, auth, ctype, body string
	}
	var mu sync.Mutex
	var calls []call
	vendors := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, call{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(raw)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(raw), "refuse") {
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":"no_consent"}}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"ok":true}`))
	}))
	defer vendors.Close()
	s := start(t, func(a *App) {
		a.Outbound = &Outbound{Client: vendors.Client(), CarrierURL: vendors.URL, Account: "AC1", AuthToken: "tok", From: "+15005550006",
			PushURL: vendors.URL + "/", Project: "p1", PushToken: "push-tok"}
	})
	var e struct{ Error string }
	if code := s.call(t, "POST", "/api/v1/conversations/cv_1/notify", map[string]string{"to": "+15555550100"}, &e); code != 404 {
		t.Errorf("no message: got %d", code)
	}
	if code := s.call(t, "POST", "/api/v1/conversations/cv_1/notify", map[string]string{}, &e); code != 400 {
		t.Errorf("no recipient: got %d", code)
	}
	s.send(t, "cv_1", map[string]any{"body": "first"})
	s.send(t, "cv_1", map[string]any{"body": ephiBody})
	s.send(t, "cv_2", map[string]any{"body": "other"})
	var got map[string]Delivery
	if code := s.call(t, "POST", "/api/v1/conversations/cv_1/notify", map[string]string{"to": "+15555550100", "device": "d1", "title": "Hi"}, &got); code != 200 {
		t.Fatalf("notify: got %d %+v", code, got)
	}
	if got["sms"].Status != 201 || got["push"].Status != 201 || string(got["sms"].Answer) != `{"ok":true}` {
		t.Errorf("got %+v", got)
	}
	mu.Lock()
	sent := slices.Clone(calls)
	mu.Unlock()
	if len(sent) != 2 {
		t.Fatalf("the vendors got %d calls, want 2", len(sent))
	}
	sms, push := sent[0], sent[1]
	form, _ := url.ParseQuery(sms.body)
	if sms.path != "/2010-04-01/Accounts/AC1/Messages.json" || sms.ctype != "application/x-www-form-urlencoded" || sms.auth != basicAuth("AC1", "tok") ||
		form.Get("To") != "+15555550100" || form.Get("From") != "+15005550006" || form.Get("Body") != ephiBody {
		t.Errorf("the carrier got %+v", sms)
	}
	var p struct {
		Message struct {
			Token        string
			Notification struct{ Title, Body string }
			Data         map[string]string
		}
	}
	if err := json.Unmarshal([]byte(push.body), &p); err != nil || push.path != "/v1/projects/p1/messages:send" || push.auth != "Bearer push-tok" ||
		p.Message.Token != "d1" || p.Message.Notification.Title != "Hi" || p.Message.Notification.Body != ephiBody || p.Message.Data["conversation_id"] != "cv_1" {
		t.Errorf("the push provider got %+v (%v)", push, err)
	}

	s.send(t, "cv_1", map[string]any{"body": "refuse"})
	got = nil
	if code := s.call(t, "POST", "/api/v1/conversations/cv_1/notify", map[string]string{"to": "+15555550100"}, &got); code != 502 ||
		got["sms"].Status != 403 || string(got["sms"].Answer) != `{"error":{"code":"no_consent"}}` || len(got) != 1 {
		t.Errorf("refused: got %d %+v", code, got)
	}
}

func TestNotifyWithoutVendors(t *testing.T) {
	s := start(t, nil)
	s.send(t, "cv_1", map[string]any{"body": "x"})
	var e struct{ Error string }
	if code := s.call(t, "POST", "/api/v1/conversations/cv_1/notify", map[string]string{"to": "+15555550100"}, &e); code != 503 || e.Error == "" {
		t.Errorf("got %d %+v", code, e)
	}
}

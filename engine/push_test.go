package engine

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/refusal"
)

const pushCanary = "CANARY-PUSH-Rivera-oncology"

// egressCall runs one egress call through the engine and returns what
// the vendor would get, or the refusal.
func egressCall(t *testing.T, r *rig, host, method, path, contentType, body string) ([]byte, *refusal.Error) {
	t.Helper()
	ctx := context.Background()
	h := http.Header{"Content-Type": {contentType}}
	x, err := r.eng.BeginEgress(ctx, &Request{Method: method, Path: path, Header: h, Host: host})
	defer x.Close()
	if err == nil {
		var out []byte
		if out, err = x.SealEgress(ctx, h, strings.NewReader(body), int64(len(body))); err == nil {
			if err = x.Intend(ctx); err == nil {
				return append([]byte(nil), out...), nil
			}
		}
	}
	return nil, x.Refuse(ctx, err)
}

// TestPushPresets: the ready-made push rules in configs/egress, loaded as
// a platform team would paste them, turn every text a lock screen shows
// into generic text and drop data payloads, in payloads shaped as each
// provider documents them; a phiguard token anywhere, or a payload whose
// other fields look like PHI, is refused.
func TestPushPresets(t *testing.T) {
	for _, c := range []struct {
		file, host, path string
		payload          string
		want             []string // in what the vendor gets
		tokenAt          string   // a payload with a token where no rule looks
	}{
		{"fcm.yaml", "fcm.googleapis.com", "/v1/projects/clinic/messages:send",
			`{"message":{"token":"device-1","notification":{"title":"Dr. Rivera: C","body":"C","image":"https://img.example/C.png"},
			 "data":{"conversation":"cv_1","preview":"C"},
			 "android":{"priority":"high","notification":{"title":"C","body":"C","ticker":"C","body_loc_args":["C"]},"data":{"x":"C"}},
			 "apns":{"headers":{"apns-priority":"10"},"payload":{"aps":{"alert":{"title":"C","subtitle":"C","body":"C"},"badge":1}}},
			 "webpush":{"notification":{"title":"C","body":"C"},"data":{"x":"C"}}}}`,
			[]string{`"token":"device-1"`, `"title":"New message"`, `"body":"You have a new message"`, `"subtitle":"New message"`, `"priority":"high"`, `"badge":1`},
			`{"message":{"token":"device-1","fcm_options":{"analytics_label":"TOKEN"}}}`},
		{"apns.yaml", "api.push.apple.com", "/3/device/abc123",
			`{"aps":{"alert":{"title":"C","subtitle":"C","body":"C"},"badge":3,"sound":"default","thread-id":"C"}}`,
			[]string{`"alert":"You have a new message"`, `"badge":3`, `"sound":"default"`},
			`{"aps":{"alert":"hi"},"conversation":{"last":"TOKEN"}}`},
		{"apns.yaml", "api.push.apple.com", "/3/device/abc123",
			`{"aps":{"alert":"C","sound":"default"}}`,
			[]string{`"alert":"You have a new message"`},
			""},
		{"expo.yaml", "exp.host", "/--/api/v2/push/send",
			`[{"to":"ExponentPushToken[x]","title":"C","subtitle":"C","body":"C","data":{"C":"C"},"sound":"default"},{"to":"ExponentPushToken[y]","body":"C"}]`,
			[]string{`"to":"ExponentPushToken[x]"`, `"to":"ExponentPushToken[y]"`, `"title":"New message"`, `"body":"You have a new message"`, `"sound":"default"`},
			`{"to":"ExponentPushToken[x]","body":"hi","badgeText":"TOKEN"}`},
	} {
		t.Run(c.file, func(t *testing.T) {
			preset, err := os.ReadFile("../configs/egress/" + c.file)
			if err != nil {
				t.Fatal(err)
			}
			r := newRigWith(t, "version: 1\ningress: {upstream: \"http://127.0.0.1:8080\"}\nkeys: {keyring: k}\norgs: [{id: org_a}]\n"+string(preset), "org_a")
			tok, err := r.keys.AppendEncrypt(context.Background(), nil, "org_a", []byte(`"`+pushCanary+`"`))
			if err != nil {
				t.Fatal(err)
			}
			payload := strings.ReplaceAll(c.payload, `"C"`, `"`+pushCanary+`"`)
			payload = strings.ReplaceAll(payload, `"preview":"`+pushCanary+`"`, `"preview":"`+string(tok)+`"`)
			out, ref := egressCall(t, r, c.host, "POST", c.path, "application/json", payload)
			if ref != nil {
				t.Fatalf("refused: %v", ref)
			}
			if !json.Valid(out) {
				t.Fatalf("the vendor would get invalid JSON: %s", out)
			}
			if strings.Contains(string(out), "CANARY") || strings.Contains(string(out), "ephi:") {
				t.Errorf("the push provider would get PHI: %s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("the payload lost %s: %s", w, out)
				}
			}
			if c.tokenAt != "" {
				_, ref = egressCall(t, r, c.host, "POST", c.path, "application/json", strings.Replace(c.tokenAt, "TOKEN", string(tok), 1))
				if ref == nil || ref.ClientCode() != "phi_blocked" {
					t.Errorf("a token outside the rules: got %v, want phi_blocked", ref)
				}
			}
			r.aud.mu.Lock()
			trail, _ := json.Marshal(r.aud.list)
			r.aud.mu.Unlock()
			if strings.Contains(string(trail), "CANARY") {
				t.Errorf("a record holds PHI: %s", trail)
			}
		})
	}
}

// BenchmarkEgress: one call through the engine, head to rewritten body:
// an SMS whose text is a token opened for the carrier, and an FCM
// message through the ready-made push rules (drop, replace, DLP).
func BenchmarkEgress(b *testing.B) {
	preset, err := os.ReadFile("../configs/egress/fcm.yaml")
	if err != nil {
		b.Fatal(err)
	}
	src := "version: 1\ningress: {upstream: \"http://127.0.0.1:8080\"}\nkeys: {keyring: k}\norgs: [{id: org_a}]\n" + string(preset) + `  - name: carrier
    host: api.twilio.com
    baa: true
    decrypt_request: ["form:Body"]
`
	r := newRigWith(b, src, "org_a")
	tok, err := r.keys.AppendEncrypt(context.Background(), nil, "org_a", []byte(`"`+strings.Repeat("m", 160)+`"`))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, host, path, ctype, body string }{
		{"sms", "api.twilio.com", "/2010-04-01/Accounts/AC1/Messages.json", "application/x-www-form-urlencoded", "To=%2B15555550100&From=%2B15555550000&Body=" + string(tok)},
		{"fcm", "fcm.googleapis.com", "/v1/projects/clinic/messages:send", "application/json",
			`{"message":{"token":"device-token-0123456789","notification":{"title":"New message from the clinic","body":"` + string(tok) + `"},"data":{"conversation":"cv_1","body":"` + string(tok) + `"},"android":{"priority":"high"}}}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				h := http.Header{"Content-Type": {c.ctype}}
				x, err := r.eng.BeginEgress(ctx, &Request{Method: "POST", Path: c.path, Header: h, Host: c.host})
				if err == nil {
					_, err = x.SealEgress(ctx, h, strings.NewReader(c.body), int64(len(c.body)))
				}
				x.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

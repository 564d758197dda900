package explain

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/phiguard/phiguard/policy"
)

// FuzzValuesNeverShown: whatever a sample's values hold, and wherever
// they are (selected, unselected, refused, in a form, in the query, in
// the answer), neither the text nor the JSON explanation shows one.
func FuzzValuesNeverShown(f *testing.F) {
	for _, s := range []string{"chest pain", "", "ephi:v1:org_a:00000000:QUJD", "555-867-5309", "\u00e9\u0000\"\\", "Body", "w9abcdefgh"} {
		f.Add(s, "body", false)
		f.Add(s, "Body", true)
	}
	p, err := policy.Load("testdata/policy.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v, key string, form bool) {
		if !utf8.ValidString(v) || !utf8.ValidString(key) || strings.Contains(key, "Zq7") {
			return // member names are shown: one may not spell the value
		}
		// A value no explanation could spell by chance.
		secret := "Zq7" + v + "7qZ"
		var req string
		if form {
			q := url.Values{key: {secret}, "Body": {secret}, "MediaUrl0": {secret}}
			req = "POST /webhooks/sms/org_a?x=" + url.QueryEscape(secret) + "\nContent-Type: application/x-www-form-urlencoded\n\n" + q.Encode()
		} else {
			body, _ := json.Marshal(map[string]any{key: secret, "body": secret, "attachments": []any{map[string]string{"caption": secret}}, "n": map[string]string{"x": secret}})
			req = "POST /api/v1/conversations/" + url.PathEscape(secret) + "/messages\nContent-Type: application/json\nX-Note: " + strings.ReplaceAll(secret, "\n", " ") + "\n\n" + string(body)
		}
		answer, _ := json.Marshal(map[string]any{"body": secret, "attachments": []any{map[string]string{"caption": secret}}, key: secret})
		e, err := Explain(context.Background(), p, []byte(req), answer, Options{Role: "agent"})
		if err != nil {
			return // not a request: nothing explained, nothing shown
		}
		var text bytes.Buffer
		if err := e.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(e)
		quoted, _ := json.Marshal(secret)
		if strings.Contains(text.String(), secret) || bytes.Contains(js, quoted[1:len(quoted)-1]) {
			t.Fatalf("a value is shown:\n%s\n%s", text.String(), js)
		}
	})
}

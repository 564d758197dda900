package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
)

// loadSpec parses and validates the description the app embeds.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapiSpec)
	if err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI: %v", err)
	}
	return doc
}

// TestServesOpenAPI: GET /openapi.yaml answers the file, as YAML, and it
// is a valid OpenAPI document.
func TestServesOpenAPI(t *testing.T) {
	s := start(t, nil)
	resp, err := http.Get(s.url + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	file, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(got, file) {
		t.Errorf("GET /openapi.yaml: %d %q, %d bytes; want 200 application/yaml and the file's %d bytes",
			resp.StatusCode, resp.Header.Get("Content-Type"), len(got), len(file))
	}
	doc, err := openapi3.NewLoader().LoadFromData(got)
	if err != nil {
		t.Fatalf("the served description does not parse: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the served description is not valid OpenAPI: %v", err)
	}
}

// TestOpenAPIListsEveryRoute: the description has an operation for each
// pattern the app registers, and none other.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	src, err := os.ReadFile("app.go")
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, m := range regexp.MustCompile(`mux\.HandleFunc\("([A-Z]+) ([^"]+)"`).FindAllSubmatch(src, -1) {
		served = append(served, string(m[1])+" "+string(m[2]))
	}
	var described []string
	doc := loadSpec(t)
	for _, path := range doc.Paths.Keys() {
		for method := range doc.Paths.Value(path).Operations() {
			described = append(described, method+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(described)
	if len(served) < 14 || !slices.Equal(served, described) {
		t.Errorf("the app serves\n  %s\nthe description lists\n  %s", strings.Join(served, "\n  "), strings.Join(described, "\n  "))
	}
}

// TestOpenAPIDescribesAnswers runs every operation as a client would and
// checks each request and answer against the description: the status is
// listed, and the JSON bodies satisfy their schemas.
func TestOpenAPIDescribesAnswers(t *testing.T) {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"sid":"SM1","status":"queued"}`)
	}))
	defer vendor.Close()
	s := start(t, func(a *App) {
		a.WebhookSecret = []byte(testSecret)
		a.Outbound = &Outbound{Client: vendor.Client(), CarrierURL: vendor.URL, Account: "AC1", From: "+15005550006",
			PushURL: vendor.URL, Project: "p"}
	})
	doc := loadSpec(t)
	ids := map[string]string{}
	for _, c := range []struct {
		method, template, path string
		header                 http.Header
		body                   any // JSON, or a string sent as a form
		status                 int
		save                   string // remember the answer's id under this name
		bad                    bool   // the request breaks the description on purpose
	}{
		{method: "GET", template: "/healthz", status: 200},
		{method: "POST", template: "/api/v1/contacts", body: map[string]any{"name": "Ann", "phone": "+15551234567", "notes": "allergic"}, status: 201, save: "contact"},
		{method: "POST", template: "/api/v1/contacts", body: map[string]any{"name": "Bob", "phone": "+15557654321", "notes": map[string]any{"k": 1}}, status: 201},
		{method: "POST", template: "/api/v1/contacts", body: "{", status: 400, bad: true},
		{method: "GET", template: "/api/v1/contacts", status: 200},
		{method: "GET", template: "/api/v1/contacts", path: "/api/v1/contacts?phone=%2B15551234567", status: 200},
		{method: "POST", template: "/api/v1/conversations", body: map[string]any{"contact_id": "{contact}"}, status: 201, save: "conv"},
		{method: "POST", template: "/api/v1/conversations/{id}/notify", path: "/api/v1/conversations/{conv}/notify", body: map[string]any{"to": "+15551234567"}, status: 404},
		{method: "POST", template: "/api/v1/conversations/{id}/messages", path: "/api/v1/conversations/{conv}/messages",
			body: map[string]any{"body": "knee pain", "attachments": []any{map[string]any{"url": "https://x.example/1.png", "caption": "x-ray"}}}, status: 201},
		{method: "POST", template: "/api/v1/conversations/{id}/messages", path: "/api/v1/conversations/{conv}/messages", body: map[string]any{"body": "better"}, status: 201},
		{method: "GET", template: "/api/v1/conversations/{id}/messages", path: "/api/v1/conversations/{conv}/messages", status: 200},
		{method: "POST", template: "/api/v1/conversations/{id}/notify", path: "/api/v1/conversations/{conv}/notify", body: map[string]any{"to": "+15551234567", "device": "tok", "title": "Hi"}, status: 200},
		{method: "POST", template: "/api/v1/conversations/{id}/notify", path: "/api/v1/conversations/{conv}/notify", body: map[string]any{}, status: 400},
		{method: "GET", template: "/api/v1/messages/search", path: "/api/v1/messages/search?q=knee", status: 200},
		{method: "GET", template: "/api/v1/messages/search", status: 400},
		{method: "GET", template: "/api/v1/messages/search", path: "/api/v1/messages/search?q=%22", status: 400},
		{method: "POST", template: "/api/v1/messages/search", body: map[string]any{"terms": "knee OR better"}, status: 200},
		{method: "POST", template: "/api/v1/tokens", body: map[string]any{"name": "ci"}, status: 201},
		{method: "PATCH", template: "/api/v1/users/{id}/role", path: "/api/v1/users/u1/role", body: map[string]any{"role": "admin"}, status: 201},
		{method: "PATCH", template: "/api/v1/users/{id}/role", path: "/api/v1/users/u1/role", body: map[string]any{}, status: 400, bad: true},
		{method: "POST", template: "/webhooks/sms/{org}", path: "/webhooks/sms/org_a", body: url.Values{"From": {"+15551234567"}, "To": {"+15005550006"}, "Body": {"STOP"}, "NumMedia": {"1"}, "MediaUrl0": {"https://x.example/m"}}.Encode(), status: 201},
		{method: "POST", template: "/webhooks/sms/{org}", path: "/webhooks/sms/org_a", header: http.Header{SignatureHeader: {"t=1,v1=00"}}, body: "From=x&Body=y", status: 401},
		{method: "GET", template: "/api/v1/inbound", header: http.Header{"X-Phiguard-Org": {"org_a"}}, status: 200},
	} {
		path := c.path
		if path == "" {
			path = c.template
		}
		for name, id := range ids {
			path = strings.ReplaceAll(path, "{"+name+"}", id)
		}
		op := doc.Paths.Value(c.template).GetOperation(c.method)
		if op == nil {
			t.Errorf("%s %s: not in the description", c.method, c.template)
			continue
		}
		var body []byte
		contentType := "application/json"
		switch b := c.body.(type) {
		case nil:
		case string:
			body = []byte(b)
			if c.template == "/webhooks/sms/{org}" {
				contentType = "application/x-www-form-urlencoded"
			}
		default:
			body, _ = json.Marshal(b)
			for name, id := range ids {
				body = bytes.ReplaceAll(body, []byte("{"+name+"}"), []byte(id))
			}
		}
		if body != nil && !c.bad && c.header == nil {
			checkBody(t, doc, c.method+" "+path+" request", op.RequestBody.Value.Content, contentType, body, openapi3.VisitAsRequest())
		}
		req, _ := http.NewRequest(c.method, s.url+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		for k, v := range c.header {
			req.Header[k] = v
		}
		if contentType == "application/x-www-form-urlencoded" && c.header == nil {
			req.Header.Set(SignatureHeader, signature(testSecret, time.Now(), c.method, path, string(body)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, path, resp.StatusCode, c.status, answer)
			continue
		}
		ref := op.Responses.Status(resp.StatusCode)
		if ref == nil || ref.Value == nil {
			t.Errorf("%s %s: the description lists no %d answer", c.method, c.template, resp.StatusCode)
			continue
		}
		checkBody(t, doc, c.method+" "+path+" answer", ref.Value.Content, resp.Header.Get("Content-Type"), answer, openapi3.VisitAsResponse())
		if c.save != "" {
			var v struct{ ID string }
			json.Unmarshal(answer, &v)
			ids[c.save] = v.ID
		}
	}
}

// checkBody checks a JSON body against the schema content gives its type.
func checkBody(t *testing.T, doc *openapi3.T, what string, content openapi3.Content, contentType string, body []byte, side openapi3.SchemaValidationOption) {
	t.Helper()
	mt := content.Get(contentType)
	if mt == nil || mt.Schema == nil {
		t.Errorf("%s: the description has no %s schema", what, contentType)
		return
	}
	var v any
	if contentType == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			t.Errorf("%s: not a form: %v", what, err)
			return
		}
		fields := map[string]any{}
		for k, vs := range form {
			fields[k] = vs[0]
		}
		v = fields
	} else if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: not JSON: %v", what, err)
		return
	}
	if err := doc.ValidateSchemaJSON(mt.Schema.Value, v, openapi3.EnableJSONSchema2020(), side); err != nil {
		t.Errorf("%s: %s does not satisfy the description: %v", what, body, err)
	}
}

package openapi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/internal/golden"
	"github.com/phiguard/phiguard/policy"
)

const demoSpec = "../examples/messaging-app/app/openapi.yaml"

// TestDemoPoliciesCoverTheDemoApp: the demo policy and the reference
// policy hold no selector the demo app's description says can never
// match, and the demo policy covers every operation of the app but its
// description.
func TestDemoPoliciesCoverTheDemoApp(t *testing.T) {
	for _, cfg := range []string{"../configs/demo.yaml", "../configs/reference.yaml"} {
		t.Run(cfg, func(t *testing.T) {
			pol, err := policy.Load(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Check(context.Background(), pol, demoSpec, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			rep.WriteText(&b)
			if rep.Errors() > 0 {
				t.Errorf("%d error(s):\n%s", rep.Errors(), b.String())
			}
			if rep.Operations < 14 {
				t.Errorf("%d operations, want the app's 14 at least:\n%s", rep.Operations, b.String())
			}
			if strings.HasSuffix(cfg, "demo.yaml") {
				for _, f := range rep.Findings {
					if strings.Contains(f.Message, "no route covers it") && f.Location != "GET /openapi.yaml" {
						t.Errorf("the demo policy leaves an operation uncovered: %s", f)
					}
				}
			}
		})
	}
}

func TestSensitiveNames(t *testing.T) {
	set := newNameSet(DefaultSensitive)
	for name, want := range map[string]bool{
		"body": true, "Body": true, "BODY": true, "message": true, "notes": true, "caption": true,
		"patientName": true, "patient_name": true, "last_name": true, "lastName": true, "FirstName": true,
		"dob": true, "DOB": true, "dateOfBirth": true, "date-of-birth": true, "birth_date": true,
		"SSN": true, "patientSSN": true, "mrn": true, "MRN": true, "phone_number": true, "emailAddress": true,
		"home_address": true, "diagnoses": true, "noteText": true, "messageBody": true,
		"message_id": false, "MessageSid": false, "MessageStatus": false, "body_length": false, "content_type": false, "MediaContentType0": false,
		"body_url": false, "attachment_count": false, "username": false, "birthday": false, "id": false,
		"status": false, "created_at": false, "From": false, "NumMedia": false, "phones": false,
	} {
		if got := set.has(name); got != want {
			t.Errorf("%s: sensitive %v, want %v", name, got, want)
		}
	}
}

func TestWords(t *testing.T) {
	for name, want := range map[string]string{
		"patientName": "patient name", "HTTPServer": "http server", "MediaUrl0": "media url 0",
		"date_of_birth": "date of birth", "x-api-key": "x api key", "SSN": "ssn", "a1b": "a 1 b",
	} {
		if got := strings.Join(words(name), " "); got != want {
			t.Errorf("words(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestParseSensitive(t *testing.T) {
	for _, c := range []struct {
		arg     string
		want    []string // nil: DefaultSensitive
		plus    []string // added to DefaultSensitive
		wantErr bool
	}{
		{arg: ""},
		{arg: "zip,mrn", want: []string{"zip", "mrn"}},
		{arg: " zip , city ", want: []string{"zip", "city"}},
		{arg: "+zip,medicalHistory", plus: []string{"zip", "medicalHistory"}},
		{arg: "+", wantErr: true},
		{arg: "a,,b", wantErr: true},
		{arg: "a b", wantErr: true},
		{arg: "$.x", wantErr: true},
	} {
		got, err := ParseSensitive(c.arg)
		if (err != nil) != c.wantErr {
			t.Errorf("%q: err %v, want error %v", c.arg, err, c.wantErr)
			continue
		}
		if c.wantErr {
			continue
		}
		want := c.want
		switch {
		case c.plus != nil:
			want = append(append([]string{}, DefaultSensitive...), c.plus...)
		case want == nil:
			want = DefaultSensitive
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%q: got %v, want %v", c.arg, got, want)
		}
	}
}

func TestCheckUnreadableSpec(t *testing.T) {
	pol, err := policy.Load("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"testdata/none.yaml", "check_test.go"} {
		if _, err := Check(context.Background(), pol, spec, Options{}); err == nil || !strings.Contains(err.Error(), spec) {
			t.Errorf("Check of %s: err %v, want one naming the file", spec, err)
		}
	}
}

// TestCheckFollowsLocalRefsOnly: a $ref to a file beside the spec is
// followed; a $ref to a URL is an error, and nothing is fetched.
func TestCheckFollowsLocalRefsOnly(t *testing.T) {
	pol, err := policy.Parse("policy.yaml", []byte(`version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: jwks.json}}
keys: {keyring: keyring}
orgs: [{id: org_a}]
routes:
  - name: notes
    match: {methods: [POST], path: /notes}
    encrypt_request: ["$.text", "$.nope"]
`))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := func(ref string) string {
		return `openapi: 3.0.3
info: {title: refs, version: "1"}
paths:
  /notes:
    post:
      requestBody:
        content:
          application/json:
            schema: {$ref: "` + ref + `"}
      responses: {"201": {description: created}}
`
	}
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("schemas.yaml", "Note:\n  type: object\n  properties: {text: {type: string}}\n")
	rep, err := Check(context.Background(), pol, write("local.yaml", spec("schemas.yaml#/Note")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors() != 1 || !strings.Contains(rep.Findings[0].Message, `has no member "nope"; the schema has text`) {
		t.Errorf("local $ref: %+v", rep.Findings)
	}
	if _, err := Check(context.Background(), pol, write("remote.yaml", spec("http://127.0.0.1:1/schemas.yaml#/Note")), Options{}); err == nil {
		t.Error("a $ref to a URL was followed")
	}
}

func TestCheckRefusesSwagger2(t *testing.T) {
	pol, err := policy.Load("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(t.TempDir(), "swagger.yaml")
	os.WriteFile(spec, []byte("swagger: \"2.0\"\ninfo: {title: old, version: \"1\"}\npaths: {}\n"), 0o600)
	if _, err := Check(context.Background(), pol, spec, Options{}); err == nil || !strings.Contains(err.Error(), "OpenAPI 3.0 or 3.1") {
		t.Errorf("a Swagger 2.0 file: %v", err)
	}
}

// FuzzCheck: no description makes Check panic, and every report is in
// order, one well-formed line per finding.
func FuzzCheck(f *testing.F) {
	files, _ := filepath.Glob("testdata/check/*.txt")
	for _, file := range files {
		raw, _ := os.ReadFile(file)
		if parts := strings.SplitN(string(raw), golden.Separator, 3); len(parts) == 3 {
			f.Add(parts[1])
		}
	}
	pol, err := policy.Parse("policy.yaml", []byte(`version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: jwks.json}}
keys: {keyring: keyring}
orgs: [{id: org_a}]
routes:
  - name: any
    match: {path: "/**"}
    encrypt_request: ["$.a.b", "$..note", "$.list[*].x", "$.m.*", "form:Body", "form:MediaUrl*"]
    decrypt_response: ["$.data[*].body", "$..text"]
    readers: [agent]
`))
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, spec string) {
		path := filepath.Join(dir, "spec.yaml")
		if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Check(context.Background(), pol, path, Options{})
		if err != nil {
			return
		}
		var b strings.Builder
		rep.WriteText(&b)
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != len(rep.Findings)+1 {
			t.Fatalf("%d lines for %d findings:\n%s", len(lines), len(rep.Findings), b.String())
		}
		for i, f := range rep.Findings {
			if f.Location == "" || f.Message == "" || strings.Contains(f.Message, "\n") {
				t.Errorf("finding %d is malformed: %q", i, f.String())
			}
			if f.Severity == Error && !strings.HasPrefix(f.Message, "can never match: ") {
				t.Errorf("an error that is not a selector's: %q", f.String())
			}
		}
	})
}

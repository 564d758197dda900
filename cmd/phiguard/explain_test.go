package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const explainPolicy = "../../explain/testdata/policy.yaml"

const explainSample = `POST /api/v1/conversations/CANARY-c1/messages HTTP/1.1
Content-Type: application/json
Authorization: Bearer CANARY

{"body": "CANARY chest pain", "attachments": [{"caption": "CANARY"}], "meta": {"lang": "CANARY"}}
`

const explainAnswer = `{"body": "ephi:v1:org_a:0a0b0c0d:Q0FOQVJZMTI", "id": "CANARY"}`

func explainFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runExplain(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := cmdExplain(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestExplain(t *testing.T) {
	req := explainFile(t, "req.http", explainSample)
	resp := explainFile(t, "resp.json", explainAnswer)
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"file", "", []string{"-config", explainPolicy, "-request", req, "-role", "agent"},
			[]string{"route:     send-message (routes[1])", "    $.body                    string(17)  token", "    $.meta.lang               string(6)", "decision:  allowed"}},
		{"stdin request", strings.ReplaceAll(explainSample, "\n", "\r\n"), []string{"-config", explainPolicy, "-request", "-", "-role", "agent"},
			[]string{"route:     send-message (routes[1])", "$.attachments[0].caption  string(6)   token"}},
		{"stdin response", explainAnswer, []string{"-config", explainPolicy, "-request", req, "-response", "-", "-role", "viewer"},
			[]string{"answer: 200, application/json", "$.body  string(34)  mask: the caller's role may not read it"}},
		{"file response", "", []string{"-config", explainPolicy, "-request", req, "-response", resp, "-role", "agent"},
			[]string{"$.body  string(34)  plaintext"}},
		{"refused", "", []string{"-config", explainPolicy, "-request", req, "-org", "org_z"},
			[]string{"decision:  refused at the head: 403 forbidden", "organization is not enrolled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runExplain(t, tc.stdin, tc.args...)
			if err != nil {
				t.Fatalf("err %v, stderr %s", err, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out+errOut, "CANARY") {
				t.Errorf("output shows a value of the sample:\n%s%s", out, errOut)
			}
		})
	}
}

func TestExplainJSON(t *testing.T) {
	out, _, err := runExplain(t, explainSample, "-config", explainPolicy, "-request", "-", "-json", "-role", "agent")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Direction string `json:"direction"`
		Route     struct{ Name string }
		Decision  struct{ Allowed bool }
		Request   struct {
			Selectors []struct {
				Selector string
				Found    []struct{ Path, Type, Outcome string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-json output does not decode: %v\n%s", err, out)
	}
	if got.Direction != "ingress" || got.Route.Name != "send-message" || !got.Decision.Allowed || len(got.Request.Selectors) != 3 ||
		got.Request.Selectors[0].Found[0].Path != "$.body" || got.Request.Selectors[0].Found[0].Outcome != "token" {
		t.Errorf("got %+v", got)
	}
	if strings.Contains(out, "CANARY") {
		t.Errorf("-json shows a value of the sample:\n%s", out)
	}
}

// TestExplainExitCodes: 2 for a command line that cannot be understood,
// 1 for a file that cannot be read or a policy that does not load, and 0
// for every sample explained, refused or not.
func TestExplainExitCodes(t *testing.T) {
	req := explainFile(t, "req.http", explainSample)
	bad := explainFile(t, "bad.yaml", `version: 1
ingress: {upstream: "http://127.0.0.1:8080"}
identity: {jwt: {jwks: jwks.json}}
keys: {keyring: keyring}
orgs: [{id: org_a}]
routes:
  - name: posts
    match: {methods: [POST], path: /posts}
    encrypt_request: ["$.posts['{post_id}'].message"]
`)
	garbled := explainFile(t, "garbled.http", "this is not\nan HTTP request CANARY\n\n{}")
	missing := filepath.Join(t.TempDir(), "nope.http")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no config", []string{"-request", req}, 2, ""},
		{"no request", []string{"-config", explainPolicy}, 2, ""},
		{"both on stdin", []string{"-config", explainPolicy, "-request", "-", "-response", "-"}, 2, ""},
		{"bad peer", []string{"-config", explainPolicy, "-request", req, "-peer", "gateway"}, 2, ""},
		{"unknown flag", []string{"-config", explainPolicy, "-request", req, "-rol", "agent"}, 2, "Usage: phiguard explain"},
		{"extra argument", []string{"-config", explainPolicy, "-request", req, "more"}, 2, ""},
		{"missing request file", []string{"-config", explainPolicy, "-request", missing}, 1, ""},
		{"missing response file", []string{"-config", explainPolicy, "-request", req, "-response", missing}, 1, ""},
		{"missing policy", []string{"-config", missing, "-request", req}, 1, ""},
		{"policy problems", []string{"-config", bad, "-request", req}, 1, `write "$.posts.*.message"`},
		{"not a request", []string{"-config", explainPolicy, "-request", garbled}, 1, ""},
		{"refused request", []string{"-config", explainPolicy, "-request", req}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runExplain(t, "", tc.args...)
			if got := exitOf(err); got != tc.code {
				t.Errorf("exit %d, want %d (err %v, stderr %s)", got, tc.code, err, errOut)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
			if err != nil && strings.Contains(err.Error(), "CANARY") || strings.Contains(out+errOut, "CANARY") {
				t.Errorf("a value of the sample is shown: err %v, stdout %s, stderr %s", err, out, errOut)
			}
		})
	}
	if !strings.Contains(func() string { _, e, _ := runExplain(t, "", "-config", bad, "-request", req); return e }(), "1 problem(s) in "+bad) {
		t.Error("policy problems are not counted as check counts them")
	}
}

func exitOf(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}

// TestExplainCommand: the subcommand is reachable from run, answers -h
// on stdout, and is in the usage.
func TestExplainCommand(t *testing.T) {
	out, errOut, err := runCLI(t, "explain", "-h")
	if err != nil || !strings.Contains(out, "Usage: phiguard explain") || errOut != "" {
		t.Errorf("explain -h: err %v, stdout %q, stderr %q", err, out, errOut)
	}
	if _, _, err := runCLI(t, "explain"); exitCode(err) != 2 {
		t.Errorf("explain without flags: exit %d, want 2", exitCode(err))
	}
	if out, _, _ := runCLI(t, "help"); !strings.Contains(out, "phiguard explain -config FILE -request FILE|-") {
		t.Error("the usage does not list explain")
	}
	req := explainFile(t, "req.http", explainSample)
	out, _, err = runCLI(t, "explain", "-config", explainPolicy, "-request", req, "-role", "agent")
	if err != nil || !strings.Contains(out, "send-message") {
		t.Errorf("explain through run: %v\n%s", err, out)
	}
}

package explain

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phiguard/phiguard/policy"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/cases")

// canary is in every value, path parameter, query value and header value
// of the samples: no explanation may show it.
const canary = "CANARY"

// A case is a text file of sections, each opened by a line "-- NAME --":
// options (key value lines: org, user, role, amr, peer), policy (else
// testdata/policy.yaml), request, response (optional), canaries (more
// values, one a word, that the sample holds and no output may show), then
// text, the exact explanation, and optionally json, the exact -json
// output.
type testCase struct {
	names    []string
	sections map[string]string
}

func readCase(t *testing.T, file string) testCase {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := testCase{sections: map[string]string{}}
	name := ""
	var b strings.Builder
	flush := func() {
		if name != "" {
			c.names = append(c.names, name)
			c.sections[name] = b.String()
		}
		b.Reset()
	}
	for _, l := range strings.SplitAfter(string(raw), "\n") {
		if n, ok := strings.CutPrefix(strings.TrimRight(l, "\n"), "-- "); ok && strings.HasSuffix(n, " --") {
			flush()
			name = strings.TrimSuffix(n, " --")
			continue
		}
		b.WriteString(l)
	}
	flush()
	return c
}

func (c testCase) write(file string) error {
	var b strings.Builder
	for _, n := range c.names {
		b.WriteString("-- " + n + " --\n" + c.sections[n])
	}
	return os.WriteFile(file, []byte(b.String()), 0o644)
}

func (c testCase) options(t *testing.T) Options {
	t.Helper()
	o := Options{Now: func() time.Time { return time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) }}
	for _, l := range strings.Split(c.sections["options"], "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch k {
		case "":
		case "org":
			o.Org = v
		case "user":
			o.User = v
		case "role":
			o.Role = v
		case "amr":
			o.AMR = strings.Split(v, ",")
		case "peer":
			o.Peer = netip.MustParseAddr(v)
		default:
			t.Fatalf("unknown option %q", k)
		}
	}
	return o
}

func (c testCase) policy(t *testing.T) *policy.Policy {
	t.Helper()
	if src, ok := c.sections["policy"]; ok {
		p, err := policy.Parse("testdata/case-policy.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p, err := policy.Load("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func explainCase(t *testing.T, c testCase) *Explanation {
	t.Helper()
	var resp []byte
	if r, ok := c.sections["response"]; ok {
		resp = []byte(r)
	}
	e, err := Explain(context.Background(), c.policy(t), []byte(c.sections["request"]), resp, c.options(t))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func jsonOf(t *testing.T, e *Explanation) string {
	t.Helper()
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// TestCases runs every testdata/cases file and compares the explanation
// with the expected one, byte for byte (-update rewrites them). No
// output, text or JSON, holds the canary of the samples.
func TestCases(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			c := readCase(t, file)
			if !strings.Contains(c.sections["request"], canary) {
				t.Fatalf("the request sample carries no %s", canary)
			}
			e := explainCase(t, c)
			var text bytes.Buffer
			if err := e.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			js := jsonOf(t, e)
			canaries := append([]string{canary}, strings.Fields(c.sections["canaries"])...)
			for mode, out := range map[string]string{"text": text.String(), "json": js} {
				for _, v := range canaries {
					if strings.Contains(out, v) {
						t.Errorf("the %s output shows %q, a value of the sample:\n%s", mode, v, out)
					}
				}
			}
			if *update {
				c.sections["text"] = text.String()
				if _, ok := c.sections["json"]; ok {
					c.sections["json"] = js
				}
				if _, ok := c.sections["text"]; ok && !contains(c.names, "text") {
					c.names = append(c.names, "text")
				}
				if err := c.write(file); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got, want := text.String(), c.sections["text"]; got != want {
				t.Errorf("text differs\n got:\n%s\nwant:\n%s", got, want)
			}
			if want, ok := c.sections["json"]; ok && js != want {
				t.Errorf("json differs\n got:\n%s\nwant:\n%s", js, want)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/refusal"
)

const patPolicy = `version: 1
ingress: {upstream: "http://app.invalid"}
identity: {jwt: {jwks: unused.json}, pats: {prefixes: [glpat-, mmpat_]}}
keys: {keyring: unused}
orgs: [{id: org_a, hipaa: true}, {id: org_b}]
routes:
  - name: messages
    match: {path: "/m"}
  - name: hook
    match: {path: "/hooks/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body"]
`

// TestPATRefused: a personal access token in any of its forms and
// casings is refused (403 pat_disabled) for a HIPAA org and where the org
// cannot be told, audited with where it was, never the token, and with
// the user and org when a verified token names them; a non-HIPAA org may
// use one.
func TestPATRefused(t *testing.T) {
	r := newRigWith(t, patPolicy, "org_a")
	r.ver.extra = map[string]string{"Bearer bob": "org_b"}
	r.ver.pats = map[string]string{"Bearer pat-alice": "org_a", "Bearer pat-bob": "org_b"}
	const secret = "glpat-SECRET1234"
	for _, c := range []struct {
		name, path, auth, query string
		hdr                     map[string]string
		refused                 bool
		user, org, where        string
	}{
		{"JWT that says it is a PAT", "/m", "Bearer pat-alice", "", nil, true, "pat-alice", "org_a", "token_type claim"},
		{"another org's JWT PAT", "/m", "Bearer pat-bob", "", nil, false, "", "", ""},
		{"opaque PAT as bearer", "/m", "Bearer " + secret, "", nil, true, "", "", "Authorization header"},
		{"opaque PAT, other case and spacing", "/m", "  token   GLPAT-abc  ", "", nil, true, "", "", "Authorization header"},
		{"X-Api-Key", "/m", "Bearer alice", "", map[string]string{"X-Api-Key": "k1"}, true, "alice", "org_a", "X-Api-Key header"},
		{"x_api_key spelled with underscores", "/m", "Bearer alice", "", map[string]string{"x_api_key": "k1"}, true, "alice", "org_a", "X-Api-Key header"},
		{"PRIVATE-TOKEN", "/m", "Bearer alice", "", map[string]string{"PRIVATE-TOKEN": "k1"}, true, "alice", "org_a", "Private-Token header"},
		{"empty key header", "/m", "Bearer alice", "", map[string]string{"X-Api-Key": "  "}, false, "", "", ""},
		{"access_token query", "/m", "Bearer alice", "access_token=abc", nil, true, "alice", "org_a", "access_token query parameter"},
		{"API_KEY query", "/m", "Bearer alice", "API_KEY=abc", nil, true, "alice", "org_a", "api_key query parameter"},
		{"prefix in any query value", "/m", "Bearer alice", "x=mmpat_zzz", nil, true, "alice", "org_a", "a query parameter"},
		{"non-HIPAA org's key", "/m", "Bearer bob", "", map[string]string{"X-Api-Key": "k1"}, false, "", "", ""},
		{"webhook of a HIPAA org by path", "/hooks/org_a", "", "api_key=k", nil, true, "", "org_a", "api_key query parameter"},
		{"webhook of another org", "/hooks/org_b", "", "api_key=k", nil, false, "", "", ""},
		{"no PAT", "/m", "Bearer alice", "q=1", nil, false, "", "", ""},
	} {
		req := request("GET", c.path, "")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		for k, v := range c.hdr {
			req.Header[k] = []string{v}
		}
		req.Query = c.query
		x, err := r.eng.Begin(context.Background(), req)
		var re *refusal.Error
		isPAT := errors.As(err, &re) && re.ClientCode() == "pat_disabled"
		if isPAT != c.refused {
			t.Errorf("%s: %v, refused as PAT %v", c.name, err, c.refused)
			x.Close()
			continue
		}
		if !c.refused {
			x.Close()
			continue
		}
		x.Refuse(context.Background(), err)
		x.Close()
		rec := r.aud.last(t)
		if rec.Status != 403 || rec.Decision != audit.DecisionDeny || rec.User != c.user || rec.Org != c.org ||
			!strings.Contains(rec.Reason, c.where) || strings.Contains(rec.Reason, "SECRET") || strings.Contains(rec.Reason, "abc") {
			t.Errorf("%s: record %+v", c.name, rec)
		}
	}
}

package engine

import (
	"strings"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

// TestSignedWebhookNeedsItsSecrets: a policy whose webhook secrets are
// not in the environment, or are shorter than 16 bytes, does not start.
func TestSignedWebhookNeedsItsSecrets(t *testing.T) {
	const pol = `version: 1
ingress: {upstream: "http://app.invalid"}
keys: {keyring: unused}
orgs: [{id: org_a}]
routes:
  - name: hook
    match: {methods: [POST], path: "/hooks/{org}"}
    auth: none
    org_from: {path_param: org}
    encrypt_request: ["form:Body"]
    verify_signature: {scheme: twilio, secret_env: CARRIER_TOKEN, public_url: "https://hooks.example.com", resign_secret_env: APP_SECRET}
`
	for _, env := range [][2]string{{"", "shared-with-the-app-0123456789"}, {"short", "shared-with-the-app-0123456789"}, {"carrier-auth-token-0123456789ab", ""}} {
		t.Setenv("CARRIER_TOKEN", env[0])
		t.Setenv("APP_SECRET", env[1])
		r := newRigWith(t, strings.Replace(pol, "verify_signature", "# verify_signature", 1), "org_a")
		p := mustParse(t, pol)
		if _, err := New(Options{Policy: p, Keys: r.keys, Auditor: r.aud}); err == nil || !strings.Contains(err.Error(), "verify_signature") {
			t.Errorf("secrets %q: %v", env, err)
		}
	}
}

func mustParse(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

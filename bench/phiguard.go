package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

const (
	benchOrg    = "org_bench"
	benchUsers  = 100
	jwtIssuer   = "https://auth.bench.example"
	jwtAudience = "messaging-app"
)

// buildPhiguard compiles ./cmd/phiguard into dir.
func buildPhiguard(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "phiguard")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/phiguard/phiguard/cmd/phiguard")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/phiguard: %v\n%s", err, out)
	}
	return bin, nil
}

// phiguardSetup is what phiguard needs in the temp dir.
type phiguardSetup struct {
	policy    string
	listen    string
	adminAddr string // "" when this phiguard has no admin listener
}

// preparePhiguard writes a keyring (with phiguard's own keys commands), a
// JWKS and the policy into dir, and returns bearer tokens for benchUsers
// users of benchOrg with role agent, valid for an hour.
func preparePhiguard(ctx context.Context, bin, dir, upstreamURL string, conns int, pprof bool) (phiguardSetup, []string, error) {
	keyring := filepath.Join(dir, "keyring")
	for _, args := range [][]string{
		{"keys", "init", "-keyring", keyring},
		{"keys", "create", "-keyring", keyring, "-org", benchOrg},
	} {
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			return phiguardSetup{}, nil, fmt.Errorf("phiguard %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tokens, err := writeIssuer(dir)
	if err != nil {
		return phiguardSetup{}, nil, fmt.Errorf("jwt issuer: %w", err)
	}
	s := phiguardSetup{policy: filepath.Join(dir, "policy.yaml")}
	if s.listen, err = freeAddr(); err != nil {
		return s, nil, err
	}
	if s.adminAddr, err = freeAddr(); err != nil {
		return s, nil, err
	}
	if err := os.WriteFile(s.policy, policyYAML(s.listen, upstreamURL, s.adminAddr, conns, pprof), 0o600); err != nil {
		return s, nil, err
	}
	// A phiguard without the admin listener refuses the unknown key:
	// measure it without allocation counts rather than not at all.
	out, err := exec.CommandContext(ctx, bin, "check", "-config", s.policy).CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("admin")) {
		s.adminAddr = ""
		if err := os.WriteFile(s.policy, policyYAML(s.listen, upstreamURL, "", conns, false), 0o600); err != nil {
			return s, nil, err
		}
		out, err = exec.CommandContext(ctx, bin, "check", "-config", s.policy).CombinedOutput()
	}
	if err != nil {
		return s, nil, fmt.Errorf("phiguard check: %v\n%s", err, out)
	}
	return s, tokens, nil
}

// policyYAML is the benchmark policy: one passthrough route that still
// needs a caller, one encrypting and two decrypting routes.
func policyYAML(listen, upstreamURL, adminAddr string, conns int, pprof bool) []byte {
	sel := make([]string, len(phiFields))
	for i, f := range phiFields {
		sel[i] = `"$.` + f + `"`
	}
	fields := "[" + strings.Join(sel, ", ") + "]"
	var b bytes.Buffer
	fmt.Fprintf(&b, `version: 1
ingress:
  listen: %q
  upstream: %q
`, listen, upstreamURL)
	if conns*2 > 256 { // the default max_concurrent_requests
		fmt.Fprintf(&b, "  max_concurrent_requests: %d\n", conns*2)
	}
	fmt.Fprintf(&b, `identity:
  jwt: {jwks: jwks.json, issuer: %q, audience: %q}
  claims: {org: org_id, user: sub, role: role}
keys: {provider: local, keyring: keyring}
audit:
  sinks: [{type: file, path: audit.jsonl}]
  fail_closed: true
default: deny
orgs: [{id: %s}]
routes:
  - name: passthrough
    match: {methods: [GET], path: "/api/v1/conversations/{id}"}
  - name: send-message
    match: {methods: [POST], path: "/api/v1/conversations/{id}/messages"}
    encrypt_request: %s
  - name: list-messages
    match: {methods: [GET], path: "/api/v1/conversations/{id}/messages"}
    decrypt_response: ["$.data[*].body"]
    readers: [agent]
  - name: get-message
    match: {methods: [GET], path: "/api/v1/conversations/{id}/messages/{mid}"}
    decrypt_response: %s
    readers: [agent]
`, jwtIssuer, jwtAudience, benchOrg, fields, fields)
	if adminAddr != "" {
		fmt.Fprintf(&b, "admin: {listen: %q, pprof: %t}\n", adminAddr, pprof)
	}
	return b.Bytes()
}

// writeIssuer makes an ES256 issuer with Tink: dir/jwks.json, and one
// signed token per user.
func writeIssuer(dir string) ([]string, error) {
	kh, err := keyset.NewHandle(jwt.ES256Template())
	if err != nil {
		return nil, err
	}
	signer, err := jwt.NewSigner(kh)
	if err != nil {
		return nil, err
	}
	pub, err := kh.Public()
	if err != nil {
		return nil, err
	}
	jwks, err := jwt.JWKSetFromPublicKeysetHandle(pub)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o644); err != nil {
		return nil, err
	}
	iss, aud := jwtIssuer, jwtAudience
	now := time.Now()
	exp := now.Add(time.Hour)
	tokens := make([]string, benchUsers)
	for i := range tokens {
		sub := fmt.Sprintf("user-%03d", i)
		raw, err := jwt.NewRawJWT(&jwt.RawJWTOptions{Issuer: &iss, Audience: &aud, Subject: &sub, IssuedAt: &now, ExpiresAt: &exp,
			CustomClaims: map[string]any{"org_id": benchOrg, "role": "agent"}})
		if err != nil {
			return nil, err
		}
		if tokens[i], err = signer.SignAndEncode(raw); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

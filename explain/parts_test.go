package explain

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/phiguard/phiguard/keys"
)

// TestStandInKeys: placeholders are well-formed tokens of the org asked
// for that hold nothing of the plaintext, and only a well-formed token of
// the org asked for opens.
func TestStandInKeys(t *testing.T) {
	if got, _ := base64.RawURLEncoding.DecodeString(placeholderBody); string(got) != "phiguard explain placeholder" {
		t.Errorf("placeholderBody decodes to %q", got)
	}
	ctx := context.Background()
	var k standInKeys
	secret := []byte(`"CANARY chest pain"`)
	for name, seal := range map[string]func() ([]byte, error){
		"random": func() ([]byte, error) { return k.AppendEncrypt(ctx, nil, "org_a", secret) },
		"exact":  func() ([]byte, error) { return k.AppendEncryptExact(ctx, nil, "org_a", secret) },
	} {
		tok, err := seal()
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := keys.ParseToken(string(tok))
		if err != nil || parsed.Org != "org_a" || parsed.Exact != (name == "exact") {
			t.Errorf("%s: %s parses as %+v, %v", name, tok, parsed, err)
		}
		if bytes.Contains(tok, []byte("CANARY")) {
			t.Errorf("%s: the token carries the plaintext", name)
		}
		if pt, err := k.Decrypt(ctx, "org_a", tok); err != nil || bytes.Contains(pt, []byte("CANARY")) {
			t.Errorf("%s: opens to %q, %v", name, pt, err)
		}
		if _, err := k.Decrypt(ctx, "org_b", tok); !errors.Is(err, keys.ErrOrgMismatch) {
			t.Errorf("%s: opened for another org: %v", name, err)
		}
	}
	if _, err := k.Decrypt(ctx, "org_a", []byte("CANARY")); !errors.Is(err, keys.ErrNotToken) {
		t.Errorf("a non-token: %v", err)
	}
	w, _ := k.AppendIndexWord(nil, "org_a", []byte("chest"), 8)
	if !keys.IsIndexWord(w, 8) {
		t.Errorf("%s is not an index word", w)
	}
}

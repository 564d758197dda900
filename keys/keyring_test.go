package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
)

// newTestKeyring creates a keyring folder with a master key and the given orgs.
func newTestKeyring(t testing.TB, orgs ...string) (string, *Keyring) {
	t.Helper()
	dir := t.TempDir()
	if err := InitLocal(dir); err != nil {
		t.Fatal(err)
	}
	p, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, org := range orgs {
		if _, err := CreateOrg(ctx, dir, org, p); err != nil {
			t.Fatal(err)
		}
	}
	k, err := Open(ctx, dir, p)
	if err != nil {
		t.Fatal(err)
	}
	return dir, k
}

func TestRoundTripEveryJSONType(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a")
	for _, v := range []string{
		`"hello"`, `""`, `"caf\u00e9 \"quoted\""`, `12345678901234567890.000100e-3`, `-0`, `true`, `false`, `null`,
		`{"a":[1,{"b":null}],"c":"d"}`, `[]`, `{}`, `[ 1 , 2 ]`,
	} {
		tok, err := k.Encrypt(ctx, "org_a", []byte(v))
		if err != nil {
			t.Fatalf("Encrypt(%s): %v", v, err)
		}
		if strings.Contains(tok, strings.Trim(v, `"`)) && len(v) > 4 {
			t.Errorf("token %q contains the plaintext", tok)
		}
		got, err := k.Decrypt(ctx, "org_a", []byte(tok))
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if string(got) != v {
			t.Errorf("round trip: got %s, want %s", got, v)
		}
	}
}

func TestTokenLayout(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a")
	tok, err := k.Encrypt(ctx, "org_a", []byte(`"x"`))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ":")
	if len(parts) != 5 || parts[0] != "ephi" || parts[1] != "v1" || parts[2] != "org_a" || len(parts[3]) != 8 {
		t.Fatalf("token %q does not have the layout ephi:v1:<org>:<key id>:<ciphertext>", tok)
	}
	p, err := ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != tok {
		t.Errorf("ParseToken(%q).String() = %q", tok, p.String())
	}
}

func TestTamperingAnyByteFails(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a")
	tok, err := k.Encrypt(ctx, "org_a", []byte(`{"body":"patient has a rash"}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(tok); i++ {
		for _, delta := range []byte{1, 0x20} {
			b := []byte(tok)
			b[i] ^= delta
			if string(b) == tok {
				continue
			}
			if pt, err := k.Decrypt(ctx, "org_a", b); err == nil {
				t.Fatalf("byte %d ^ %#x: tampered token decrypted to %q", i, delta, pt)
			}
		}
	}
	for _, cut := range []int{1, 5, len(tok) / 2} {
		if _, err := k.Decrypt(ctx, "org_a", []byte(tok[:len(tok)-cut])); err == nil {
			t.Errorf("token truncated by %d bytes decrypted", cut)
		}
	}
	if _, err := k.Decrypt(ctx, "org_a", []byte(tok+"A")); err == nil {
		t.Error("token with an extra byte decrypted")
	}
}

func TestOrgSwapFails(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a", "org_b")
	tok, err := k.Encrypt(ctx, "org_a", []byte(`"secret"`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Decrypt(ctx, "org_b", []byte(tok)); !errors.Is(err, ErrOrgMismatch) {
		t.Errorf("org_b opening org_a's token: got %v, want ErrOrgMismatch", err)
	}
	swapped := strings.Replace(tok, ":org_a:", ":org_b:", 1)
	if _, err := k.Decrypt(ctx, "org_b", []byte(swapped)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("token relabelled to org_b: got %v, want ErrDecrypt", err)
	}
}

// The associated data alone must stop a relabelled token, even where two
// orgs happen to hold the same key material.
func TestAssociatedDataBindsOrg(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a")
	k.orgs["org_b"] = orgKeys{aead: k.orgs["org_a"].aead, ad: associatedData("org_b")}
	tok, err := k.Encrypt(ctx, "org_a", []byte(`"secret"`))
	if err != nil {
		t.Fatal(err)
	}
	swapped := strings.Replace(tok, ":org_a:", ":org_b:", 1)
	if pt, err := k.Decrypt(ctx, "org_b", []byte(swapped)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("relabelled token under shared key: got %q, %v; want ErrDecrypt", pt, err)
	}
}

func TestUnknownOrg(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a")
	if _, err := k.Encrypt(ctx, "org_z", []byte(`1`)); !errors.Is(err, ErrUnknownOrg) {
		t.Errorf("Encrypt for unknown org: got %v, want ErrUnknownOrg", err)
	}
	tok, _ := k.Encrypt(ctx, "org_a", []byte(`1`))
	relabelled := strings.Replace(tok, ":org_a:", ":org_z:", 1)
	if _, err := k.Decrypt(ctx, "org_z", []byte(relabelled)); !errors.Is(err, ErrUnknownOrg) {
		t.Errorf("Decrypt for unknown org: got %v, want ErrUnknownOrg", err)
	}
}

func TestWrappedKeysetBoundToOrg(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	raw, err := os.ReadFile(orgPath(dir, "org_a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orgPath(dir, "org_b"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dir, p); err == nil || !strings.Contains(err.Error(), "org_b") {
		t.Errorf("Open with org_a's keyset copied to org_b: got %v, want an unwrap error naming org_b", err)
	}
}

func TestWrappedKeysetNeedsItsMasterKey(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	other := t.TempDir()
	if err := InitLocal(other); err != nil {
		t.Fatal(err)
	}
	p, err := OpenLocal(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dir, p); err == nil {
		t.Error("keyring opened with another master key")
	}
}

func TestKeyringFilesAreNotPlaintext(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	raw, err := os.ReadFile(orgPath(dir, "org_a"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("encryptedKeyset")) || bytes.Contains(raw, []byte("keyData")) {
		t.Errorf("org keyset file is not a wrapped keyset:\n%s", raw)
	}
	for _, name := range []string{MasterKeyFile, filepath.Join(orgsDir, "org_a.json")} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, fi.Mode().Perm())
		}
	}
}

func TestRefusesToReplaceKeys(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	if err := InitLocal(dir); err == nil {
		t.Error("InitLocal replaced an existing master key")
	}
	p, _ := OpenLocal(dir)
	if _, err := CreateOrg(context.Background(), dir, "org_a", p); err == nil {
		t.Error("CreateOrg replaced an existing org keyset")
	}
	if _, err := CreateOrg(context.Background(), dir, "../evil", p); err == nil {
		t.Error("CreateOrg accepted an org id with a path separator")
	}
}

func TestMasterKeyPermissions(t *testing.T) {
	dir := t.TempDir()
	if err := InitLocal(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, MasterKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocal(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("OpenLocal with a world-readable master key: got %v", err)
	}
	if _, err := OpenLocal(t.TempDir()); err == nil || !strings.Contains(err.Error(), "keys init") {
		t.Errorf("OpenLocal without a master key: got %v", err)
	}
}

func TestOpenWithoutOrgsFolder(t *testing.T) {
	dir := t.TempDir()
	if err := InitLocal(dir); err != nil {
		t.Fatal(err)
	}
	p, _ := OpenLocal(dir)
	if _, err := Open(context.Background(), dir, p); err == nil || !strings.Contains(err.Error(), "keys create") {
		t.Errorf("Open without orgs: got %v", err)
	}
}

func TestParseTokenRejects(t *testing.T) {
	for _, s := range []string{
		"", "hello", "ephi:", "ephi:v1", "ephi:v1:org_a:0000000a", "ephi:v2:org_a:0000000a:AAAA",
		"ephi:v1:org:a:0000000a:AAAA", "ephi:v1:org_a:0000000A:AAAA", "ephi:v1:org_a:000000:AAAA",
		"ephi:v1:org_a:zzzzzzzz:AAAA", "ephi:v1:org_a:0000000a:", "ephi:v1:org_a:0000000a:AA==",
		"ephi:v1:org_a:0000000a:A+/A", "ephi:v1::0000000a:AAAA",
		// Bytes outside the alphabet, line breaks (which a lenient decoder
		// skips) and non-canonical trailing bits.
		"ephi:v1:org_a:0000000a:AA\nAA", "ephi:v1:org_a:0000000a:AA\rAA", "ephi:v1:org_a:0000000a:AAAA\r\n",
		"ephi:v1:org_a:0000000a:AA AA", "ephi:v1:org_a:0000000a:AA\tA", "ephi:v1:org_a:0000000a:AB",
		"ephi:v1:org_a:0000000a:AAAAA", "ephi:v1:org_a:0000000a:AA.A",
	} {
		if _, err := ParseToken(s); !errors.Is(err, ErrNotToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrNotToken", s, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("ephi:v1:org_a:0102abcd:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
	f.Add("ephi:v1:org_a:0000000a:")
	f.Add("not a token")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if tok.String() != s {
			t.Errorf("ParseToken(%q).String() = %q: parsing is not one-to-one", s, tok.String())
		}
	})
}

// BenchmarkDecrypt opens a token of a 200-byte message.
func BenchmarkDecrypt(b *testing.B) {
	ctx := b.Context()
	_, k := newTestKeyring(b, "org_a")
	tok, err := k.Encrypt(ctx, "org_a", []byte(`"`+strings.Repeat("m", 198)+`"`))
	if err != nil {
		b.Fatal(err)
	}
	raw := []byte(tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Decrypt(ctx, "org_a", raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendEncrypt seals a 200-byte message into a reused buffer, as
// the body transformer does.
func BenchmarkAppendEncrypt(b *testing.B) {
	ctx := b.Context()
	_, k := newTestKeyring(b, "org_a")
	pt := []byte(`"` + strings.Repeat("m", 198) + `"`)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = k.AppendEncrypt(ctx, buf[:0], "org_a", pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	ctx := b.Context()
	_, k := newTestKeyring(b, "org_a")
	pt := []byte(`"Your lab results are ready; call us about the biopsy."`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Encrypt(ctx, "org_a", pt); err != nil {
			b.Fatal(err)
		}
	}
}

// A keyset the token layout cannot carry (no Tink key-id prefix, or not
// AES-GCM) is refused at load, not discovered on the first request.
func TestOpenRefusesForeignKeysets(t *testing.T) {
	for name, tmpl := range map[string]*tinkpb.KeyTemplate{
		"raw prefix": aead.AES256GCMNoPrefixKeyTemplate(),
		"chacha":     aead.ChaCha20Poly1305KeyTemplate(),
	} {
		t.Run(name, func(t *testing.T) {
			dir, _ := newTestKeyring(t, "org_a")
			p, _ := OpenLocal(dir)
			h, err := keyset.NewHandle(tmpl)
			if err != nil {
				t.Fatal(err)
			}
			data, err := wrapOrgFile(context.Background(), p, Wrap{Provider: ProviderLocal}, "org_x", h, nil, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dir, orgsDir), 0o700)
			if err := os.WriteFile(orgPath(dir, "org_x"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(context.Background(), dir, p); err == nil || !strings.Contains(err.Error(), "org_x") {
				t.Errorf("Open accepted a %s keyset: %v", name, err)
			}
		})
	}
}

func TestOpenRefusesBadFileNames(t *testing.T) {
	dir, _ := newTestKeyring(t, "org_a")
	os.WriteFile(filepath.Join(dir, orgsDir, "_bad.json"), []byte("{}"), 0o600)
	p, _ := OpenLocal(dir)
	if _, err := Open(context.Background(), dir, p); err == nil {
		t.Error("Open accepted a keyset file whose name is not an org id")
	}
}

// TestAppendEncrypt: the token is appended after what dst holds, and opens.
func TestAppendEncrypt(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a")
	out, err := k.AppendEncrypt(ctx, []byte(`{"body":"`), "org_a", []byte(`"hi"`))
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := bytes.CutPrefix(out, []byte(`{"body":"`))
	if !ok {
		t.Fatalf("AppendEncrypt lost the buffer's start: %q", out)
	}
	if pt, err := k.Decrypt(ctx, "org_a", tok); err != nil || string(pt) != `"hi"` {
		t.Errorf("Decrypt = %q, %v; want \"hi\"", pt, err)
	}
	if out, err := k.AppendEncrypt(ctx, []byte("x"), "org_z", []byte(`1`)); !errors.Is(err, ErrUnknownOrg) || string(out) != "x" {
		t.Errorf("unknown org: got %q, %v; want the buffer unchanged and ErrUnknownOrg", out, err)
	}
}

// TestDecryptResultIsItsOwn: the plaintext Decrypt returns shares no memory
// with the pooled buffer the ciphertext is decoded into, so opening other
// tokens (on any goroutine) never changes it.
func TestDecryptResultIsItsOwn(t *testing.T) {
	ctx := t.Context()
	_, k := newTestKeyring(t, "org_a")
	first, _ := k.Encrypt(ctx, "org_a", []byte(`"first patient note"`))
	other, _ := k.Encrypt(ctx, "org_a", []byte(`"another, different value"`))
	pt, err := k.Decrypt(ctx, "org_a", []byte(first))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := k.Decrypt(ctx, "org_a", []byte(other)); err != nil {
			t.Fatal(err)
		}
	}
	if string(pt) != `"first patient note"` {
		t.Fatalf("an earlier plaintext changed to %q", pt)
	}
}

package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// TestVersion1FilesStillOpen: a keyset file written before the format
// named its wrapping (Tink's encrypted keyset alone, the org in the
// associated data) opens, and its tokens decrypt; its keys' creation is
// unknown.
func TestVersion1FilesStillOpen(t *testing.T) {
	dir, p := newMasterOnly(t)
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewJSONWriter(&buf), p.master, keysetAssociatedData("org_v1")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, orgsDir), 0o700)
	if err := os.WriteFile(orgPath(dir, "org_v1"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Open(context.Background(), dir, p)
	if err != nil {
		t.Fatalf("a version 1 file: %v", err)
	}
	info, ok := k.Info("org_v1")
	if !ok || info.Wrap != (Wrap{Provider: ProviderLocal}) || len(info.Keys) != 1 || !info.Keys[0].Created.IsZero() || info.Keys[0].ID != info.Primary {
		t.Errorf("info %+v", info)
	}
	ctx := context.Background()
	tok, err := k.Encrypt(ctx, "org_v1", []byte(`"x"`))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k.Decrypt(ctx, "org_v1", []byte(tok)); err != nil || string(pt) != `"x"` {
		t.Errorf("round trip: %q %v", pt, err)
	}
}

// TestMetadataIsBound: editing what a keyset file says of its keys (a
// creation date, the wrapping) makes the keyset refuse to unwrap.
func TestMetadataIsBound(t *testing.T) {
	for name, edit := range map[string]func(f *orgFile){
		"created moved": func(f *orgFile) { f.Keys[0].Created = f.Keys[0].Created.Add(-1000 * time.Hour) },
		"key added":     func(f *orgFile) { f.Keys = append(f.Keys, KeyInfo{ID: 7}) },
		"org renamed":   func(f *orgFile) { f.Org = "org_b" },
	} {
		t.Run(name, func(t *testing.T) {
			dir, _ := newTestKeyring(t, "org_a")
			raw, err := os.ReadFile(orgPath(dir, "org_a"))
			if err != nil {
				t.Fatal(err)
			}
			var f orgFile
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			edit(&f)
			out, _ := json.Marshal(f)
			target := "org_a"
			if f.Org != "org_a" {
				os.Remove(orgPath(dir, "org_a"))
				target = f.Org
			}
			os.WriteFile(orgPath(dir, target), out, 0o600)
			p, _ := OpenLocal(dir)
			if _, err := Open(context.Background(), dir, p); err == nil {
				t.Error("an edited keyset file opened")
			}
		})
	}
}

// TestOrgFileRejects: files that are not keyset files of this org, or of a
// newer format, are refused with a reason.
func TestOrgFileRejects(t *testing.T) {
	for name, tc := range map[string]struct{ raw, want string }{
		"not json":         {`{`, "keyset file"},
		"newer format":     {`{"phiguard_keyset":3,"org":"org_a","wrap":{"provider":"local"},"keys":[],"keyset":{}}`, "format 3"},
		"other org":        {`{"phiguard_keyset":2,"org":"org_b","wrap":{"provider":"local"},"keys":[],"keyset":{}}`, `names org "org_b"`},
		"no provider":      {`{"phiguard_keyset":2,"org":"org_a","wrap":{},"keys":[],"keyset":{}}`, "no provider"},
		"unknown field":    {`{"phiguard_keyset":2,"org":"org_a","wrap":{"provider":"local"},"keys":[],"keyset":{},"x":1}`, "unknown field"},
		"unknown provider": {`{"phiguard_keyset":2,"org":"org_a","wrap":{"provider":"vault"},"keys":[],"keyset":{}}`, "no provider configured here"},
	} {
		t.Run(name, func(t *testing.T) {
			dir, p := newMasterOnly(t)
			os.MkdirAll(filepath.Join(dir, orgsDir), 0o700)
			os.WriteFile(orgPath(dir, "org_a"), []byte(tc.raw), 0o600)
			_, err := Open(context.Background(), dir, Providers{p})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestMasterKeyApart: the master key may live outside the keyring folder,
// or in PHIGUARD_MASTER_KEY, and only it opens the keyring.
func TestMasterKeyApart(t *testing.T) {
	dir := t.TempDir()
	masterPath := filepath.Join(t.TempDir(), "master.json")
	if err := InitLocalFile(masterPath); err != nil {
		t.Fatal(err)
	}
	p, err := OpenLocalFile(masterPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := CreateOrg(ctx, dir, "org_a", p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, MasterKeyFile)); !os.IsNotExist(err) {
		t.Errorf("a master key is in the keyring folder: %v", err)
	}
	raw, _ := os.ReadFile(masterPath)
	t.Setenv(MasterKeyEnv, string(raw))
	env, ok, err := OpenLocalEnv()
	if !ok || err != nil {
		t.Fatalf("from the environment: %v %v", ok, err)
	}
	if _, err := Open(ctx, dir, env); err != nil {
		t.Errorf("the keyring with the master key from the environment: %v", err)
	}
	t.Setenv(MasterKeyEnv, "not a keyset")
	if _, ok, err := OpenLocalEnv(); !ok || err == nil || !strings.Contains(err.Error(), "$"+MasterKeyEnv) {
		t.Errorf("a bad master key in the environment: %v %v", ok, err)
	}
}

// newMasterOnly is a keyring folder with a master key and no org.
func newMasterOnly(t *testing.T) (string, *LocalProvider) {
	t.Helper()
	dir := t.TempDir()
	if err := InitLocal(dir); err != nil {
		t.Fatal(err)
	}
	p, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, p
}

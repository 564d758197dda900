package keys

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// MasterKeyFile is the local master key's file name inside a keyring folder.
const MasterKeyFile = "master.json"

// LocalProvider wraps every organization's keyset with one master AEAD key
// read from a Tink keyset file. It suits development and single-node
// installs; production uses a KMS provider.
type LocalProvider struct {
	master tink.AEAD
}

var _ Provider = (*LocalProvider)(nil)

// InitLocal creates a new master key in dir. It refuses to replace one.
func InitLocal(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create keyring folder: %w", err)
	}
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("generate master key: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return fmt.Errorf("encode master key: %w", err)
	}
	return writeNew(filepath.Join(dir, MasterKeyFile), buf.Bytes())
}

// OpenLocal reads the master key of the keyring in dir. The file must be
// readable by its owner only, as an SSH private key must.
func OpenLocal(dir string) (*LocalProvider, error) {
	path := filepath.Join(dir, MasterKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w (run 'phiguard keys init -keyring %s')", err, dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key %s is readable by group or others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	return &LocalProvider{master: a}, nil
}

// KeyEncryptionAEAD returns the master key; the org is bound by the caller
// through associated data.
func (p *LocalProvider) KeyEncryptionAEAD(context.Context, string) (tink.AEAD, error) {
	return p.master, nil
}

package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// MasterKeyFile is the local master key's file name inside a keyring
// folder, where `keys init` puts it unless told otherwise.
const MasterKeyFile = "master.json"

// MasterKeyEnv, when set, holds the local master key (the content of its
// file): it then need not be on disk at all.
const MasterKeyEnv = "PHIGUARD_MASTER_KEY"

// LocalProvider wraps every organization's keyset with one master AEAD key
// read from a Tink keyset. It suits development and single-node installs,
// and protects a copy of the keyring folder that does not include the
// master key; it does not protect against anyone who can read both (on
// the same disk, in the same Secret), nor can one org be revoked apart
// from the others. Production uses the aws-kms provider.
type LocalProvider struct {
	master tink.AEAD
	id     string // "master:" and the hex id of the master key's primary
}

var _ Provider = (*LocalProvider)(nil)

// InitLocal creates a new master key in dir. It refuses to replace one.
func InitLocal(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create keyring folder: %w", err)
	}
	return InitLocalFile(filepath.Join(dir, MasterKeyFile))
}

// InitLocalFile creates a new master key in the file at path, readable by
// its owner only. It refuses to replace one.
func InitLocalFile(path string) error {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("generate master key: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return fmt.Errorf("encode master key: %w", err)
	}
	return writeNew(path, buf.Bytes())
}

// OpenLocal reads the master key of the keyring in dir.
func OpenLocal(dir string) (*LocalProvider, error) {
	p, err := OpenLocalFile(filepath.Join(dir, MasterKeyFile))
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (run 'phiguard keys init -keyring %s')", err, dir)
	}
	return p, err
}

// OpenLocalFile reads the master key in the file at path. The file must be
// readable by its owner only, as an SSH private key must.
func OpenLocalFile(path string) (*LocalProvider, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key %s is readable by group or others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return parseMaster(path, raw)
}

// OpenLocalEnv reads the master key from MasterKeyEnv; ok is false when
// the variable is not set.
func OpenLocalEnv() (p *LocalProvider, ok bool, err error) {
	raw, ok := os.LookupEnv(MasterKeyEnv)
	if !ok {
		return nil, false, nil
	}
	p, err = parseMaster("$"+MasterKeyEnv, []byte(raw))
	return p, true, err
}

func parseMaster(where string, raw []byte) (*LocalProvider, error) {
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", where, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", where, err)
	}
	return &LocalProvider{master: a, id: fmt.Sprintf("master:%08x", h.KeysetInfo().GetPrimaryKeyId())}, nil
}

// WrapFor is the master key, for every org: the file names it by id, so
// that a new master key can take over one keyset at a time.
func (p *LocalProvider) WrapFor(string) (Wrap, error) {
	return Wrap{Provider: ProviderLocal, Key: p.id}, nil
}

// KEK returns the master key; the org is bound by the caller through
// associated data. A keyset naming another master key is another
// provider's; one naming none (written before master keys had ids) is
// tried with this one.
func (p *LocalProvider) KEK(_ context.Context, w Wrap, _ string) (tink.AEADWithContext, error) {
	if w.Provider != ProviderLocal || w.Key != "" && w.Key != p.id {
		return nil, errOtherProvider{want: ProviderLocal + " " + p.id, got: w.String()}
	}
	return withoutContext{p.master}, nil
}

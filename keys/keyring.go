package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/phiguard/phiguard/internal/orgid"
)

// Provider hands out the key-encryption key that wraps an organization's
// keyset. The local provider uses one master key for every org; a KMS
// provider uses the org's own KMS key.
type Provider interface {
	// KeyEncryptionAEAD returns the AEAD that wraps and unwraps org's keyset.
	KeyEncryptionAEAD(ctx context.Context, org string) (tink.AEAD, error)
}

const (
	orgsDir       = "orgs"
	keysetSuffix  = ".json"
	aesGCMTypeURL = "type.googleapis.com/google.crypto.tink.AesGcmKey"
)

// keysetAssociatedData binds a wrapped keyset to its organization, so the
// wrapped keyset of one org copied over another's never unwraps.
func keysetAssociatedData(org string) []byte {
	return []byte("phiguard/keyring/v1/org:" + org)
}

// Keyring holds the unwrapped data keys of every organization in a keyring
// folder. It is read once and never touches the disk or a KMS afterwards;
// it is safe for concurrent use.
type Keyring struct {
	orgs map[string]orgKeys
}

// orgKeys is an organization's data AEAD and the associated data that
// binds its tokens to it.
type orgKeys struct {
	aead tink.AEAD
	ad   []byte
}

// Open reads and unwraps every organization keyset under dir.
func Open(ctx context.Context, dir string, p Provider) (*Keyring, error) {
	entries, err := os.ReadDir(filepath.Join(dir, orgsDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("keyring %s has no %s folder: run 'phiguard keys init' and 'phiguard keys create'", dir, orgsDir)
		}
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	k := &Keyring{orgs: make(map[string]orgKeys)}
	for _, e := range entries {
		org, ok := strings.CutSuffix(e.Name(), keysetSuffix)
		if !ok || e.IsDir() {
			continue
		}
		if err := orgid.Check(org); err != nil {
			return nil, fmt.Errorf("keyring file %s: %w", e.Name(), err)
		}
		a, err := loadOrg(ctx, dir, org, p)
		if err != nil {
			return nil, err
		}
		k.orgs[org] = orgKeys{aead: a, ad: associatedData(org)}
	}
	return k, nil
}

func loadOrg(ctx context.Context, dir, org string, p Provider) (tink.AEAD, error) {
	kek, err := p.KeyEncryptionAEAD(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("org %s: key-encryption key: %w", org, err)
	}
	raw, err := os.ReadFile(orgPath(dir, org))
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	h, err := keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(raw)), kek, keysetAssociatedData(org))
	if err != nil {
		return nil, fmt.Errorf("org %s: unwrap keyset: %w", org, err)
	}
	if err := checkDataKeyset(h); err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	return a, nil
}

// checkDataKeyset accepts only AES-GCM keys with Tink's key-id prefix: the
// token layout depends on that prefix.
func checkDataKeyset(h *keyset.Handle) error {
	for _, ki := range h.KeysetInfo().GetKeyInfo() {
		if ki.GetTypeUrl() != aesGCMTypeURL {
			return fmt.Errorf("keyset key %08x is %s, want AES-GCM", ki.GetKeyId(), ki.GetTypeUrl())
		}
		if ki.GetOutputPrefixType() != tinkpb.OutputPrefixType_TINK {
			return fmt.Errorf("keyset key %08x has output prefix %s, want TINK", ki.GetKeyId(), ki.GetOutputPrefixType())
		}
	}
	return nil
}

// Orgs lists the organizations the keyring holds keys for, sorted.
func (k *Keyring) Orgs() []string {
	out := make([]string, 0, len(k.orgs))
	for org := range k.orgs {
		out = append(out, org)
	}
	sort.Strings(out)
	return out
}

// Has reports whether the keyring holds keys for org.
func (k *Keyring) Has(org string) bool {
	_, ok := k.orgs[org]
	return ok
}

// Encrypt seals plaintext under org's primary key and returns the token.
func (k *Keyring) Encrypt(ctx context.Context, org string, plaintext []byte) (string, error) {
	tok, err := k.AppendEncrypt(ctx, nil, org, plaintext)
	return string(tok), err
}

// AppendEncrypt seals plaintext under org's primary key and appends the
// token to dst. The token's characters need no escaping in JSON or a URL.
func (k *Keyring) AppendEncrypt(_ context.Context, dst []byte, org string, plaintext []byte) ([]byte, error) {
	o, ok := k.orgs[org]
	if !ok {
		return dst, ErrUnknownOrg
	}
	sealed, err := o.aead.Encrypt(plaintext, o.ad)
	if err != nil {
		return dst, fmt.Errorf("encrypt: %w", err)
	}
	if err := checkSealed(sealed); err != nil {
		return dst, err
	}
	return appendToken(dst, org, sealed), nil
}

// Decrypt opens a token on behalf of org. A token of another organization is
// refused before any key is used.
func (k *Keyring) Decrypt(_ context.Context, org string, token []byte) ([]byte, error) {
	tokOrg, id, body, err := splitToken(token)
	if err != nil {
		return nil, err
	}
	if string(tokOrg) != org {
		return nil, ErrOrgMismatch
	}
	o, ok := k.orgs[org]
	if !ok {
		return nil, ErrUnknownOrg
	}
	bp := sealedBuffers.Get().(*[]byte)
	defer sealedBuffers.Put(bp)
	sealed, err := unsealBody((*bp)[:0], id, body)
	if err != nil {
		return nil, err
	}
	*bp = sealed[:0] // keep a grown buffer
	pt, err := o.aead.Decrypt(sealed, o.ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// sealedBuffers hold a token's ciphertext, decoded, while it is opened.
// Ciphertext is not secret; the plaintext is Tink's own allocation.
var sealedBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func orgPath(dir, org string) string {
	return filepath.Join(dir, orgsDir, org+keysetSuffix)
}

// CreateOrg generates a new AES-256-GCM keyset for org, wraps it with the
// provider's key-encryption key and writes it into the keyring folder. It
// refuses to replace an existing keyset: that would make every token of the
// org unreadable.
func CreateOrg(ctx context.Context, dir, org string, p Provider) error {
	if err := orgid.Check(org); err != nil {
		return err
	}
	kek, err := p.KeyEncryptionAEAD(ctx, org)
	if err != nil {
		return fmt.Errorf("key-encryption key: %w", err)
	}
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("generate keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewJSONWriter(&buf), kek, keysetAssociatedData(org)); err != nil {
		return fmt.Errorf("wrap keyset: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, orgsDir), 0o700); err != nil {
		return fmt.Errorf("create keyring folder: %w", err)
	}
	return writeNew(orgPath(dir, org), buf.Bytes())
}

// writeNew writes data to a file that must not exist yet, readable by its owner only.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to replace it", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

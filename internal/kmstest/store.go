package kmstest

import (
	"encoding/binary"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/subtle/random"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Account is the AWS account id in every ARN the server makes.
const Account = "111122223333"

// Key states, as KeyMetadata.KeyState names them.
const (
	stateEnabled         = "Enabled"
	stateDisabled        = "Disabled"
	statePendingDeletion = "PendingDeletion"
)

// Limits of the real service that the server enforces.
const (
	maxPlaintext        = 4096
	maxDataKeyBytes     = 1024
	defaultDeletionDays = 30
	minDeletionDays     = 7
	maxDeletionDays     = 30
)

// kmsKey is one symmetric KMS key. The server's mutex guards every field
// that changes (state, deletion, window); handlers work on copies.
type kmsKey struct {
	id, arn     string
	description string
	created     time.Time
	state       string
	deletion    time.Time // set while state is PendingDeletion
	window      int32     // days, set while state is PendingDeletion
	aead        tink.AEAD
}

// aliasEntry is where an alias points.
type aliasEntry struct {
	target  string // key id
	created time.Time
}

func (s *Server) arnPrefix() string {
	return "arn:aws:kms:" + s.region + ":" + Account + ":"
}

// newKey makes a key with fresh Tink AES-256-GCM key material.
func (s *Server) newKey(description string) (*kmsKey, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("generate key material: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("build aead: %w", err)
	}
	id := newUUID()
	return &kmsKey{
		id:          id,
		arn:         s.arnPrefix() + "key/" + id,
		description: description,
		created:     s.now(),
		state:       stateEnabled,
		aead:        a,
	}, nil
}

// newUUID returns a random (version 4) UUID, as KMS key ids are.
func newUUID() string {
	b := random.GetRandomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (s *Server) createKey(description string) (kmsKey, error) {
	k, err := s.newKey(description)
	if err != nil {
		return kmsKey{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[k.id] = k
	return *k, nil
}

// lookup finds the key that ref names: a key id or key ARN and, when
// aliases is true, also an alias name or alias ARN. Any state will do.
func (s *Server) lookup(ref string, aliases bool) (kmsKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.resolveLocked(ref, aliases)
	if err != nil {
		return kmsKey{}, err
	}
	return *k, nil
}

// usableKey is lookup (aliases allowed) for a cryptographic operation: the
// key must be Enabled.
func (s *Server) usableKey(ref string) (kmsKey, error) {
	k, err := s.lookup(ref, true)
	if err != nil {
		return kmsKey{}, err
	}
	return k, k.usable()
}

func (s *Server) resolveLocked(ref string, aliases bool) (*kmsKey, error) {
	if rest, ok := strings.CutPrefix(ref, s.arnPrefix()); ok {
		if id, ok := strings.CutPrefix(rest, "key/"); ok {
			return s.keyLocked(id, ref)
		}
		if aliases && strings.HasPrefix(rest, "alias/") {
			return s.aliasLocked(rest, ref)
		}
		return nil, notFound("Invalid keyId %s", ref)
	}
	if aliases && strings.HasPrefix(ref, "alias/") {
		return s.aliasLocked(ref, ref)
	}
	return s.keyLocked(ref, ref)
}

func (s *Server) keyLocked(id, ref string) (*kmsKey, error) {
	k, ok := s.keys[id]
	if !ok {
		return nil, notFound("Key '%s' does not exist", ref)
	}
	return k, nil
}

func (s *Server) aliasLocked(name, ref string) (*kmsKey, error) {
	a, ok := s.aliases[name]
	if !ok {
		return nil, notFound("Alias %s is not found.", ref)
	}
	return s.keyLocked(a.target, ref)
}

// usable reports why k cannot encrypt or decrypt, if it cannot.
func (k kmsKey) usable() error {
	switch k.state {
	case stateDisabled:
		return refuse("DisabledException", "%s is disabled.", k.arn)
	case statePendingDeletion:
		return refuse("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	return nil
}

// transition applies change to the key that ref (key id or ARN) names,
// under the lock, and returns the key as it then is.
func (s *Server) transition(ref string, change func(k *kmsKey) error) (kmsKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.resolveLocked(ref, false)
	if err != nil {
		return kmsKey{}, err
	}
	if err := change(k); err != nil {
		return kmsKey{}, err
	}
	return *k, nil
}

func disable(k *kmsKey) error {
	if k.state == statePendingDeletion {
		return refuse("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	k.state = stateDisabled
	return nil
}

func enable(k *kmsKey) error {
	if k.state == statePendingDeletion {
		return refuse("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	k.state = stateEnabled
	return nil
}

func (s *Server) scheduleDeletion(days int32) func(k *kmsKey) error {
	return func(k *kmsKey) error {
		if k.state == statePendingDeletion {
			return refuse("KMSInvalidStateException", "%s is pending deletion.", k.arn)
		}
		k.state = statePendingDeletion
		k.window = days
		k.deletion = s.now().Add(time.Duration(days) * 24 * time.Hour)
		return nil
	}
}

// cancelDeletion leaves the key Disabled, as KMS does.
func cancelDeletion(k *kmsKey) error {
	if k.state != statePendingDeletion {
		return refuse("KMSInvalidStateException", "%s is not pending deletion.", k.arn)
	}
	k.state = stateDisabled
	k.window = 0
	k.deletion = time.Time{}
	return nil
}

// aliasName is the form KMS accepts for an alias name.
var aliasName = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]+$`)

// createAlias points a new alias at the key that target (key id or ARN) names.
func (s *Server) createAlias(name, target string) error {
	switch {
	case len(name) > 256 || !aliasName.MatchString(name):
		return refuse("InvalidAliasNameException", "alias name %q must be alias/ followed by letters, digits, '/', '_' or '-', at most 256 characters", name)
	case strings.HasPrefix(name, "alias/aws/"):
		return refuse("InvalidAliasNameException", "alias name %q: the alias/aws/ prefix is reserved for AWS managed keys", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.resolveLocked(target, false)
	if err != nil {
		return err
	}
	if k.state == statePendingDeletion {
		return refuse("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	if _, ok := s.aliases[name]; ok {
		return refuse("AlreadyExistsException", "An alias with the name %s%s already exists", s.arnPrefix(), name)
	}
	s.aliases[name] = aliasEntry{target: k.id, created: s.now()}
	return nil
}

// seal encrypts plaintext under k, bound to the encryption context ec.
//
// The ciphertext blob is: a version byte, the length of the key id (one
// byte), the key id, then the Tink ciphertext. The associated data covers
// the version and key id as well as the context, so no part of the blob can
// be changed without Decrypt refusing it.
func seal(k kmsKey, plaintext []byte, ec map[string]string) ([]byte, error) {
	blob := append([]byte{blobVersion, byte(len(k.id))}, k.id...)
	ct, err := k.aead.Encrypt(plaintext, associatedData(k.id, ec))
	if err != nil {
		return nil, fmt.Errorf("encrypt under %s: %w", k.id, err)
	}
	return append(blob, ct...), nil
}

const blobVersion = 1

// parseBlob splits a ciphertext blob into the id of its key and the Tink
// ciphertext.
func parseBlob(blob []byte) (keyID string, ct []byte, ok bool) {
	if len(blob) < 2 || blob[0] != blobVersion {
		return "", nil, false
	}
	n := int(blob[1])
	if n == 0 || len(blob) <= 2+n {
		return "", nil, false
	}
	return string(blob[2 : 2+n]), blob[2+n:], true
}

// associatedData encodes a blob's version, its key id and its encryption
// context, the context's pairs sorted by key and every string
// length-prefixed, so that two different contexts never encode alike. An
// absent context and an empty one encode alike, as they are alike to KMS.
func associatedData(keyID string, ec map[string]string) []byte {
	b := []byte{blobVersion}
	b = appendString(b, keyID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ec)))
	for _, k := range slices.Sorted(maps.Keys(ec)) {
		b = appendString(b, k)
		b = appendString(b, ec[k])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// open decrypts a ciphertext blob. If keyRef is not empty it must name the
// blob's key; ec must equal the context the blob was sealed with.
func (s *Server) open(blob []byte, keyRef string, ec map[string]string) (kmsKey, []byte, error) {
	id, ct, ok := parseBlob(blob)
	if !ok {
		return kmsKey{}, nil, invalidCiphertext()
	}
	k, err := s.lookup(id, false)
	if err != nil {
		// A blob naming a key this server never had is as good as garbage.
		return kmsKey{}, nil, invalidCiphertext()
	}
	if keyRef != "" {
		want, err := s.lookup(keyRef, true)
		if err != nil {
			return kmsKey{}, nil, err
		}
		if want.id != k.id {
			return kmsKey{}, nil, refuse("IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.")
		}
	}
	if err := k.usable(); err != nil {
		return kmsKey{}, nil, err
	}
	pt, err := k.aead.Decrypt(ct, associatedData(id, ec))
	if err != nil {
		return kmsKey{}, nil, invalidCiphertext()
	}
	return k, pt, nil
}

func invalidCiphertext() error {
	return refuse("InvalidCiphertextException", "The ciphertext is invalid, or its encryption context does not match.")
}

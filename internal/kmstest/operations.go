package kmstest

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/subtle/random"
)

// Request and response shapes follow the KMS API reference; blobs ([]byte)
// travel as base64 and timestamps as epoch seconds, as JSON 1.1 has them.

const symmetricDefault = "SYMMETRIC_DEFAULT"

// epochSeconds is a timestamp in the JSON 1.1 wire form.
type epochSeconds time.Time

func (t epochSeconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(time.Time(t).UnixMilli())/1000, 'f', -1, 64), nil
}

func epoch(t time.Time) *epochSeconds {
	if t.IsZero() {
		return nil
	}
	e := epochSeconds(t)
	return &e
}

type keyMetadata struct {
	AWSAccountId                string
	Arn                         string
	CreationDate                *epochSeconds
	CustomerMasterKeySpec       string
	DeletionDate                *epochSeconds `json:",omitempty"`
	Description                 string
	Enabled                     bool
	EncryptionAlgorithms        []string
	KeyId                       string
	KeyManager                  string
	KeySpec                     string
	KeyState                    string
	KeyUsage                    string
	MultiRegion                 bool
	Origin                      string
	PendingDeletionWindowInDays int32 `json:",omitempty"`
}

func metadata(k kmsKey) keyMetadata {
	return keyMetadata{
		AWSAccountId:                Account,
		Arn:                         k.arn,
		CreationDate:                epoch(k.created),
		CustomerMasterKeySpec:       symmetricDefault,
		DeletionDate:                epoch(k.deletion),
		Description:                 k.description,
		Enabled:                     k.state == stateEnabled,
		EncryptionAlgorithms:        []string{symmetricDefault},
		KeyId:                       k.id,
		KeyManager:                  "CUSTOMER",
		KeySpec:                     symmetricDefault,
		KeyState:                    k.state,
		KeyUsage:                    "ENCRYPT_DECRYPT",
		MultiRegion:                 false,
		Origin:                      "AWS_KMS",
		PendingDeletionWindowInDays: k.window,
	}
}

type keyMetadataOutput struct {
	KeyMetadata keyMetadata
}

// requireKeyID refuses an empty key reference in the named member.
func requireKeyID(member, v string) error {
	if v == "" {
		return invalid("%s is required", member)
	}
	return nil
}

type createKeyInput struct {
	Description           string
	KeySpec               string
	CustomerMasterKeySpec string
	KeyUsage              string
	Origin                string
	MultiRegion           bool
}

func (s *Server) opCreateKey(in createKeyInput) (any, error) {
	for _, v := range []struct{ member, got, want string }{
		{"KeySpec", in.KeySpec, symmetricDefault},
		{"CustomerMasterKeySpec", in.CustomerMasterKeySpec, symmetricDefault},
		{"KeyUsage", in.KeyUsage, "ENCRYPT_DECRYPT"},
		{"Origin", in.Origin, "AWS_KMS"},
	} {
		if v.got != "" && v.got != v.want {
			return nil, refuse("UnsupportedOperationException", "kmstest makes only symmetric keys: %s must be %s, not %s", v.member, v.want, v.got)
		}
	}
	if in.MultiRegion {
		return nil, refuse("UnsupportedOperationException", "kmstest does not make multi-Region keys")
	}
	k, err := s.createKey(in.Description)
	if err != nil {
		return nil, err
	}
	return keyMetadataOutput{KeyMetadata: metadata(k)}, nil
}

type keyIDInput struct {
	KeyId string
}

func (s *Server) opDescribeKey(in keyIDInput) (any, error) {
	if err := requireKeyID("KeyId", in.KeyId); err != nil {
		return nil, err
	}
	k, err := s.lookup(in.KeyId, true)
	if err != nil {
		return nil, err
	}
	return keyMetadataOutput{KeyMetadata: metadata(k)}, nil
}

type encryptInput struct {
	KeyId             string
	Plaintext         []byte
	EncryptionContext map[string]string
}

type encryptOutput struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

func (s *Server) opEncrypt(in encryptInput) (any, error) {
	if err := requireKeyID("KeyId", in.KeyId); err != nil {
		return nil, err
	}
	if len(in.Plaintext) == 0 || len(in.Plaintext) > maxPlaintext {
		return nil, invalid("Plaintext must be 1 to %d bytes, not %d", maxPlaintext, len(in.Plaintext))
	}
	k, err := s.usableKey(in.KeyId)
	if err != nil {
		return nil, err
	}
	blob, err := seal(k, in.Plaintext, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return encryptOutput{CiphertextBlob: blob, KeyId: k.arn, EncryptionAlgorithm: symmetricDefault}, nil
}

type decryptInput struct {
	CiphertextBlob    []byte
	KeyId             string
	EncryptionContext map[string]string
}

type decryptOutput struct {
	KeyId               string
	Plaintext           []byte
	EncryptionAlgorithm string
}

func (s *Server) opDecrypt(in decryptInput) (any, error) {
	if len(in.CiphertextBlob) == 0 {
		return nil, invalid("CiphertextBlob is required")
	}
	k, pt, err := s.open(in.CiphertextBlob, in.KeyId, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return decryptOutput{KeyId: k.arn, Plaintext: pt, EncryptionAlgorithm: symmetricDefault}, nil
}

type reEncryptInput struct {
	CiphertextBlob               []byte
	SourceKeyId                  string
	SourceEncryptionContext      map[string]string
	DestinationKeyId             string
	DestinationEncryptionContext map[string]string
}

type reEncryptOutput struct {
	CiphertextBlob                 []byte
	KeyId                          string
	SourceKeyId                    string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
}

func (s *Server) opReEncrypt(in reEncryptInput) (any, error) {
	if len(in.CiphertextBlob) == 0 {
		return nil, invalid("CiphertextBlob is required")
	}
	if err := requireKeyID("DestinationKeyId", in.DestinationKeyId); err != nil {
		return nil, err
	}
	src, pt, err := s.open(in.CiphertextBlob, in.SourceKeyId, in.SourceEncryptionContext)
	if err != nil {
		return nil, err
	}
	dst, err := s.usableKey(in.DestinationKeyId)
	if err != nil {
		return nil, err
	}
	blob, err := seal(dst, pt, in.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	return reEncryptOutput{
		CiphertextBlob:                 blob,
		KeyId:                          dst.arn,
		SourceKeyId:                    src.arn,
		SourceEncryptionAlgorithm:      symmetricDefault,
		DestinationEncryptionAlgorithm: symmetricDefault,
	}, nil
}

type generateDataKeyInput struct {
	KeyId             string
	KeySpec           string
	NumberOfBytes     *int
	EncryptionContext map[string]string
}

type generateDataKeyOutput struct {
	CiphertextBlob []byte
	KeyId          string
	Plaintext      []byte `json:",omitempty"`
}

func (s *Server) opGenerateDataKey(in generateDataKeyInput) (any, error) {
	return s.generateDataKey(in, true)
}

func (s *Server) opGenerateDataKeyWithoutPlaintext(in generateDataKeyInput) (any, error) {
	return s.generateDataKey(in, false)
}

func (s *Server) generateDataKey(in generateDataKeyInput, withPlaintext bool) (any, error) {
	if err := requireKeyID("KeyId", in.KeyId); err != nil {
		return nil, err
	}
	n, err := dataKeySize(in.KeySpec, in.NumberOfBytes)
	if err != nil {
		return nil, err
	}
	k, err := s.usableKey(in.KeyId)
	if err != nil {
		return nil, err
	}
	pt := random.GetRandomBytes(uint32(n))
	blob, err := seal(k, pt, in.EncryptionContext)
	if err != nil {
		return nil, err
	}
	out := generateDataKeyOutput{CiphertextBlob: blob, KeyId: k.arn}
	if withPlaintext {
		out.Plaintext = pt
	}
	return out, nil
}

// dataKeySize is the length of the data key that exactly one of spec and
// numberOfBytes asks for.
func dataKeySize(spec string, numberOfBytes *int) (int, error) {
	switch {
	case spec != "" && numberOfBytes != nil:
		return 0, invalid("give KeySpec or NumberOfBytes, not both")
	case numberOfBytes != nil:
		if n := *numberOfBytes; n < 1 || n > maxDataKeyBytes {
			return 0, invalid("NumberOfBytes must be 1 to %d, not %d", maxDataKeyBytes, n)
		}
		return *numberOfBytes, nil
	case spec == "AES_256":
		return 32, nil
	case spec == "AES_128":
		return 16, nil
	case spec == "":
		return 0, invalid("KeySpec or NumberOfBytes is required")
	}
	return 0, invalid("KeySpec must be AES_256 or AES_128, not %s", spec)
}

func (s *Server) opDisableKey(in keyIDInput) (any, error) {
	return s.changeState(in.KeyId, disable)
}

func (s *Server) opEnableKey(in keyIDInput) (any, error) {
	return s.changeState(in.KeyId, enable)
}

// changeState runs a state change that answers an empty object.
func (s *Server) changeState(keyID string, change func(*kmsKey) error) (any, error) {
	if err := requireKeyID("KeyId", keyID); err != nil {
		return nil, err
	}
	if _, err := s.transition(keyID, change); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

type scheduleKeyDeletionInput struct {
	KeyId               string
	PendingWindowInDays *int32
}

type scheduleKeyDeletionOutput struct {
	KeyId               string
	DeletionDate        *epochSeconds
	KeyState            string
	PendingWindowInDays int32
}

func (s *Server) opScheduleKeyDeletion(in scheduleKeyDeletionInput) (any, error) {
	if err := requireKeyID("KeyId", in.KeyId); err != nil {
		return nil, err
	}
	days := int32(defaultDeletionDays)
	if in.PendingWindowInDays != nil {
		days = *in.PendingWindowInDays
	}
	if days < minDeletionDays || days > maxDeletionDays {
		return nil, invalid("PendingWindowInDays must be %d to %d, not %d", minDeletionDays, maxDeletionDays, days)
	}
	k, err := s.transition(in.KeyId, s.scheduleDeletion(days))
	if err != nil {
		return nil, err
	}
	return scheduleKeyDeletionOutput{KeyId: k.arn, DeletionDate: epoch(k.deletion), KeyState: k.state, PendingWindowInDays: k.window}, nil
}

func (s *Server) opCancelKeyDeletion(in keyIDInput) (any, error) {
	if err := requireKeyID("KeyId", in.KeyId); err != nil {
		return nil, err
	}
	k, err := s.transition(in.KeyId, cancelDeletion)
	if err != nil {
		return nil, err
	}
	return struct{ KeyId string }{KeyId: k.arn}, nil
}

type createAliasInput struct {
	AliasName   string
	TargetKeyId string
}

func (s *Server) opCreateAlias(in createAliasInput) (any, error) {
	if err := requireKeyID("TargetKeyId", in.TargetKeyId); err != nil {
		return nil, err
	}
	if err := s.createAlias(in.AliasName, in.TargetKeyId); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

type listAliasesInput struct {
	KeyId  string
	Limit  *int
	Marker string
}

type aliasListEntry struct {
	AliasArn     string
	AliasName    string
	TargetKeyId  string
	CreationDate *epochSeconds
}

type listAliasesOutput struct {
	Aliases    []aliasListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// opListAliases lists aliases by name, Limit (1 to 100, default 50) at a
// time; a Marker is the name of the next alias to list.
func (s *Server) opListAliases(in listAliasesInput) (any, error) {
	limit := 50
	if in.Limit != nil {
		limit = *in.Limit
	}
	if limit < 1 || limit > 100 {
		return nil, invalid("Limit must be 1 to 100, not %d", limit)
	}
	targetID := ""
	if in.KeyId != "" {
		k, err := s.lookup(in.KeyId, false)
		if err != nil {
			return nil, err
		}
		targetID = k.id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.aliases[in.Marker]; in.Marker != "" && !ok {
		return nil, refuse("InvalidMarkerException", "Marker %q is not one ListAliases returned", in.Marker)
	}
	var names []string
	for name, a := range s.aliases {
		if (targetID == "" || a.target == targetID) && strings.Compare(name, in.Marker) >= 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := listAliasesOutput{Aliases: []aliasListEntry{}}
	if len(names) > limit {
		out.NextMarker, out.Truncated = names[limit], true
		names = names[:limit]
	}
	for _, name := range names {
		a := s.aliases[name]
		out.Aliases = append(out.Aliases, aliasListEntry{
			AliasArn:     s.arnPrefix() + name,
			AliasName:    name,
			TargetKeyId:  a.target,
			CreationDate: epoch(a.created),
		})
	}
	return out, nil
}

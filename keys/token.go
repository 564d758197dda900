package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/phiguard/phiguard/internal/orgid"
)

// A token replaces one protected value. Its layout is
//
//	ephi:v1:<org>:<key id>:<ciphertext>
//
// where <key id> is the 8 hex digits of the Tink key that sealed it and
// <ciphertext> is unpadded base64url of the AES-256-GCM output (nonce,
// ciphertext, tag) without Tink's 5-byte output prefix, which the key id
// already carries. The associated data binds the token version and the org,
// so a token moved into another organization's data never opens.
const (
	tokenPrefix  = "ephi:"
	tokenVersion = "v1"
	// exactVersion marks a token of an org's exact-match (deterministic)
	// key: ephi:d1:<org>:<key id>:<ciphertext>, AES-SIV's output.
	exactVersion = "d1"

	// tinkPrefixByte starts every ciphertext of a key with Tink's TINK
	// output prefix: one byte, then the key id as a big-endian uint32.
	tinkPrefixByte = 0x01
	tinkPrefixLen  = 5
)

// Errors returned when a token cannot be opened. They never carry the token.
var (
	ErrNotToken    = errors.New("value is not a phiguard token")
	ErrOrgMismatch = errors.New("token belongs to another organization")
	ErrDecrypt     = errors.New("token does not decrypt: tampered, or sealed by a key this keyring does not hold")
	ErrUnknownOrg  = errors.New("organization has no keyset in the keyring")
)

// Token is a parsed ciphertext token.
type Token struct {
	Org   string
	KeyID uint32
	// Exact: sealed by the org's exact-match key (ephi:d1:...).
	Exact bool
	// Sealed is the Tink ciphertext with its output prefix restored.
	Sealed []byte
}

// LooksLikeToken reports whether s carries the token prefix. It says nothing
// about whether s would open.
func LooksLikeToken[T string | []byte](s T) bool {
	return len(s) >= len(tokenPrefix) && string(s[:len(tokenPrefix)]) == tokenPrefix
}

// TokenTag is the text every token of org's key id starts with, in any
// store that keeps tokens as they are: searching an export for it finds
// the tokens that key sealed. ExactTokenTag is the same for an
// exact-match key.
func TokenTag(org string, id uint32) string {
	return fmt.Sprintf("%s%s:%s:%08x:", tokenPrefix, tokenVersion, org, id)
}

// ExactTokenTag is TokenTag for the exact-match tokens (ephi:d1:…).
func ExactTokenTag(org string, id uint32) string {
	return fmt.Sprintf("%s%s:%s:%08x:", tokenPrefix, exactVersion, org, id)
}

// ParseToken splits a token into its parts without decrypting it.
func ParseToken(s string) (Token, error) {
	exact, org, id, body, err := splitToken([]byte(s))
	if err != nil {
		return Token{}, err
	}
	sealed, err := unsealBody(nil, id, body)
	if err != nil {
		return Token{}, err
	}
	return Token{Org: string(org), KeyID: id, Exact: exact, Sealed: sealed}, nil
}

// splitToken finds the parts of a token without copying: whether it is an
// exact-match token, the org, the key id and the base64url ciphertext.
func splitToken(tok []byte) (exact bool, org []byte, keyID uint32, body []byte, err error) {
	rest, ok := bytes.CutPrefix(tok, []byte(tokenPrefix))
	if !ok {
		return false, nil, 0, nil, ErrNotToken
	}
	version, rest, ok := bytes.Cut(rest, []byte{':'})
	if !ok {
		return false, nil, 0, nil, fmt.Errorf("%w: wrong number of parts", ErrNotToken)
	}
	org, rest, ok1 := bytes.Cut(rest, []byte{':'})
	id, body, ok2 := bytes.Cut(rest, []byte{':'})
	if !ok1 || !ok2 {
		return false, nil, 0, nil, fmt.Errorf("%w: wrong number of parts", ErrNotToken)
	}
	exact = string(version) == exactVersion
	if !exact && string(version) != tokenVersion {
		return false, nil, 0, nil, fmt.Errorf("%w: unknown version", ErrNotToken)
	}
	if !orgid.Valid(org) {
		return false, nil, 0, nil, fmt.Errorf("%w: bad organization id", ErrNotToken)
	}
	keyID, ok = parseKeyID(id)
	if !ok {
		return false, nil, 0, nil, fmt.Errorf("%w: bad key id", ErrNotToken)
	}
	if len(body) == 0 || !noLineBreaks(body) {
		return false, nil, 0, nil, fmt.Errorf("%w: bad ciphertext encoding", ErrNotToken)
	}
	return exact, org, keyID, body, nil
}

// parseKeyID reads 8 lower-case hex digits.
func parseKeyID(b []byte) (uint32, bool) {
	if len(b) != 8 {
		return 0, false
	}
	var id uint32
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			id = id<<4 | uint32(c-'0')
		case 'a' <= c && c <= 'f':
			id = id<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return id, true
}

// unsealBody appends Tink's ciphertext to dst: the output prefix the key id
// stands for, then the decoded body.
func unsealBody(dst []byte, keyID uint32, body []byte) ([]byte, error) {
	n := base64.RawURLEncoding.DecodedLen(len(body))
	dst = slices.Grow(dst, tinkPrefixLen+n)
	dst = append(dst, tinkPrefixByte)
	dst = binary.BigEndian.AppendUint32(dst, keyID)
	m, err := base64.RawURLEncoding.Strict().Decode(dst[len(dst):len(dst)+n], body)
	if err != nil || m == 0 {
		return nil, fmt.Errorf("%w: bad ciphertext encoding", ErrNotToken)
	}
	return dst[:len(dst)+m], nil
}

// String formats the token.
func (t Token) String() string {
	if t.Exact {
		return string(appendTokenVersion(nil, exactVersion, t.Org, t.Sealed))
	}
	return string(appendToken(nil, t.Org, t.Sealed))
}

// appendToken appends the token of org for Tink's ciphertext sealed (with
// its output prefix) to dst.
func appendToken(dst []byte, org string, sealed []byte) []byte {
	return appendTokenVersion(dst, tokenVersion, org, sealed)
}

// appendTokenVersion is appendToken for a token of version.
func appendTokenVersion(dst []byte, version, org string, sealed []byte) []byte {
	const hexDigits = "0123456789abcdef"
	body := sealed[tinkPrefixLen:]
	dst = slices.Grow(dst, len(tokenPrefix)+len(version)+len(org)+12+base64.RawURLEncoding.EncodedLen(len(body)))
	dst = append(dst, tokenPrefix...)
	dst = append(dst, version...)
	dst = append(dst, ':')
	dst = append(dst, org...)
	dst = append(dst, ':')
	for _, b := range sealed[1:tinkPrefixLen] {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	dst = append(dst, ':')
	return base64.RawURLEncoding.AppendEncode(dst, body)
}

// associatedData binds a ciphertext to the token version and its organization.
func associatedData(org string) []byte {
	return []byte(tokenPrefix + tokenVersion + ":" + org)
}

// checkSealed refuses Tink output without the TINK prefix the token layout needs.
func checkSealed(sealed []byte) error {
	if len(sealed) <= tinkPrefixLen || sealed[0] != tinkPrefixByte {
		return fmt.Errorf("keyset produced a ciphertext without a Tink key prefix")
	}
	return nil
}

// noLineBreaks reports whether s holds no CR or LF. The strict base64url
// decoder refuses every other byte outside its alphabet, and padding, but
// skips CR and LF, which would let two strings name one token.
func noLineBreaks(s []byte) bool {
	return bytes.IndexByte(s, '\n') < 0 && bytes.IndexByte(s, '\r') < 0
}

// TokenOrg returns the organization a token names, without opening it;
// false when tok is not a well-formed token.
func TokenOrg(tok []byte) (string, bool) {
	_, org, _, _, err := splitToken(tok)
	if err != nil {
		return "", false
	}
	return string(org), true
}

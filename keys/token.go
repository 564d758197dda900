package keys

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

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
	// Sealed is the Tink ciphertext with its output prefix restored.
	Sealed []byte
}

// LooksLikeToken reports whether s carries the token prefix. It says nothing
// about whether s would open.
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// ParseToken splits a token into its parts without decrypting it.
func ParseToken(s string) (Token, error) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Token{}, ErrNotToken
	}
	parts := strings.SplitN(rest, ":", 4)
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: wrong number of parts", ErrNotToken)
	}
	if parts[0] != tokenVersion {
		return Token{}, fmt.Errorf("%w: unknown version", ErrNotToken)
	}
	org := parts[1]
	if orgid.Check(org) != nil {
		return Token{}, fmt.Errorf("%w: bad organization id", ErrNotToken)
	}
	if len(parts[2]) != 8 || strings.ToLower(parts[2]) != parts[2] {
		return Token{}, fmt.Errorf("%w: bad key id", ErrNotToken)
	}
	id, err := hex.DecodeString(parts[2])
	if err != nil {
		return Token{}, fmt.Errorf("%w: bad key id", ErrNotToken)
	}
	if !isBase64URL(parts[3]) {
		return Token{}, fmt.Errorf("%w: bad ciphertext encoding", ErrNotToken)
	}
	body, err := base64.RawURLEncoding.Strict().DecodeString(parts[3])
	if err != nil || len(body) == 0 {
		return Token{}, fmt.Errorf("%w: bad ciphertext encoding", ErrNotToken)
	}
	sealed := make([]byte, 0, tinkPrefixLen+len(body))
	sealed = append(sealed, tinkPrefixByte)
	sealed = append(sealed, id...)
	sealed = append(sealed, body...)
	return Token{Org: org, KeyID: binary.BigEndian.Uint32(id), Sealed: sealed}, nil
}

// String formats the token.
func (t Token) String() string {
	var b strings.Builder
	body := t.Sealed[tinkPrefixLen:]
	b.Grow(len(tokenPrefix) + len(tokenVersion) + len(t.Org) + 11 + base64.RawURLEncoding.EncodedLen(len(body)))
	b.WriteString(tokenPrefix)
	b.WriteString(tokenVersion)
	b.WriteByte(':')
	b.WriteString(t.Org)
	fmt.Fprintf(&b, ":%08x:", t.KeyID)
	b.WriteString(base64.RawURLEncoding.EncodeToString(body))
	return b.String()
}

// associatedData binds a ciphertext to the token version and its organization.
func associatedData(org string) []byte {
	return []byte(tokenPrefix + tokenVersion + ":" + org)
}

// tokenFromSealed builds a token from Tink's output, which must carry a TINK prefix.
func tokenFromSealed(org string, sealed []byte) (Token, error) {
	if len(sealed) <= tinkPrefixLen || sealed[0] != tinkPrefixByte {
		return Token{}, fmt.Errorf("keyset produced a ciphertext without a Tink key prefix")
	}
	return Token{Org: org, KeyID: binary.BigEndian.Uint32(sealed[1:tinkPrefixLen]), Sealed: sealed}, nil
}

// isBase64URL reports whether s holds only the unpadded base64url alphabet.
// The decoder alone would skip CR and LF, letting two strings name one token.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

package identity

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// sessionRefPrefix starts every session reference.
const sessionRefPrefix = "ses_"

// SessionRef is the reference of a login: "ses_" and 22 characters of
// the SHA-256 of its id, the token's sid claim ("sid:VALUE"), else its jti
// ("jti:VALUE"), else the token's digest ("token:HEX"). Caller.Session,
// session stores and audit records hold the reference; the id itself,
// which may be a bearer secret, is kept nowhere.
func SessionRef(id string) string {
	sum := sha256.Sum256([]byte(id))
	return sessionRefPrefix + base64.RawURLEncoding.EncodeToString(sum[:16])
}

// ValidSessionRef reports whether s has the shape of a SessionRef.
func ValidSessionRef(s string) bool {
	rest, ok := strings.CutPrefix(s, sessionRefPrefix)
	if !ok || len(rest) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

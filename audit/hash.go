package audit

import (
	"encoding/base64"
)

// MAC computes a keyed tag: a tink.MAC (HMAC-SHA256).
type MAC interface {
	ComputeMAC(data []byte) ([]byte, error)
}

// Hasher turns identifiers that could name a patient (a path parameter
// such as a phone number or an MRN) into keyed hashes for records, as
// Vault's audit devices do: equal values hash alike under one
// deployment's key, so an investigator who knows a value can find its
// records (`phiguard audit hash`), while the trail alone reveals nothing.
type Hasher struct{ mac MAC }

// NewHasher hashes with m.
func NewHasher(m MAC) *Hasher { return &Hasher{mac: m} }

// hashPrefix starts every keyed hash.
const hashPrefix = "h1:"

// hashBytes is how much of the tag a hash keeps: Tink's 5-byte key id
// and 128 bits of HMAC-SHA256.
const hashBytes = 5 + 16

// Hash returns "h1:" and the base64url of the first 21 bytes of v's tag;
// "h1:?" if the MAC fails (it does not, for HMAC).
func (h *Hasher) Hash(v string) string {
	tag, err := h.mac.ComputeMAC([]byte(v))
	if err != nil || len(tag) < hashBytes {
		return hashPrefix + "?"
	}
	return hashPrefix + base64.RawURLEncoding.EncodeToString(tag[:hashBytes])
}

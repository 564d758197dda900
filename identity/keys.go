package identity

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/tink-crypto/tink-go/v2/jwt"
	"github.com/tink-crypto/tink-go/v2/jwt/jwtecdsa"
	"github.com/tink-crypto/tink-go/v2/jwt/jwtrsassapkcs1"
	"github.com/tink-crypto/tink-go/v2/jwt/jwtrsassapss"
	"github.com/tink-crypto/tink-go/v2/key"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// keySet is a JWK set with one Tink verifier per key, indexed so that a
// token's kid chooses the keys that may verify it.
type keySet struct {
	all   []*setKey            // every key, in set order
	noKID []*setKey            // the keys without a kid, in set order
	byKID map[string][]*setKey // the keys carrying each kid, in set order
}

// setKey is one key of a set.
type setKey struct {
	kid    string
	hasKID bool
	// alg is the JWS algorithm the key verifies ("ES256"); "" when unknown,
	// and then the key is tried whatever the token's alg.
	alg      string
	verifier jwt.Verifier
}

// newKeySet converts jwks with Tink. The whole set is converted and made
// into one verifier first, so that a document Tink refuses is refused with
// Tink's error. Each key of the converted set then gets a keyset and a
// verifier of its own: taking the keys Tink converted, rather than cutting
// the JSON into one-key sets, needs no second JSON reader that would have
// to agree with Tink's on which keys the document holds.
func newKeySet(jwks []byte) (*keySet, error) {
	h, err := jwt.JWKSetToPublicKeysetHandle(jwks)
	if err != nil {
		return nil, err
	}
	if _, err := jwt.NewVerifier(h); err != nil {
		return nil, err
	}
	ks := &keySet{byKID: map[string][]*setKey{}}
	for i := range h.Len() {
		e, err := h.Entry(i)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if e.KeyStatus() != keyset.Enabled {
			continue // as Tink's verifier does; a converted set has none
		}
		k, err := newSetKey(e.Key())
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		ks.all = append(ks.all, k)
		if k.hasKID {
			ks.byKID[k.kid] = append(ks.byKID[k.kid], k)
		} else {
			ks.noKID = append(ks.noKID, k)
		}
	}
	return ks, nil
}

// newSetKey makes a Tink verifier that holds k alone. Tink still applies
// its own kid rule to every token it verifies with k: a key with a kid
// refuses a token whose kid differs.
func newSetKey(k key.Key) (*setKey, error) {
	m := keyset.NewManager()
	id, err := m.AddKey(k)
	if err != nil {
		return nil, err
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, err
	}
	h, err := m.Handle()
	if err != nil {
		return nil, err
	}
	v, err := jwt.NewVerifier(h)
	if err != nil {
		return nil, err
	}
	sk := &setKey{alg: algorithm(k), verifier: v}
	if withKID, ok := k.(interface{ KID() (string, bool) }); ok {
		sk.kid, sk.hasKID = withKID.KID()
	}
	return sk, nil
}

// algorithm names the JWS algorithm of a JWT public key, or "".
func algorithm(k key.Key) string {
	var alg fmt.Stringer
	switch p := k.Parameters().(type) {
	case *jwtecdsa.Parameters:
		alg = p.Algorithm()
	case *jwtrsassapkcs1.Parameters:
		alg = p.Algorithm()
	case *jwtrsassapss.Parameters:
		alg = p.Algorithm()
	default:
		return ""
	}
	return alg.String()
}

// header is what a token's protected header says to choose keys. Neither
// field authorizes anything: Tink checks both again after the signature.
type header struct {
	Alg string  `json:"alg"`
	KID *string `json:"kid"`
}

// readHeader decodes the protected header of a compact JWS: three
// segments, the first base64url without padding (Tink's alphabet) holding
// a JSON object whose alg and kid, when present, are strings. Names are
// matched exactly and a name given twice is refused.
func readHeader(token string) (header, error) {
	var h header
	if strings.Count(token, ".") != 2 {
		return h, ErrInvalidToken
	}
	seg, _, _ := strings.Cut(token, ".")
	if strings.ContainsFunc(seg, notBase64URL) {
		return h, ErrInvalidToken
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return h, ErrInvalidToken
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, ErrInvalidToken
	}
	return h, nil
}

// notBase64URL reports a rune outside the base64url alphabet; Go's decoder
// would skip line breaks that Tink refuses.
func notBase64URL(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
}

// candidates returns the keys that may verify a token with header h. A kid
// that names keys of the set chooses those keys only; a kid that names
// none chooses the keys without a kid; no kid chooses every key. The
// token's kid is chosen by whoever sent it: it only narrows the keys tried.
func (ks *keySet) candidates(h header) []*setKey {
	if h.KID == nil {
		return ks.all
	}
	if named, ok := ks.byKID[*h.KID]; ok {
		return named
	}
	return ks.noKID
}

// verify verifies token with the candidate keys whose algorithm is the
// token's, in set order, and returns what the first that accepts it
// decodes. A token no candidate accepts costs one signature check per
// candidate, and none when there is no candidate.
func (ks *keySet) verify(token string, val *jwt.Validator) (*jwt.VerifiedJWT, error) {
	h, err := readHeader(token)
	if err != nil {
		return nil, err
	}
	for _, k := range ks.candidates(h) {
		if k.alg != "" && k.alg != h.Alg {
			continue
		}
		if vj, err := k.verifier.VerifyAndDecode(token, val); err == nil {
			return vj, nil
		}
	}
	return nil, ErrInvalidToken
}

// unknownKID reports whether token's header names a kid the set does not
// have.
func (ks *keySet) unknownKID(token string) bool {
	h, err := readHeader(token)
	if err != nil || h.KID == nil {
		return false
	}
	_, ok := ks.byKID[*h.KID]
	return !ok
}

package keys

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// An organization's search keys are two Tink keysets beside its data
// keyset, in the same file and under the same wrapping:
//
//   - exact: AES-SIV deterministic AEAD. Equal plaintexts of one org seal
//     to equal tokens (ephi:d1:...), so the app can index, filter and
//     join on them; another org's key gives another token.
//   - words: HMAC-SHA256. Each normalized word of a searchable text
//     becomes an index word, the MAC truncated, which the app's own
//     full-text search indexes next to the token.
//
// Both reveal equality to whoever holds the app's data, which randomized
// tokens (ephi:v1:...) never do: they are used only where the policy asks.

const (
	aesSIVTypeURL = "type.googleapis.com/google.crypto.tink.AesSivKey"
	hmacTypeURL   = "type.googleapis.com/google.crypto.tink.HmacKey"

	searchExact = "exact"
	searchWords = "words"

	// IndexWordPrefix starts every index word. '9' is outside the base32
	// alphabet the rest is written in, so an index word never occurs
	// inside another, and a substring search (SQL LIKE) finds whole words.
	IndexWordPrefix = "w9"
	// MinIndexChars and MaxIndexChars bound the base32 characters of an
	// index word after its prefix (5 bits each).
	MinIndexChars = 2
	MaxIndexChars = 16
)

// ErrNoSearchKeys: the organization's keyset file has no search keys.
var ErrNoSearchKeys = errors.New("organization has no search keys (phiguard keys rotate -org ID -search)")

// indexAlphabet is lower-case base32: letters and the digits 2 to 7, one
// word to every tokenizer (SQL LIKE, PostgreSQL's parser, SQLite FTS5,
// Elasticsearch's standard analyzer), never stemmed (it holds digits).
var indexEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// searchFile is the search keysets as a keyset file holds them.
type searchFile struct {
	ExactKeys []KeyInfo       `json:"exact_keys"`
	Exact     json.RawMessage `json:"exact"`
	WordsKeys []KeyInfo       `json:"words_keys"`
	Words     json.RawMessage `json:"words"`
}

// searchSets is the search keysets unwrapped.
type searchSets struct {
	exact, words         *keyset.Handle
	exactKeys, wordsKeys []KeyInfo
}

// searchAD binds a search keyset to its file's metadata (ad) and its kind.
func searchAD(ad []byte, kind string) []byte {
	return append(slices.Clip(ad), "\nsearch:"+kind...)
}

// unwrapSearch decrypts the file's search keysets with the org's data
// AEAD (they are sealed by it); nil when the file has none.
func (f *orgFile) unwrapSearch(data tink.AEAD) (*searchSets, error) {
	if f.Search == nil {
		return nil, nil
	}
	ad := f.associatedData()
	s := &searchSets{exactKeys: f.Search.ExactKeys, wordsKeys: f.Search.WordsKeys}
	for _, ks := range []struct {
		kind string
		raw  json.RawMessage
		h    **keyset.Handle
		url  string
	}{{searchExact, f.Search.Exact, &s.exact, aesSIVTypeURL}, {searchWords, f.Search.Words, &s.words, hmacTypeURL}} {
		h, err := keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(ks.raw)), data, searchAD(ad, ks.kind))
		if err != nil {
			return nil, fmt.Errorf("unwrap %s search keyset: %w", ks.kind, err)
		}
		if err := checkKeyset(h, ks.url); err != nil {
			return nil, fmt.Errorf("%s search keyset: %w", ks.kind, err)
		}
		*ks.h = h
	}
	return s, nil
}

// seal encrypts one search keyset h with the data AEAD.
func (*searchSets) seal(h *keyset.Handle, data tink.AEAD, ad []byte) (json.RawMessage, error) {
	var ks bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewJSONWriter(&ks), data, ad); err != nil {
		return nil, fmt.Errorf("seal search keyset: %w", err)
	}
	return bytes.TrimSpace(ks.Bytes()), nil
}

// newSearchSets makes fresh search keysets at t.
func newSearchSets(t time.Time) (*searchSets, error) {
	exact, err := keyset.NewHandle(daead.AESSIVKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("generate exact-match keyset: %w", err)
	}
	words, err := keyset.NewHandle(mac.HMACSHA256Tag256KeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("generate index keyset: %w", err)
	}
	return &searchSets{
		exact: exact, exactKeys: []KeyInfo{{ID: primaryID(exact), Created: t}},
		words: words, wordsKeys: []KeyInfo{{ID: primaryID(words), Created: t}},
	}, nil
}

// rotate gives both search keysets a new primary key at t.
func (s *searchSets) rotate(t time.Time) error {
	for _, ks := range []struct {
		h    **keyset.Handle
		keys *[]KeyInfo
		tmpl *tinkpb.KeyTemplate
	}{{&s.exact, &s.exactKeys, daead.AESSIVKeyTemplate()}, {&s.words, &s.wordsKeys, mac.HMACSHA256Tag256KeyTemplate()}} {
		m := keyset.NewManagerFromHandle(*ks.h)
		old := primaryID(*ks.h)
		id, err := m.Add(ks.tmpl)
		if err != nil {
			return err
		}
		if err := m.SetPrimary(id); err != nil {
			return err
		}
		if *ks.h, err = m.Handle(); err != nil {
			return err
		}
		keys := slices.Clone(*ks.keys)
		if k := findKey(keys, old); k != nil {
			k.Superseded = t
		}
		*ks.keys = append(keys, KeyInfo{ID: id, Created: t})
	}
	return nil
}

// checkKeyset accepts only keys of typeURL with Tink's key-id prefix.
func checkKeyset(h *keyset.Handle, typeURL string) error {
	for _, ki := range h.KeysetInfo().GetKeyInfo() {
		if ki.GetTypeUrl() != typeURL {
			return fmt.Errorf("keyset key %08x is %s, want %s", ki.GetKeyId(), ki.GetTypeUrl(), typeURL)
		}
		if ki.GetOutputPrefixType() != tinkpb.OutputPrefixType_TINK {
			return fmt.Errorf("keyset key %08x has output prefix %s, want TINK", ki.GetKeyId(), ki.GetOutputPrefixType())
		}
	}
	return nil
}

// searchPrimitives are an org's search keys, ready to use.
type searchPrimitives struct {
	exact     tink.DeterministicAEAD
	exactAD   []byte
	words     tink.MAC
	exactInfo []KeyStatus
	wordsInfo []KeyStatus
}

func newSearchPrimitives(org string, s *searchSets) (*searchPrimitives, error) {
	if s == nil {
		return nil, nil
	}
	exact, err := daead.New(s.exact)
	if err != nil {
		return nil, err
	}
	words, err := mac.New(s.words)
	if err != nil {
		return nil, err
	}
	return &searchPrimitives{
		exact: exact, exactAD: exactAssociatedData(org), words: words,
		exactInfo: keyStatuses(s.exact, s.exactKeys), wordsInfo: keyStatuses(s.words, s.wordsKeys),
	}, nil
}

// keyStatuses joins h's key statuses with the file's records.
func keyStatuses(h *keyset.Handle, recorded []KeyInfo) []KeyStatus {
	var out []KeyStatus
	for _, ki := range h.KeysetInfo().GetKeyInfo() {
		rec := KeyInfo{ID: ki.GetKeyId()}
		if k := findKey(recorded, ki.GetKeyId()); k != nil {
			rec = *k
		}
		out = append(out, KeyStatus{KeyInfo: rec, Status: keyStatus(ki.GetStatus())})
	}
	return out
}

// search returns org's search keys, or why there are none.
func (k *Keyring) search(org string) (*searchPrimitives, orgKeys, error) {
	o, ok := k.orgs[org]
	switch {
	case !ok:
		return nil, o, ErrUnknownOrg
	case o.err != nil:
		return nil, o, fmt.Errorf("%w: %w", ErrUnavailable, o.err)
	case o.aead == nil:
		return nil, o, ErrShredded
	case o.search == nil:
		return nil, o, ErrNoSearchKeys
	}
	return o.search, o, nil
}

// AppendEncryptExact seals plaintext under org's exact-match key and
// appends the token (ephi:d1:...) to dst: within one org, equal
// plaintexts give equal tokens. Normalize the plaintext first.
func (k *Keyring) AppendEncryptExact(_ context.Context, dst []byte, org string, plaintext []byte) ([]byte, error) {
	s, _, err := k.search(org)
	if err != nil {
		return dst, err
	}
	sealed, err := s.exact.EncryptDeterministically(plaintext, s.exactAD)
	if err != nil {
		return dst, fmt.Errorf("encrypt: %w", err)
	}
	if err := checkSealed(sealed); err != nil {
		return dst, err
	}
	return appendTokenVersion(dst, exactVersion, org, sealed), nil
}

// AppendIndexWord appends the index word of word for org to dst:
// IndexWordPrefix, then chars base32 characters of the word's MAC under
// org's primary index key. word must already be normalized (search.Words).
// Fewer characters mean more words share an index word: fewer things
// learned from the index, more false matches.
func (k *Keyring) AppendIndexWord(dst []byte, org string, word []byte, chars int) ([]byte, error) {
	if chars < MinIndexChars || chars > MaxIndexChars {
		return dst, fmt.Errorf("index words of %d characters: want %d to %d", chars, MinIndexChars, MaxIndexChars)
	}
	s, _, err := k.search(org)
	if err != nil {
		return dst, err
	}
	tag, err := s.words.ComputeMAC(word)
	if err != nil {
		return dst, fmt.Errorf("index word: %w", err)
	}
	if len(tag) < tinkPrefixLen+16 {
		return dst, fmt.Errorf("index word: short MAC")
	}
	var enc [32]byte // 16 bytes of tag encode to 26 characters
	indexEncoding.Encode(enc[:], tag[tinkPrefixLen:tinkPrefixLen+16])
	dst = append(dst, IndexWordPrefix...)
	return append(dst, enc[:chars]...), nil
}

// IsIndexWord reports whether w has the shape of an index word of chars
// characters.
func IsIndexWord[T string | []byte](w T, chars int) bool {
	if chars < MinIndexChars || chars > MaxIndexChars || len(w) != len(IndexWordPrefix)+chars || string(w[:len(IndexWordPrefix)]) != IndexWordPrefix {
		return false
	}
	for i := len(IndexWordPrefix); i < len(w); i++ {
		if c := w[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// decryptExact opens an exact-match token's sealed bytes for o.
func (o orgKeys) decryptExact(sealed []byte) ([]byte, error) {
	if o.search == nil {
		return nil, ErrDecrypt
	}
	pt, err := o.search.exact.DecryptDeterministically(sealed, o.search.exactAD)
	if err != nil {
		return nil, ErrDecrypt
	}
	if c := o.opened[binary.BigEndian.Uint32(sealed[1:tinkPrefixLen])]; c != nil {
		c.Add(1)
	}
	return pt, nil
}

// exactAssociatedData binds an exact-match ciphertext to its version and
// organization.
func exactAssociatedData(org string) []byte {
	return []byte(tokenPrefix + exactVersion + ":" + org)
}

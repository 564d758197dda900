package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
)

// orgFileFormat is the version of the keyset file written today. Version 1
// files (Tink's encrypted keyset alone, wrapped by the local master key)
// are still read.
const orgFileFormat = 2

// orgFile is an organization's keyset file: what wraps the keyset, when
// each of its keys was created (key epochs, for retention), and the
// keyset, encrypted by Tink under the key-encryption key. The metadata is
// bound to the keyset as associated data, so it cannot be edited without
// the key-encryption key.
type orgFile struct {
	Format int    `json:"phiguard_keyset"`
	Org    string `json:"org"`
	// Generation counts the writes of this org's keyset: a reload refuses
	// a file older than the one in force (a backup restored over it).
	Generation uint64          `json:"generation"`
	Wrap       Wrap            `json:"wrap"`
	Keys       []KeyInfo       `json:"keys"`
	Keyset     json.RawMessage `json:"keyset"`
	// Search holds the org's keys for searchable fields, wrapped like
	// Keyset; absent until made (keys create, keys rotate -search).
	Search *searchFile `json:"search,omitempty"`
}

// KeyInfo is what the keyring records of one data key.
type KeyInfo struct {
	// ID is the Tink key id, the <key id> of the tokens it seals.
	ID uint32 `json:"id"`
	// Created is when the key was made; zero for keys of a version 1 file.
	Created time.Time `json:"created"`
	// Superseded is when another key became the primary and this one
	// stopped sealing: retention counts from then, so every value it
	// sealed is kept at least as long as retain. Zero while it is the
	// primary, and for keys of a version 1 file.
	Superseded time.Time `json:"superseded,omitzero"`
}

// associatedData binds a wrapped keyset to its organization and metadata:
// the keyset of one org copied over another's, or metadata edited, never
// unwraps.
func (f *orgFile) associatedData() []byte {
	if f.Format < orgFileFormat {
		return keysetAssociatedData(f.Org)
	}
	var exact, words []KeyInfo
	if f.Search != nil {
		exact, words = f.Search.ExactKeys, f.Search.WordsKeys
	}
	meta, err := json.Marshal(struct {
		Generation uint64    `json:"generation"`
		Wrap       Wrap      `json:"wrap"`
		Keys       []KeyInfo `json:"keys"`
		ExactKeys  []KeyInfo `json:"exact_keys,omitempty"`
		WordsKeys  []KeyInfo `json:"words_keys,omitempty"`
	}{f.Generation, f.Wrap, f.Keys, exact, words})
	if err != nil {
		panic(err) // plain structs always encode
	}
	return append([]byte(fmt.Sprintf("phiguard/keyring/v%d/org:%s\n", f.Format, f.Org)), meta...)
}

// parseOrgFile reads a keyset file of either version.
func parseOrgFile(org string, raw []byte) (*orgFile, error) {
	var probe struct {
		Format          int             `json:"phiguard_keyset"`
		EncryptedKeyset json.RawMessage `json:"encryptedKeyset"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("keyset file: %w", err)
	}
	if probe.Format == 0 && probe.EncryptedKeyset != nil {
		return &orgFile{Format: 1, Org: org, Wrap: Wrap{Provider: ProviderLocal}, Keyset: raw}, nil
	}
	var f orgFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("keyset file: %w", err)
	}
	switch {
	case f.Format != orgFileFormat:
		return nil, fmt.Errorf("keyset file format %d, want %d (a newer phiguard wrote it?)", f.Format, orgFileFormat)
	case f.Org != org:
		return nil, fmt.Errorf("keyset file names org %q", f.Org)
	case f.Wrap.Provider == "":
		return nil, fmt.Errorf("keyset file names no provider")
	}
	return &f, nil
}

// unwrap decrypts the keyset with p.
func (f *orgFile) unwrap(ctx context.Context, p Provider) (*keyset.Handle, error) {
	kek, err := p.KEK(ctx, f.Wrap, f.Org)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	h, err := keyset.ReadWithContext(ctx, keyset.NewJSONReader(bytes.NewReader(f.Keyset)), kek, f.associatedData())
	if err != nil {
		return nil, fmt.Errorf("unwrap keyset (%s): %w", f.Wrap, withCause(kek, err))
	}
	if f.Format < orgFileFormat {
		for _, ki := range h.KeysetInfo().GetKeyInfo() {
			f.Keys = append(f.Keys, KeyInfo{ID: ki.GetKeyId()})
		}
	}
	return h, nil
}

// wrapOrgFile encrypts h for org under w with p and returns the version
// 2 file, the generation-th write of the org's keyset. keys records the
// creation of h's keys, in h's order. search, when not nil, is wrapped
// beside it.
func wrapOrgFile(ctx context.Context, p Provider, w Wrap, org string, h *keyset.Handle, keys []KeyInfo, generation uint64, search *searchSets) ([]byte, error) {
	f := &orgFile{Format: orgFileFormat, Org: org, Generation: generation, Wrap: w, Keys: keys}
	if search != nil {
		f.Search = &searchFile{ExactKeys: search.exactKeys, WordsKeys: search.wordsKeys}
	}
	kek, err := p.KEK(ctx, w, org)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	var ks bytes.Buffer
	ad := f.associatedData()
	if err := h.WriteWithContext(ctx, keyset.NewJSONWriter(&ks), kek, ad); err != nil {
		return nil, fmt.Errorf("wrap keyset (%s): %w", w, withCause(kek, err))
	}
	f.Keyset = bytes.TrimSpace(ks.Bytes())
	if search != nil {
		// The search keysets are sealed by the data keyset itself: no
		// more KMS calls, and shredding the data keys takes them along.
		a, err := aead.New(h)
		if err != nil {
			return nil, err
		}
		if f.Search.Exact, err = search.seal(search.exact, a, searchAD(ad, searchExact)); err != nil {
			return nil, err
		}
		if f.Search.Words, err = search.seal(search.words, a, searchAD(ad, searchWords)); err != nil {
			return nil, err
		}
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// primaryID is the id of h's primary key.
func primaryID(h *keyset.Handle) uint32 { return h.KeysetInfo().GetPrimaryKeyId() }

// keyStatus names a key's status as list shows it.
func keyStatus(s tinkpb.KeyStatusType) string {
	switch s {
	case tinkpb.KeyStatusType_ENABLED:
		return "enabled"
	case tinkpb.KeyStatusType_DISABLED:
		return "disabled"
	case tinkpb.KeyStatusType_DESTROYED:
		return "destroyed"
	}
	return "unknown"
}

// withCause returns the key-encryption key's own error when it recorded
// one (a KMS error, whose kind errors.Is can test), else err: Tink passes
// a KEK's error on as text only.
func withCause(kek any, err error) error {
	if c, ok := kek.(interface{ cause() error }); ok {
		if cause := c.cause(); cause != nil {
			return cause
		}
	}
	return err
}

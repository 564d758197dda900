package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/phiguard/phiguard/internal/orgid"
)

// ErrShredded: the organization's keys were destroyed (crypto-shredding);
// its tokens never open again.
var ErrShredded = errors.New("the organization's keys were shredded")

// shreddedFile is what remains of a shredded organization's keyset file:
// when, and what wrapped it. It holds no key.
type shreddedFile struct {
	Format   int       `json:"phiguard_keyset"`
	Org      string    `json:"org"`
	Wrap     Wrap      `json:"wrap"`
	Shredded time.Time `json:"shredded"`
	// Proof is sealed by the org's primary data key just before it was
	// destroyed: a sidecar that still holds the keys accepts the shred
	// only if they open it, so a forged marker cannot take keys away.
	Proof string `json:"proof"`
}

// shredProof is what a shred's proof seals.
func shredProof(org string, at time.Time) []byte {
	return []byte(`"shredded ` + org + ` ` + at.Format(time.RFC3339) + `"`)
}

// now is the lifecycle's clock; tests move it.
var now = func() time.Time { return time.Now().UTC().Truncate(time.Second) }

// edit unwraps org's keyset, lets change alter it, and writes the result
// back, wrapped by w (the file's own wrapping when w is zero), replacing
// the file in one rename. It returns the file as it was.
func edit(ctx context.Context, dir, org string, p Provider, w Wrap, change func(m *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error)) (*orgFile, error) {
	return editIf(ctx, dir, org, p, w, change, true)
}

// editIf is edit; with always false, a change that leaves the keys as
// they were writes nothing (no KMS call, no file event for the sidecars).
func editIf(ctx context.Context, dir, org string, p Provider, w Wrap, change func(m *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error), always bool) (*orgFile, error) {
	return editSearch(ctx, dir, org, p, w, change, nil, always)
}

// editSearch is editIf; searchChange, when not nil, may also alter the
// search keysets (nil when the file has none).
func editSearch(ctx context.Context, dir, org string, p Provider, w Wrap, change func(m *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error), searchChange func(*searchSets) (*searchSets, error), always bool) (*orgFile, error) {
	if err := orgid.Check(org); err != nil {
		return nil, err
	}
	unlock, err := lockKeyring(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := readOrgFile(dir, org)
	if err != nil {
		return nil, err
	}
	h, err := f.unwrap(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	search, err := f.unwrapSearch(a)
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	m := keyset.NewManagerFromHandle(h)
	keys, err := change(m, slices.Clone(f.Keys))
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	if searchChange != nil {
		if search, err = searchChange(search); err != nil {
			return nil, fmt.Errorf("org %s: %w", org, err)
		}
	}
	if !always && w == (Wrap{}) && slices.Equal(keys, f.Keys) {
		return f, nil
	}
	nh, err := m.Handle()
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	if w == (Wrap{}) {
		w = f.Wrap
	}
	data, err := wrapOrgFile(ctx, p, w, org, nh, keys, f.Generation+1, search)
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	return f, replaceFile(orgPath(dir, org), data)
}

// Rotate adds a new AES-256-GCM key to org's keyset and makes it the
// primary: new tokens are sealed by it, and every older key keeps
// opening the tokens it sealed. It returns the new key's id.
func Rotate(ctx context.Context, dir, org string, p Provider) (uint32, error) {
	var id uint32
	_, err := edit(ctx, dir, org, p, Wrap{}, func(m *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error) {
		var err error
		id, keys, err = rotate(m, keys, now())
		return keys, err
	})
	return id, err
}

// rotate makes a new primary key at t and marks the old one superseded.
func rotate(m *keyset.Manager, keys []KeyInfo, t time.Time) (uint32, []KeyInfo, error) {
	h, err := m.Handle()
	if err != nil {
		return 0, nil, err
	}
	old := primaryID(h)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return 0, nil, err
	}
	if err := m.SetPrimary(id); err != nil {
		return 0, nil, err
	}
	if k := findKey(keys, old); k != nil {
		k.Superseded = t
	}
	return id, append(keys, KeyInfo{ID: id, Created: t}), nil
}

// RotateSearch gives org's search keys a new primary each, or, for a
// file that has none, makes them (made is then true). Exact-match tokens
// and index words made by the old keys no longer match new ones: stored
// values must be re-indexed (phiguard keys reencrypt) for lookups and
// searches to find them; old exact-match tokens keep opening.
func RotateSearch(ctx context.Context, dir, org string, p Provider) (made bool, err error) {
	keep := func(_ *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error) { return keys, nil }
	_, err = editSearch(ctx, dir, org, p, Wrap{}, keep, func(s *searchSets) (*searchSets, error) {
		t := now()
		if s == nil {
			made = true
			return newSearchSets(t)
		}
		return s, s.rotate(t)
	}, true)
	return made, err
}

// Rewrap wraps org's keyset under to, keys unchanged: a new KMS key, or
// from the master key to KMS. Tokens and the app's data are untouched. It
// returns what wrapped the keyset before.
func Rewrap(ctx context.Context, dir, org string, p Provider, to Wrap) (Wrap, error) {
	if to == (Wrap{}) {
		return Wrap{}, errors.New("rewrap needs a key to wrap under")
	}
	f, err := edit(ctx, dir, org, p, to, func(_ *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error) { return keys, nil })
	if err != nil {
		return Wrap{}, err
	}
	return f.Wrap, nil
}

// Retire destroys one key of org's keyset: the tokens it sealed never
// open again. The primary key cannot be retired. Retire a key once every
// token it sealed was re-encrypted (Reencrypt) or may be lost.
// id may also name one of the org's search keys (keys list shows them),
// once a rotation (RotateSearch) and a re-index made it unneeded.
func Retire(ctx context.Context, dir, org string, p Provider, id uint32) error {
	var inData bool
	_, err := editSearch(ctx, dir, org, p, Wrap{}, func(m *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error) {
		if findKey(keys, id) == nil {
			return keys, nil // perhaps a search key
		}
		inData = true
		return retire(m, keys, id)
	}, func(s *searchSets) (*searchSets, error) {
		if inData {
			return s, nil
		}
		if s != nil {
			for _, ks := range []struct {
				h    **keyset.Handle
				keys *[]KeyInfo
			}{{&s.exact, &s.exactKeys}, {&s.words, &s.wordsKeys}} {
				if findKey(*ks.keys, id) == nil {
					continue
				}
				m := keyset.NewManagerFromHandle(*ks.h)
				keys, err := retire(m, *ks.keys, id)
				if err != nil {
					return nil, err
				}
				if *ks.h, err = m.Handle(); err != nil {
					return nil, err
				}
				*ks.keys = keys
				return s, nil
			}
		}
		return nil, fmt.Errorf("key %08x: no such key", id)
	}, true)
	return err
}

func retire(m *keyset.Manager, keys []KeyInfo, id uint32) ([]KeyInfo, error) {
	h, err := m.Handle()
	if err != nil {
		return nil, err
	}
	if primaryID(h) == id {
		return nil, fmt.Errorf("key %08x is the primary; rotate first", id)
	}
	if err := m.Delete(id); err != nil {
		return nil, fmt.Errorf("key %08x: %w", id, err)
	}
	return slices.DeleteFunc(keys, func(k KeyInfo) bool { return k.ID == id }), nil
}

// Expired is what Expire did to one organization.
type Expired struct {
	Rotated uint32   // the new primary's id, when the primary was older than rotateEvery
	Retired []uint32 // the keys older than retain, destroyed
}

// Expire applies an org's key schedule: when rotateEvery > 0 and the
// primary key is older than it, a new primary is made; every key
// superseded more than retain ago (retain > 0) is destroyed, so the
// message content it sealed becomes unreadable everywhere (database,
// backups, replicas) while the rest of each record stays. Retention counts
// from when a key stopped sealing, so every value is kept at least
// retain. The key that was primary when Expire began is never destroyed by
// it (sidecars that have not reloaded may still seal with it), nor are
// keys whose supersession is unknown (version 1 files). A clock earlier
// than a key's creation stops Expire.
func Expire(ctx context.Context, dir, org string, p Provider, rotateEvery, retain time.Duration) (Expired, error) {
	var done Expired
	_, err := editIf(ctx, dir, org, p, Wrap{}, func(m *keyset.Manager, keys []KeyInfo) ([]KeyInfo, error) {
		h, err := m.Handle()
		if err != nil {
			return nil, err
		}
		t := now()
		for _, k := range keys {
			if k.Created.After(t) {
				return nil, fmt.Errorf("key %08x was made %s, after this clock's %s: check the clock", k.ID, k.Created.Format(time.RFC3339), t.Format(time.RFC3339))
			}
		}
		startPrimary := primaryID(h)
		if rotateEvery > 0 {
			if k := findKey(keys, startPrimary); k == nil || k.Created.IsZero() || t.Sub(k.Created) >= rotateEvery {
				if done.Rotated, keys, err = rotate(m, keys, t); err != nil {
					return nil, err
				}
			}
		}
		if retain > 0 {
			for _, k := range slices.Clone(keys) {
				if k.ID == startPrimary || k.ID == done.Rotated || k.Superseded.IsZero() || t.Sub(k.Superseded) < retain {
					continue
				}
				if keys, err = retire(m, keys, k.ID); err != nil {
					return nil, err
				}
				done.Retired = append(done.Retired, k.ID)
			}
		}
		return keys, nil
	}, false)
	return done, err
}

func findKey(keys []KeyInfo, id uint32) *KeyInfo {
	for i := range keys {
		if keys[i].ID == id {
			return &keys[i]
		}
	}
	return nil
}

// Shred destroys org's keyset: its file is replaced by a record of the
// shredding, so every token of the org, wherever it is stored, never opens
// again, and the keyring shows its values masked. The keyset must still
// unwrap (so a typo cannot shred what it cannot read). It returns what
// wrapped the keyset: for an org's own KMS key, schedule that key's
// deletion too (KMSProvider.ScheduleDeletion).
func Shred(ctx context.Context, dir, org string, p Provider) (Wrap, error) {
	if err := orgid.Check(org); err != nil {
		return Wrap{}, err
	}
	unlock, err := lockKeyring(dir)
	if err != nil {
		return Wrap{}, err
	}
	defer unlock()
	f, err := readOrgFile(dir, org)
	if err != nil {
		return Wrap{}, err
	}
	h, err := f.unwrap(ctx, p)
	if err != nil {
		return Wrap{}, fmt.Errorf("org %s: %w", org, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return Wrap{}, fmt.Errorf("org %s: %w", org, err)
	}
	at := now()
	sealed, err := a.Encrypt(shredProof(org, at), associatedData(org))
	if err != nil {
		return Wrap{}, fmt.Errorf("org %s: shred proof: %w", org, err)
	}
	if err := checkSealed(sealed); err != nil {
		return Wrap{}, err
	}
	proof := string(appendToken(nil, org, sealed))
	data, err := json.MarshalIndent(shreddedFile{Format: orgFileFormat, Org: org, Wrap: f.Wrap, Shredded: at, Proof: proof}, "", "  ")
	if err != nil {
		return Wrap{}, err
	}
	return f.Wrap, replaceFile(orgPath(dir, org), append(data, '\n'))
}

// WrapOf reads what wraps org's keyset from its file, without unwrapping.
func WrapOf(dir, org string) (Wrap, error) {
	if err := orgid.Check(org); err != nil {
		return Wrap{}, err
	}
	f, err := readOrgFile(dir, org)
	if err != nil {
		return Wrap{}, err
	}
	return f.Wrap, nil
}

// readOrgFile reads org's keyset file, which must not be a shredded one.
func readOrgFile(dir, org string) (*orgFile, error) {
	raw, err := os.ReadFile(orgPath(dir, org))
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	if isShredded(raw) {
		return nil, fmt.Errorf("org %s: %w", org, ErrShredded)
	}
	f, err := parseOrgFile(org, raw)
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", org, err)
	}
	return f, nil
}

// isShredded reports whether raw is a shredded org's file.
func isShredded(raw []byte) bool {
	var probe struct {
		Shredded *time.Time `json:"shredded"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.Shredded != nil
}

// replaceFile writes data beside path and renames it over path, so a
// reader sees the old file or the new one, never half of one.
func replaceFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keyset-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename itself must survive a crash: a retire or shred that
	// comes back after a power loss would not be one.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lockKeyring takes the keyring's write lock (an exclusive flock on
// orgs/.lock), so that two key commands on one org (a scheduled expire and
// an operator's rotate) do not lose each other's change. It waits for the
// lock.
func lockKeyring(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Join(dir, orgsDir), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, orgsDir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keyring lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("keyring lock: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

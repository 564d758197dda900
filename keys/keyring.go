package keys

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/subtle"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/phiguard/phiguard/internal/orgid"
)

const (
	orgsDir       = "orgs"
	keysetSuffix  = ".json"
	aesGCMTypeURL = "type.googleapis.com/google.crypto.tink.AesGcmKey"
)

// keysetAssociatedData binds a wrapped keyset to its organization, so the
// wrapped keyset of one org copied over another's never unwraps.
func keysetAssociatedData(org string) []byte {
	return []byte("phiguard/keyring/v1/org:" + org)
}

// Keyring holds the unwrapped data keys of every organization in a keyring
// folder. It is read once and never touches the disk or a KMS afterwards;
// it is safe for concurrent use.
type Keyring struct {
	orgs map[string]orgKeys
}

// orgKeys is an organization's data AEAD, the associated data that binds
// its tokens to it, and what the keyring file says of its keys.
type orgKeys struct {
	aead   tink.AEAD // nil when shredded or unavailable
	ad     []byte
	info   OrgInfo
	digest string // of the file it was loaded from
	err    error  // why the keyset is unavailable; nil when loaded
	// stale: the org's file changed but did not load, and this is its
	// last good keyset.
	stale bool
	proof string // a shredded org's shred proof
	// opened counts the tokens each key opened, by key id: evidence that a
	// key is still needed before it is retired.
	opened map[uint32]*atomic.Uint64
	// search holds the org's search keys; nil when its file has none.
	search *searchPrimitives
}

// OrgInfo describes an organization's keys, without key material.
type OrgInfo struct {
	Org     string
	Wrap    Wrap
	Primary uint32
	Keys    []KeyStatus
	// Shredded is when the org's keys were destroyed; zero if they were not.
	Shredded time.Time
	// Generation counts the writes of the org's keyset file; 0 for a
	// version 1 file.
	Generation uint64
	// Exact and Words are the org's search keys (exact-match and index
	// words), and ExactPrimary and WordsPrimary their primaries; empty
	// when it has none.
	Exact, Words               []KeyStatus
	ExactPrimary, WordsPrimary uint32
}

// KeyStatus is one data key of an organization.
type KeyStatus struct {
	KeyInfo
	Status string // enabled, disabled, destroyed
}

// loadConcurrency bounds the keysets unwrapped at once: a KMS is called
// once per org, and a keyring of hundreds of orgs must not burst.
const loadConcurrency = 8

// Open reads and unwraps every organization keyset under dir, a few at a
// time, until ctx ends (give it a deadline: a KMS may hang). It fails if
// any keyset does not unwrap.
func Open(ctx context.Context, dir string, p Provider) (*Keyring, error) {
	k, err := Load(ctx, dir, p, nil)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// ErrUnavailable: the organization's keyset is in the keyring but could
// not be unwrapped (KMS unreachable, a disabled key); requests for it are
// refused until a reload succeeds.
var ErrUnavailable = errors.New("the organization's keyset could not be unwrapped")

// Load reads the keyring under dir as Open does, but keeps what it can:
// a keyset whose file is unchanged since prev (nil for none) is taken from
// prev without unwrapping it again (no KMS call), and a keyset that does
// not unwrap keeps prev's version of it if prev had one, or else is held
// as unavailable (ErrUnavailable for its requests). The keyring is nil
// only when the folder cannot be read; err names every org that did not
// load.
func Load(ctx context.Context, dir string, p Provider, prev *Keyring, opts ...LoadOption) (*Keyring, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	entries, err := os.ReadDir(filepath.Join(dir, orgsDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("keyring %s has no %s folder: run 'phiguard keys init' and 'phiguard keys create'", dir, orgsDir)
		}
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	var orgs []string
	for _, e := range entries {
		org, ok := strings.CutSuffix(e.Name(), keysetSuffix)
		if !ok || e.IsDir() {
			continue
		}
		if err := orgid.Check(org); err != nil {
			return nil, fmt.Errorf("keyring file %s: %w", e.Name(), err)
		}
		orgs = append(orgs, org)
	}
	loaded := make([]orgKeys, len(orgs))
	errs := make([]error, len(orgs))
	sem := make(chan struct{}, loadConcurrency)
	var wg sync.WaitGroup
	for i, org := range orgs {
		wg.Go(func() {
			raw, err := os.ReadFile(orgPath(dir, org))
			if err != nil {
				errs[i] = fmt.Errorf("org %s: %w", org, err)
				return
			}
			digest := sha256Hex(raw)
			if old, ok := prev.org(org); ok && old.digest == digest && old.err == nil && !o.reverify {
				loaded[i] = old
				return
			}
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				errs[i] = fmt.Errorf("org %s: %w", org, ctx.Err())
				return
			}
			loaded[i], errs[i] = loadOrg(ctx, org, raw, p)
			loaded[i].digest = digest
		})
	}
	wg.Wait()
	k := &Keyring{orgs: make(map[string]orgKeys, len(orgs))}
	for i, org := range orgs {
		old, ok := prev.org(org)
		if errs[i] == nil && ok && old.aead != nil && !loaded[i].info.Shredded.IsZero() {
			// A shred of keys in force: only their holder could have sealed
			// its proof, so a forged marker takes nothing away.
			if err := checkShredProof(old, org, loaded[i]); err != nil {
				errs[i] = err
			}
		}
		if errs[i] == nil && ok && old.err == nil && old.info.Shredded.IsZero() && loaded[i].info.Shredded.IsZero() && loaded[i].info.Generation < old.info.Generation {
			// An older file over a newer one: a backup restored, which
			// would bring back retired keys or another wrapping.
			errs[i] = fmt.Errorf("org %s: keyset file generation %d is older than the one in force (%d); kept the one in force", org, loaded[i].info.Generation, old.info.Generation)
		}
		switch {
		case errs[i] == nil:
			for id := range loaded[i].opened {
				if was, ok := old.opened[id]; ok {
					loaded[i].opened[id] = was // a key's count goes on across reloads
				}
			}
			k.orgs[org] = loaded[i]
		case ok && old.err == nil && !(o.reverify && revoked(errs[i])):
			old.stale = true
			k.orgs[org] = old // the last good version
		default:
			k.orgs[org] = orgKeys{err: errs[i], info: OrgInfo{Org: org}}
		}
	}
	return k, errors.Join(errs...)
}

// checkShredProof reports whether the keys in force (old) open the shred
// proof of the marker that replaced their file.
func checkShredProof(old orgKeys, org string, marker orgKeys) error {
	_, _, id, body, err := splitToken([]byte(marker.proof))
	if err == nil {
		var sealed []byte
		if sealed, err = unsealBody(nil, id, body); err == nil {
			var pt []byte
			if pt, err = old.aead.Decrypt(sealed, old.ad); err == nil && string(pt) != string(shredProof(org, marker.info.Shredded)) {
				err = errors.New("the proof names another shred")
			}
		}
	}
	if err != nil {
		return fmt.Errorf("org %s: a shred marker whose proof the keys in force do not open (%v); kept the keys in force", org, err)
	}
	return nil
}

// LoadOption changes how Load reads the keyring.
type LoadOption func(*loadOptions)

type loadOptions struct{ reverify bool }

// Reverify unwraps every keyset again, changed or not, and takes away the
// keys of an org whose KMS key is no longer usable for it (disabled,
// pending deletion, access removed): revocation reaches a running
// sidecar. An org whose KMS is only unreachable keeps its keys.
func Reverify() LoadOption { return func(o *loadOptions) { o.reverify = true } }

// revoked reports whether err says the wrapping key refuses, rather than
// is out of reach.
func revoked(err error) bool {
	return errors.Is(err, ErrKMSKeyUnusable) || errors.Is(err, ErrKMSContext)
}

func (k *Keyring) org(org string) (orgKeys, bool) {
	if k == nil {
		return orgKeys{}, false
	}
	o, ok := k.orgs[org]
	return o, ok
}

// Stale lists the orgs running on their last good keyset because their
// file changed and did not load, sorted.
func (k *Keyring) Stale() []string {
	var out []string
	for org, o := range k.orgs {
		if o.stale {
			out = append(out, org)
		}
	}
	sort.Strings(out)
	return out
}

// Unavailable lists the orgs whose keysets are held as unavailable, sorted.
func (k *Keyring) Unavailable() []string {
	var out []string
	for org, o := range k.orgs {
		if o.err != nil {
			out = append(out, org)
		}
	}
	sort.Strings(out)
	return out
}

func loadOrg(ctx context.Context, org string, raw []byte, p Provider) (orgKeys, error) {
	if isShredded(raw) {
		var sf shreddedFile
		if err := json.Unmarshal(raw, &sf); err != nil || sf.Org != org {
			return orgKeys{}, fmt.Errorf("org %s: shredded keyset file names org %q (%v)", org, sf.Org, err)
		}
		return orgKeys{info: OrgInfo{Org: org, Wrap: sf.Wrap, Shredded: sf.Shredded}, proof: sf.Proof}, nil
	}
	f, err := parseOrgFile(org, raw)
	if err != nil {
		return orgKeys{}, fmt.Errorf("org %s: %w", org, err)
	}
	h, err := f.unwrap(ctx, p)
	if err != nil {
		return orgKeys{}, fmt.Errorf("org %s: %w", org, err)
	}
	if err := checkDataKeyset(h); err != nil {
		return orgKeys{}, fmt.Errorf("org %s: %w", org, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return orgKeys{}, fmt.Errorf("org %s: %w", org, err)
	}
	ss, err := f.unwrapSearch(a)
	if err != nil {
		return orgKeys{}, fmt.Errorf("org %s: %w", org, err)
	}
	search, err := newSearchPrimitives(org, ss)
	if err != nil {
		return orgKeys{}, fmt.Errorf("org %s: %w", org, err)
	}
	info := orgInfo(f, h)
	opened := make(map[uint32]*atomic.Uint64, len(info.Keys))
	for _, k := range info.Keys {
		opened[k.ID] = new(atomic.Uint64)
	}
	if search != nil {
		info.Exact, info.Words = search.exactInfo, search.wordsInfo
		info.ExactPrimary, info.WordsPrimary = primaryID(ss.exact), primaryID(ss.words)
		for _, k := range info.Exact {
			opened[k.ID] = new(atomic.Uint64)
		}
	}
	return orgKeys{aead: a, ad: associatedData(org), info: info, opened: opened, search: search}, nil
}

// orgInfo joins the keyset's key statuses with the file's records.
func orgInfo(f *orgFile, h *keyset.Handle) OrgInfo {
	recorded := make(map[uint32]KeyInfo, len(f.Keys))
	for _, k := range f.Keys {
		recorded[k.ID] = k
	}
	info := OrgInfo{Org: f.Org, Wrap: f.Wrap, Primary: primaryID(h), Generation: f.Generation}
	for _, ki := range h.KeysetInfo().GetKeyInfo() {
		rec := recorded[ki.GetKeyId()]
		rec.ID = ki.GetKeyId()
		info.Keys = append(info.Keys, KeyStatus{KeyInfo: rec, Status: keyStatus(ki.GetStatus())})
	}
	return info
}

// sha256Hex is the hex SHA-256 of data.
func sha256Hex(data []byte) string {
	sum, err := subtle.ComputeHash(subtle.GetHashFunc("SHA256"), data)
	if err != nil {
		panic(err) // SHA256 is always known
	}
	return hex.EncodeToString(sum)
}

// Info describes org's keys; ok is false when the keyring has none.
func (k *Keyring) Info(org string) (info OrgInfo, ok bool) {
	o, ok := k.orgs[org]
	return o.info, ok
}

// checkDataKeyset accepts only AES-GCM keys with Tink's key-id prefix: the
// token layout depends on that prefix.
func checkDataKeyset(h *keyset.Handle) error {
	return checkKeyset(h, aesGCMTypeURL)
}

// Orgs lists the organizations the keyring holds keys for, sorted.
func (k *Keyring) Orgs() []string {
	out := make([]string, 0, len(k.orgs))
	for org := range k.orgs {
		out = append(out, org)
	}
	sort.Strings(out)
	return out
}

// Has reports whether the keyring holds keys for org that are not
// shredded.
func (k *Keyring) Has(org string) bool {
	o, ok := k.orgs[org]
	return ok && o.aead != nil
}

// Encrypt seals plaintext under org's primary key and returns the token.
func (k *Keyring) Encrypt(ctx context.Context, org string, plaintext []byte) (string, error) {
	tok, err := k.AppendEncrypt(ctx, nil, org, plaintext)
	return string(tok), err
}

// AppendEncrypt seals plaintext under org's primary key and appends the
// token to dst. The token's characters need no escaping in JSON or a URL.
func (k *Keyring) AppendEncrypt(_ context.Context, dst []byte, org string, plaintext []byte) ([]byte, error) {
	o, ok := k.orgs[org]
	if !ok {
		return dst, ErrUnknownOrg
	}
	if o.err != nil {
		return dst, fmt.Errorf("%w: %w", ErrUnavailable, o.err)
	}
	if o.aead == nil {
		return dst, ErrShredded
	}
	sealed, err := o.aead.Encrypt(plaintext, o.ad)
	if err != nil {
		return dst, fmt.Errorf("encrypt: %w", err)
	}
	if err := checkSealed(sealed); err != nil {
		return dst, err
	}
	return appendToken(dst, org, sealed), nil
}

// Decrypt opens a token on behalf of org. A token of another organization is
// refused before any key is used.
func (k *Keyring) Decrypt(_ context.Context, org string, token []byte) ([]byte, error) {
	exact, tokOrg, id, body, err := splitToken(token)
	if err != nil {
		return nil, err
	}
	if string(tokOrg) != org {
		return nil, ErrOrgMismatch
	}
	o, ok := k.orgs[org]
	if !ok {
		return nil, ErrUnknownOrg
	}
	if o.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, o.err)
	}
	if o.aead == nil {
		return nil, ErrShredded
	}
	bp := sealedBuffers.Get().(*[]byte)
	defer sealedBuffers.Put(bp)
	sealed, err := unsealBody((*bp)[:0], id, body)
	if err != nil {
		return nil, err
	}
	*bp = sealed[:0] // keep a grown buffer
	if exact {
		return o.decryptExact(sealed)
	}
	pt, err := o.aead.Decrypt(sealed, o.ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	if c := o.opened[binary.BigEndian.Uint32(sealed[1:tinkPrefixLen])]; c != nil {
		c.Add(1)
	}
	return pt, nil
}

// Opened returns, for each key of org, how many tokens it opened since
// the key was loaded (counts go on across reloads of the same process).
func (k *Keyring) Opened(org string) map[uint32]uint64 {
	o := k.orgs[org]
	out := make(map[uint32]uint64, len(o.opened))
	for id, c := range o.opened {
		out[id] = c.Load()
	}
	return out
}

// sealedBuffers hold a token's ciphertext, decoded, while it is opened.
// Ciphertext is not secret; the plaintext is Tink's own allocation.
var sealedBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func orgPath(dir, org string) string {
	return filepath.Join(dir, orgsDir, org+keysetSuffix)
}

// CreateOrg generates a new AES-256-GCM keyset for org, wraps it with the
// key-encryption key the provider names for org and writes it into the
// keyring folder. It refuses to replace an existing keyset: that would make
// every token of the org unreadable. It returns what wraps the keyset.
func CreateOrg(ctx context.Context, dir, org string, p Provider) (Wrap, error) {
	if err := orgid.Check(org); err != nil {
		return Wrap{}, err
	}
	unlock, err := lockKeyring(dir)
	if err != nil {
		return Wrap{}, err
	}
	defer unlock()
	if _, err := os.Stat(orgPath(dir, org)); err == nil {
		return Wrap{}, fmt.Errorf("%s already exists; refusing to replace it", orgPath(dir, org))
	}
	w, err := p.WrapFor(org)
	if err != nil {
		return Wrap{}, err
	}
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return Wrap{}, fmt.Errorf("generate keyset: %w", err)
	}
	t := now()
	search, err := newSearchSets(t)
	if err != nil {
		return Wrap{}, err
	}
	data, err := wrapOrgFile(ctx, p, w, org, h, []KeyInfo{{ID: primaryID(h), Created: t}}, 1, search)
	if err != nil {
		return Wrap{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, orgsDir), 0o700); err != nil {
		return Wrap{}, fmt.Errorf("create keyring folder: %w", err)
	}
	return w, writeNew(orgPath(dir, org), data)
}

// writeNew writes data to a file that must not exist yet, readable by its owner only.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to replace it", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

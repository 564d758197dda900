package explain

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/engine"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/keys"
)

// The engine explain builds gets stand-ins for the parts that would touch
// secrets or the outside world: keys that seal nothing (placeholder
// tokens of the right org), a caller given by the options (no token is
// verified), an audit trail that keeps its records in memory,
// and a keyed hash under a key made for the one run.

// placeholderKeyID is the key id of every placeholder token.
const placeholderKeyID = "00000000"

// placeholderBody is the ciphertext part of every placeholder token: it
// seals nothing (base64url of "phiguard explain placeholder").
const placeholderBody = "cGhpZ3VhcmQgZXhwbGFpbiBwbGFjZWhvbGRlcg"

// openedStandIn is what a token opens to: explain holds no key, so the
// plaintext is never known.
const openedStandIn = `"(explain: the token's plaintext)"`

// standInKeys seals every value into the same placeholder token of the
// org asked for, never reading the plaintext, and takes every well-formed
// token of the org asked for to open: explain holds no key with which to
// tell a genuine token from an altered one.
type standInKeys struct{}

var _ engine.Keys = standInKeys{}

func (standInKeys) AppendEncrypt(_ context.Context, dst []byte, org string, _ []byte) ([]byte, error) {
	return appendPlaceholder(dst, "v1", org), nil
}

func (standInKeys) AppendEncryptExact(_ context.Context, dst []byte, org string, _ []byte) ([]byte, error) {
	return appendPlaceholder(dst, "d1", org), nil
}

func (standInKeys) AppendIndexWord(dst []byte, _ string, _ []byte, chars int) ([]byte, error) {
	dst = append(dst, keys.IndexWordPrefix...)
	for range chars {
		dst = append(dst, 'a')
	}
	return dst, nil
}

func (standInKeys) Decrypt(_ context.Context, org string, token []byte) ([]byte, error) {
	t, err := keys.ParseToken(string(token))
	switch {
	case err != nil:
		return nil, keys.ErrNotToken
	case t.Org != org:
		return nil, keys.ErrOrgMismatch
	}
	return []byte(openedStandIn), nil
}

func appendPlaceholder(dst []byte, version, org string) []byte {
	dst = append(dst, "ephi:"...)
	dst = append(dst, version...)
	dst = append(dst, ':')
	dst = append(dst, org...)
	dst = append(dst, ':')
	dst = append(dst, placeholderKeyID...)
	dst = append(dst, ':')
	return append(dst, placeholderBody...)
}

// flagCaller is the verifier: whatever the sample's Authorization header
// holds, the caller is the one explain was given.
type flagCaller struct{ c identity.Caller }

var _ engine.Verifier = flagCaller{}

func (f flagCaller) Verify(context.Context, []string) (*identity.Caller, error) {
	c := f.c
	c.AMR = slices.Clone(c.AMR)
	return &c, nil
}

// newCaller is the caller a sample is explained for: issued and
// authenticated now, valid for an hour, one session of its own.
func newCaller(org, user, role string, amr []string, now time.Time) identity.Caller {
	return identity.Caller{Org: org, User: user, Role: role, AMR: amr,
		IssuedAt: now, AuthTime: now, Expires: now.Add(time.Hour), Session: "ses_explain"}
}

// memoryTrail keeps copies of the records the engine writes, values of
// recorded fields left out.
type memoryTrail struct {
	mu      sync.Mutex
	records []audit.Record
}

var _ engine.Auditor = (*memoryTrail)(nil)

func (m *memoryTrail) Record(_ context.Context, r *audit.Record) error {
	c := *r
	c.Fields = slices.Clone(r.Fields)
	c.Actions = slices.Clone(r.Actions)
	c.Params = nil
	c.Recorded = make([]audit.Value, len(r.Recorded))
	for i, v := range r.Recorded {
		c.Recorded[i] = audit.Value{Name: v.Name}
	}
	c.BreakGlass = ""
	c.UserAgent = ""
	m.mu.Lock()
	m.records = append(m.records, c)
	m.mu.Unlock()
	return nil
}

func (m *memoryTrail) all() []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.records)
}

// runMAC is an HMAC-SHA256 under a key made for one run: path parameters
// and consent references hash, and nothing outlives the run.
type runMAC struct{ key []byte }

func newRunMAC() runMAC {
	k := make([]byte, 32)
	rand.Read(k)
	return runMAC{key: k}
}

func (m runMAC) ComputeMAC(data []byte) ([]byte, error) {
	h := hmac.New(sha256.New, m.key)
	h.Write(data)
	// A Tink tag starts with a 5-byte key id; audit.Hasher keeps it.
	return append([]byte{0, 0, 0, 0, 0}, h.Sum(nil)...), nil
}

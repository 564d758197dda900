package consent

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phiguard/phiguard/internal/orgid"
)

// DefaultMaxEntries bounds the entries a Memory store holds.
const DefaultMaxEntries = 1 << 20

// Memory is a Store in this process's memory, for one instance and for
// tests: its entries are lost on restart, so a deployment that must
// remember opt-outs uses Redis.
type Memory struct {
	max int
	now func() time.Time

	mu      sync.RWMutex
	n       int
	entries map[string]map[string]memEntry // org, ref
}

type memEntry struct {
	state  State
	at     int64 // Unix milliseconds
	source string
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store holding at most max entries across
// orgs (DefaultMaxEntries when max <= 0): past that, Record of a new
// entry fails with ErrFull, while known entries can still be updated.
func NewMemory(max int) *Memory {
	if max <= 0 {
		max = DefaultMaxEntries
	}
	return &Memory{max: max, now: time.Now, entries: map[string]map[string]memEntry{}}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, org, ref string) (Entry, error) {
	if err := checkGet(org, ref); err != nil {
		return Entry{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[org][ref]
	if !ok {
		return Entry{Org: org, Ref: ref}, nil
	}
	return e.entry(org, ref), nil
}

// Record implements Store.
func (m *Memory) Record(_ context.Context, e Entry) (bool, error) {
	if err := e.Check(); err != nil {
		return false, err
	}
	at := stamp(e, m.now())
	m.mu.Lock()
	defer m.mu.Unlock()
	refs := m.entries[e.Org]
	old, ok := refs[e.Ref]
	switch {
	case ok && old.at > at:
		return false, nil
	case !ok && m.n >= m.max:
		return false, ErrFull
	case refs == nil:
		refs = map[string]memEntry{}
		m.entries[e.Org] = refs
	}
	if !ok {
		m.n++
	}
	refs[e.Ref] = memEntry{state: e.State, at: at, source: e.Source}
	return true, nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, org string, limit int) ([]Entry, error) {
	if err := orgid.Check(org); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	refs := m.entries[org]
	list := make([]Entry, 0, len(refs))
	for ref, e := range refs {
		list = append(list, e.entry(org, ref))
	}
	return sortAndCut(list, limit), nil
}

// Len is how many entries the store holds.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.n
}

// Ping implements Store: memory always answers.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }

func (e memEntry) entry(org, ref string) Entry {
	return Entry{Org: org, Ref: ref, State: e.state, At: atTime(e.at), Source: e.source}
}

// sortAndCut sorts entries by Ref and keeps the first limit (all when
// limit <= 0).
func sortAndCut(list []Entry, limit int) []Entry {
	slices.SortFunc(list, func(a, b Entry) int { return strings.Compare(a.Ref, b.Ref) })
	if limit > 0 && len(list) > limit {
		list = list[:limit:limit]
	}
	return list
}

package codec

import (
	"bytes"
	"hash/maphash"
)

// names finds duplicate member names in the objects of one body, without
// allocating a string per name. (jsontext's own check keeps a map of
// strings for large objects: one allocation per member, which made wide
// objects the costliest bodies.) Names are compared unescaped, exactly as
// jsontext compares them, so "b\u006fdy" and "body" are one name.
//
// The names of every open object sit on one stack: an object's names are
// the entries from its start mark to the top, since the names of a nested
// object are popped when it closes.
type names struct {
	seed    maphash.Seed
	arena   []byte      // the names' bytes, back to back
	entries []nameEntry // stack of the open objects' names
	// index[d] maps a name's hash to its latest entry, for the open
	// object at depth d once it has more than linearNames members; prev
	// chains entries of equal hash. indexed[d] is that object's start
	// mark, or -1. One map per depth: each name is indexed once.
	index   [MaxDepth + 1]map[uint64]int32
	indexed [MaxDepth + 1]int
}

type nameEntry struct {
	off, n int32
	hash   uint64
	prev   int32 // the previous entry with this hash in the indexed object, or -1
}

// linearNames: objects up to this many members are checked by a scan.
const linearNames = 16

func (ns *names) reset() {
	if ns.seed == (maphash.Seed{}) {
		ns.seed = maphash.MakeSeed()
	}
	clear(ns.arena[:cap(ns.arena)]) // names can be data too
	ns.arena, ns.entries = ns.arena[:0], ns.entries[:0]
	for d := range ns.indexed {
		ns.indexed[d] = -1
	}
}

// open marks the start of an object's names.
func (ns *names) open() int { return len(ns.entries) }

// close pops the names of the object at depth d opened at mark.
func (ns *names) close(d, mark int) {
	if mark < len(ns.entries) {
		ns.arena = ns.arena[:ns.entries[mark].off]
		ns.entries = ns.entries[:mark]
	}
	if ns.indexed[d] == mark {
		ns.indexed[d] = -1
		clear(ns.index[d])
	}
}

// add records name in the object at depth d opened at mark and reports
// whether the object already has it.
func (ns *names) add(d, mark int, name []byte) (dup bool) {
	h := maphash.Bytes(ns.seed, name)
	members := ns.entries[mark:]
	prev := int32(-1)
	switch {
	case len(members) < linearNames:
		for _, e := range members {
			if e.hash == h && bytes.Equal(ns.arena[e.off:e.off+e.n], name) {
				return true
			}
		}
	default:
		if ns.indexed[d] != mark {
			// The object has just grown past linearNames: index its names,
			// once.
			if ns.index[d] == nil {
				ns.index[d] = make(map[uint64]int32)
			}
			clear(ns.index[d])
			ns.indexed[d] = mark
			for i := range members {
				j := int32(mark + i)
				e := &ns.entries[j]
				e.prev = -1
				if p, ok := ns.index[d][e.hash]; ok {
					e.prev = p
				}
				ns.index[d][e.hash] = j
			}
		}
		if p, ok := ns.index[d][h]; ok {
			for j := p; j >= 0; j = ns.entries[j].prev {
				e := ns.entries[j]
				if bytes.Equal(ns.arena[e.off:e.off+e.n], name) {
					return true
				}
			}
			prev = p
		}
	}
	off := int32(len(ns.arena))
	ns.arena = append(ns.arena, name...)
	ns.entries = append(ns.entries, nameEntry{off: off, n: int32(len(name)), hash: h, prev: prev})
	if ns.indexed[d] == mark {
		ns.index[d][h] = int32(len(ns.entries) - 1)
	}
	return false
}

package engine

import (
	"math/bits"
	"sync"
)

// Body buffers are lent by size class and given back once a body has been
// rewritten, so a steady stream of requests reuses the same memory: what
// phiguard holds is bounded by the bodies in flight
// (max_concurrent_requests × the body limits), never by traffic. Larger
// bodies are allocated and left to the collector.
//
// The classes are the powers of two from 4 KiB to 256 KiB: a buffer is at
// most twice what it was asked for, so wiping it when it is given back
// costs at most twice the body it held.
const (
	minClassShift = 12 // 4 KiB
	maxClassShift = 18 // 256 KiB
	maxPooled     = 1 << maxClassShift
)

var bodyPools [maxClassShift - minClassShift + 1]sync.Pool

// boxes are the *[]byte a pool entry travels in, kept empty between uses
// so that lending and giving back a buffer allocates nothing.
var boxes sync.Pool

// sizeClass returns the index in bodyPools of the smallest class holding
// n bytes, and that class's size; ok is false above the largest class.
func sizeClass(n int) (i, size int, ok bool) {
	if n > maxPooled {
		return 0, 0, false
	}
	shift := minClassShift
	if n > 1<<minClassShift {
		shift = bits.Len(uint(n - 1))
	}
	return shift - minClassShift, 1 << shift, true
}

// getBuffer returns an empty buffer with room for at least n bytes.
func getBuffer(n int) []byte {
	i, size, ok := sizeClass(n)
	if !ok {
		return make([]byte, 0, n)
	}
	if box, ok := bodyPools[i].Get().(*[]byte); ok {
		b := (*box)[:0]
		*box = nil
		boxes.Put(box)
		return b
	}
	return make([]byte, 0, size)
}

// putBuffer gives b back, wiped: a body may hold PHI. b must not be used
// afterwards. A buffer that is not of a class is left to the collector,
// wiped all the same.
func putBuffer(b []byte) {
	b = b[:cap(b)]
	clear(b)
	i, size, ok := sizeClass(len(b))
	if !ok || size != len(b) {
		return
	}
	box, ok := boxes.Get().(*[]byte)
	if !ok {
		box = new([]byte)
	}
	*box = b[:0]
	bodyPools[i].Put(box)
}

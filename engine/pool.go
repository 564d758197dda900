package engine

import "sync"

// Body buffers are lent by size class and given back once a body has been
// rewritten, so a steady stream of requests reuses the same memory: what
// phiguard holds is bounded by the bodies in flight
// (max_concurrent_requests × the body limits), never by traffic. Larger
// bodies are allocated and left to the collector.
var bodyClasses = [...]int{4 << 10, 32 << 10, 256 << 10}

var bodyPools [len(bodyClasses)]sync.Pool

// boxes are the *[]byte a pool entry travels in, kept empty between uses
// so that lending and giving back a buffer allocates nothing.
var boxes sync.Pool

// getBuffer returns an empty buffer with room for at least n bytes.
func getBuffer(n int) []byte {
	for i, c := range bodyClasses {
		if n <= c {
			if box, ok := bodyPools[i].Get().(*[]byte); ok {
				b := (*box)[:0]
				*box = nil
				boxes.Put(box)
				return b
			}
			return make([]byte, 0, c)
		}
	}
	return make([]byte, 0, n)
}

// putBuffer gives b back, wiped: a body may hold PHI. b must not be used
// afterwards.
func putBuffer(b []byte) {
	for i, c := range bodyClasses {
		if cap(b) == c {
			clear(b[:cap(b)])
			box, ok := boxes.Get().(*[]byte)
			if !ok {
				box = new([]byte)
			}
			*box = b[:0]
			bodyPools[i].Put(box)
			return
		}
	}
}

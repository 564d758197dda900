package engine

import "sync"

// Body buffers are lent by size class and given back once a body has been
// rewritten, so a steady stream of requests reuses the same memory: what
// phiguard holds is bounded by the bodies in flight
// (max_concurrent_requests × the body limits), never by traffic. Larger
// bodies are allocated and left to the collector.
var bodyClasses = [...]int{4 << 10, 32 << 10, 256 << 10}

var bodyPools [len(bodyClasses)]sync.Pool

// getBuffer returns an empty buffer with room for at least n bytes.
func getBuffer(n int) []byte {
	for i, c := range bodyClasses {
		if n <= c {
			if b, ok := bodyPools[i].Get().(*[]byte); ok {
				return (*b)[:0]
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
			b = b[:0]
			bodyPools[i].Put(&b)
			return
		}
	}
}

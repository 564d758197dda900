package proxy

import "sync"

// copyBufferSize is the size of the buffers ReverseProxy copies bodies
// through that phiguard does not rewrite.
const copyBufferSize = 32 << 10

var copyBufferPool = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// copyBuffers lends ReverseProxy its copy buffers from a pool, so a
// passthrough body does not allocate 32 KiB per request. Buffers are
// pointers to arrays: putting one back allocates nothing.
type copyBuffers struct{}

func (copyBuffers) Get() []byte { return copyBufferPool.Get().(*[copyBufferSize]byte)[:] }

// Put wipes a buffer before pooling it: a decrypted answer passes through.
func (copyBuffers) Put(b []byte) {
	if len(b) == copyBufferSize {
		clear(b)
		copyBufferPool.Put((*[copyBufferSize]byte)(b))
	}
}

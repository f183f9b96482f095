package kernel

import "sync"

// chunk is a pooled buffer of the user-space copy.
type chunk = [copyBuf]byte

// copyBuf is the size of a pooled buffer.
const copyBuf = 64 << 10

var chunks = sync.Pool{New: func() any { return new(chunk) }}

// queue is the bytes read from one socket and not yet written to the
// other, in pooled chunks: none are held while it is empty, so an idle
// pair holds no buffer.
type queue struct {
	bufs []*chunk
	lens []int
	head int // offset into bufs[0]
	size int
}

func (q *queue) len() int { return q.size }

// front is the next bytes to write.
func (q *queue) front() []byte {
	if q.size == 0 {
		return nil
	}
	return q.bufs[0][q.head:q.lens[0]]
}

// consume drops n written bytes from the front.
func (q *queue) consume(n int) {
	q.size -= n
	q.head += n
	for len(q.bufs) > 0 && q.head >= q.lens[0] {
		q.head -= q.lens[0]
		chunks.Put(q.bufs[0])
		q.bufs[0] = nil
		q.bufs = q.bufs[1:]
		q.lens = q.lens[1:]
	}
	if len(q.bufs) == 0 {
		q.bufs, q.lens, q.head = nil, nil, 0
	}
}

// push appends b[:n], taking b over.
func (q *queue) push(b *chunk, n int) {
	q.bufs = append(q.bufs, b)
	q.lens = append(q.lens, n)
	q.size += n
}

// reset gives every chunk back.
func (q *queue) reset() { q.consume(q.size) }

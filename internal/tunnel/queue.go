package tunnel

import (
	"net/netip"
	"sync"
)

// Packets waiting for a bubble or connectivity-test answer are the only
// ones the Engine copies: the caller's batch buffers are reused as soon as
// the batch is sent, and a queued packet can wait seconds. Copies go into
// pooled buffers that travel with the packet into Out when the peer becomes
// trusted, and back to the pool at Out.Reset.

// qbufSize holds a packet at Teredo's MTU (1280) with room to spare; larger
// packets (an MTU raised with --mtu) get a buffer of their own.
const qbufSize = 2048

type qbuf struct {
	pool *sync.Pool
	b    [qbufSize]byte
}

func newBufPool() *sync.Pool {
	p := new(sync.Pool)
	p.New = func() any { return &qbuf{pool: p} }
	return p
}

// queued is one waiting packet.
type queued struct {
	buf  *qbuf  // nil for a packet too large for a pooled buffer
	data []byte // the packet, in buf or on its own
	// from is where an incoming packet came from (client connectivity-test
	// case, RFC 4380 §5.2.3 case 6); it is delivered only if the peer's
	// verified mapping turns out to be the same. Zero for outgoing packets.
	from netip.AddrPort
	in   bool
}

// queue is one peer's FIFO, bounded in bytes.
type queue struct {
	items    []queued
	bytes    int
	outgoing int // items from the host: Tick repeats probes only for these
}

// enqueue copies pkt onto q if the peer's and the engine's byte budgets
// allow; it reports whether it did.
func (e *Engine) enqueue(q *queue, pkt []byte, in bool, from netip.AddrPort) bool {
	n := len(pkt)
	if q.bytes+n > e.cfg.PeerQueueBytes {
		return false
	}
	if e.queued.Add(int64(n)) > int64(e.cfg.MaxQueueBytes) {
		e.queued.Add(-int64(n))
		return false
	}
	it := queued{in: in, from: from}
	if n <= qbufSize {
		it.buf = e.pool.Get().(*qbuf)
		it.data = it.buf.b[:n:n]
	} else {
		it.data = make([]byte, n)
	}
	copy(it.data, pkt)
	q.items = append(q.items, it)
	q.bytes += n
	if !in {
		q.outgoing++
	}
	return true
}

// release gives a detached queue's bytes back to the global budget.
func (e *Engine) release(q *queue) {
	e.queued.Add(-int64(q.bytes))
	q.bytes = 0
}

// dropQueue frees every packet of a detached queue, counting them.
func (e *Engine) dropQueue(q *queue) {
	for i := range q.items {
		if b := q.items[i].buf; b != nil {
			b.pool.Put(b)
		}
	}
	e.st.tick.dropped[DropQueueExpired].Add(uint64(len(q.items)))
	e.release(q)
	clear(q.items)
	q.items = q.items[:0]
	q.outgoing = 0
}

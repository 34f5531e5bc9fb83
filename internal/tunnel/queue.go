// SPDX-License-Identifier: MIT

package tunnel

import (
	"math/bits"
	"net/netip"
	"sync"
	"unsafe"
)

// Packets waiting for a bubble or connectivity-test answer are the only
// ones the Engine copies: the caller's batch buffers are reused as soon as
// the batch is sent, and a queued packet can wait seconds. Copies go into
// pooled buffers that travel with the packet into Out when the peer becomes
// trusted, and back to the pool at Out.Reset.
//
// Buffers come in five sizes, 128 to 2048 bytes, and a packet takes the
// smallest that holds it. The queue budgets are charged what a packet
// really holds: its buffer and its queue slot. So they bound memory, not
// packet bytes: with one buffer size for all, a flood of 48-byte packets
// would pin 40 times the budget. At most half a buffer is wasted.

const (
	minBufShift = 7 // the smallest buffer holds 128 bytes
	bufClasses  = 5
	// qbufSize is the largest pooled buffer: a packet at Teredo's MTU
	// (1280) with room to spare; larger packets (an MTU raised with --mtu)
	// get a buffer of their own.
	qbufSize = 1 << (minBufShift + bufClasses - 1)
	// slotBytes is what one queued packet costs besides its buffer.
	slotBytes = int(unsafe.Sizeof(queued{}))
)

type qbuf struct {
	pool *sync.Pool // where it goes back to
	b    []byte
}

// bufPools holds one pool per buffer size.
type bufPools [bufClasses]sync.Pool

func newBufPools() *bufPools {
	ps := new(bufPools)
	for i := range ps {
		p, size := &ps[i], 1<<(minBufShift+i)
		p.New = func() any { return &qbuf{pool: p, b: make([]byte, size)} }
	}
	return ps
}

// bufClass is the index of the smallest pooled buffer for n bytes, n <=
// qbufSize.
func bufClass(n int) int { return max(bits.Len(uint(max(n, 1)-1))-minBufShift, 0) }

// queueCost is what queuing an n-byte packet holds, as the budgets count
// it.
func queueCost(n int) int {
	if n <= qbufSize {
		return 1<<(minBufShift+bufClass(n)) + slotBytes
	}
	return n + slotBytes
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

// queue is one peer's FIFO, bounded in bytes (as queueCost counts them).
type queue struct {
	items    []queued
	bytes    int
	outgoing int // items from the host: Tick repeats probes only for these
}

// enqueue copies pkt onto q if the peer's and the engine's byte budgets
// allow; it reports whether it did.
func (e *Engine) enqueue(q *queue, pkt []byte, in bool, from netip.AddrPort) bool {
	n := len(pkt)
	cost := queueCost(n)
	if q.bytes+cost > e.cfg.PeerQueueBytes {
		return false
	}
	if e.queued.Add(int64(cost)) > int64(e.cfg.MaxQueueBytes) {
		e.queued.Add(-int64(cost))
		return false
	}
	it := queued{in: in, from: from}
	if n <= qbufSize {
		it.buf = e.pools[bufClass(n)].Get().(*qbuf)
		it.data = it.buf.b[:n:n]
	} else {
		it.data = make([]byte, n)
	}
	copy(it.data, pkt)
	q.items = append(q.items, it)
	q.bytes += cost
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

// dropQueue frees every packet of a detached queue, counting them under
// why on the caller's counters c.
func (e *Engine) dropQueue(q *queue, why DropReason, c *counters) {
	c.dropped[why].Add(uint64(len(q.items)))
	e.freeQueue(q)
}

// freeQueue frees every packet of a detached queue without counting them:
// they were sent already (a stale path's copy, see fResend).
func (e *Engine) freeQueue(q *queue) {
	for i := range q.items {
		if b := q.items[i].buf; b != nil {
			b.pool.Put(b)
		}
	}
	e.release(q)
	clear(q.items)
	q.items = q.items[:0]
	q.outgoing = 0
}

// queueDrop lets the peer table drop the queues of the entries it removes
// (the table says why) on the counters of the goroutine that called it.
type queueDrop struct {
	e *Engine
	c *counters
}

func (d queueDrop) drop(q *queue, why DropReason) { d.e.dropQueue(q, why, d.c) }

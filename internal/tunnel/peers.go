// SPDX-License-Identifier: MIT

package tunnel

import (
	"encoding/binary"
	"math/bits"
	"sync"
)

// The peer table is the RFC 4380 §5.2 "list of recent peers", bounded and
// sharded:
//
//   - a shard is a mutex, a Go map from the 16-byte IPv6 address to an index,
//     and a slab of fixed-size, pointer-free entries (so the garbage collector
//     never scans a million peers);
//   - the shard of an address is a keyed hash of it, so nobody can aim a
//     flood at one shard, and the two direction goroutines rarely meet on
//     the same lock;
//   - each shard keeps two LRU lists, ordered by last use on a 1 s grain:
//     "probation" for peers we have not exchanged traffic with (untrusted,
//     or trusted from a packet they sent us unasked) and "protected" for
//     trusted peers we have sent data to. A full shard evicts the oldest
//     probation entry, else the oldest protected entry that has been idle
//     past the validity time, else refuses the newcomer: a flood of spoofed
//     sources or destinations can only churn the probation list.
//   - packet queues live beside the slab, in a map keyed by entry index, for
//     the few peers that have packets waiting;
//   - a small array keyed by the same hash remembers the bubble budgets of
//     removed entries (budgetMemo), so that churning an entry out of the
//     table does not buy its address a fresh budget.

const noIndex = ^uint32(0)

// Entry flags.
const (
	fTrusted   uint8 = 1 << iota // RFC 4380 "trusted" status: the mapping is verified
	fProtected                   // on the protected list (trusted and sent to)
	fQueued                      // has a queue in shard.queues
	fPinging                     // a connectivity test is outstanding; nonce is valid
	fNative                      // not a Teredo address (client connectivity-test peer)
	// fRouted: packets to the peer do not simply go to its mapping from
	// the Teredo socket (a random port, the mapping in its address, a
	// local address: RFC 6081, see Engine.routeOf).
	fRouted
	fExt // has RFC 6081 state in shard.ext
	// fResend: the queue holds a copy of the packet that found a trusted
	// native peer's path stale (see staleTicks), for the relay the test
	// finds if it is another; it is discarded if the path answers as it
	// is.
	fResend
)

// peer is one table entry: 56 bytes, no pointers.
type peer struct {
	addr    [16]byte // the peer's IPv6 address (also the map key)
	mapIP   [4]byte  // mapped IPv4 address packets go to
	mapPort uint16   // mapped UDP port
	flags   uint8
	probes  uint8 // bubbles or pings sent without a direct answer
	lastRx  tick  // last packet accepted from the peer
	lastTx  tick  // last packet, bubble or ping sent to it
	lastUse tick  // last lookup, for LRU order and expiry (1 s grain)
	// lastTest is the last connectivity test to a trusted native peer
	// that stopped answering (see staleTicks).
	lastTest tick
	nonce    [8]byte
	prev     uint32 // LRU neighbours, noIndex at the ends
	next     uint32
}

func (p *peer) has(f uint8) bool { return p.flags&f != 0 }

type list struct{ head, tail uint32 }

const (
	probation = 0
	protected = 1
)

type shard struct {
	mu     sync.Mutex
	index  map[[16]byte]uint32
	peers  []peer
	free   uint32 // free slab slots, linked through next
	lists  [2]list
	queues map[uint32]*queue
	// ext holds a client's RFC 6081 state for the peers that have some,
	// keyed by entry index like queues (rfc6081.go).
	ext   map[uint32]*extState
	n     int // live entries
	limit int // most live entries
	seed  [2]uint64
	memo  [budgetSlots]budgetMemo
	_     [64]byte
}

// budgetSlots is how many removed entries' budgets a shard remembers.
const budgetSlots = 256

// budgetMemo is the bubble (or test) budget of a removed entry: §5.2.6
// allows 4 in 300 s, and an entry evicted by a flood or expired while idle
// must not come back with a fresh 4. The memory is lossy, but a slot
// holding a more used budget that is still running is not overwritten by a
// less used one, so a flood of new destinations (one bubble each) cannot
// wash out the record of one that used all four.
type budgetMemo struct {
	tag    uint32 // high bits of the address hash, with bit 0 set; 0 when free
	last   tick   // the entry's last bubble or test
	probes uint8
}

type table struct {
	shards []shard
	shift  uint // 64 - log2(len(shards))
	seed   [2]uint64
}

// newTable sizes the table for maxPeers: one shard per 1024 peers, a power
// of two between 1 and 64, each holding an equal share (the total may round
// down by less than one entry per shard).
func newTable(maxPeers int, seed [2]uint64) table {
	n := 1
	for n < 64 && n*2*1024 <= maxPeers {
		n *= 2
	}
	t := table{shards: make([]shard, n), shift: uint(64 - bits.TrailingZeros(uint(n))), seed: seed}
	for i := range t.shards {
		s := &t.shards[i]
		s.seed = seed
		s.limit = max(maxPeers/n, 1)
		s.index = make(map[[16]byte]uint32)
		s.queues = make(map[uint32]*queue)
		s.ext = make(map[uint32]*extState)
		s.free = noIndex
		s.lists = [2]list{{noIndex, noIndex}, {noIndex, noIndex}}
	}
	return t
}

// shardOf picks a shard with a keyed mix of the address (a 64-bit
// multiply-xorshift; not cryptographic, but the seed is secret).
func (t *table) shardOf(a *[16]byte) *shard {
	if len(t.shards) == 1 {
		return &t.shards[0]
	}
	return &t.shards[addrHash(a, t.seed)>>t.shift]
}

// addrHash is a keyed mix of an address: its top bits pick the shard, its
// low bits the budget memory slot.
func addrHash(a *[16]byte, seed [2]uint64) uint64 {
	return mix(binary.LittleEndian.Uint64(a[0:8])^seed[0]) ^ mix(binary.LittleEndian.Uint64(a[8:16])^seed[1])
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// All methods below need s.mu held.

func (s *shard) lookup(a *[16]byte) (uint32, bool) {
	i, ok := s.index[*a]
	return i, ok
}

// touch records a lookup: on a 1 s grain, so a busy peer moves to the tail
// of its list at most once a second.
func (s *shard) touch(i uint32, now tick) {
	p := &s.peers[i]
	if since(now, p.lastUse) < ticksPerSecond {
		return
	}
	p.lastUse = now
	l := probation
	if p.has(fProtected) {
		l = protected
	}
	s.unlink(i, l)
	s.pushTail(i, l)
}

// protect moves a trusted peer we send data to onto the protected list.
func (s *shard) protect(i uint32) {
	p := &s.peers[i]
	if p.has(fProtected) {
		return
	}
	s.unlink(i, probation)
	p.flags |= fProtected
	s.pushTail(i, protected)
}

func (s *shard) unlink(i uint32, l int) {
	p := &s.peers[i]
	if p.prev != noIndex {
		s.peers[p.prev].next = p.next
	} else {
		s.lists[l].head = p.next
	}
	if p.next != noIndex {
		s.peers[p.next].prev = p.prev
	} else {
		s.lists[l].tail = p.prev
	}
	p.prev, p.next = noIndex, noIndex
}

func (s *shard) pushTail(i uint32, l int) {
	p := &s.peers[i]
	p.prev, p.next = s.lists[l].tail, noIndex
	if p.prev != noIndex {
		s.peers[p.prev].next = i
	} else {
		s.lists[l].head = i
	}
	s.lists[l].tail = i
}

// insertResult says what making room cost.
type insertResult uint8

const (
	inserted insertResult = iota
	insertedEvicting
	refused
)

// insert adds a fresh untrusted entry for a, evicting if the shard is full.
// A new entry's last reception and transmission are 30 s in the past
// (RFC 4380 §5.2.6), so it is not valid and may be bubbled at once. The
// evicted entry's queue, if any, is dropped through d.
func (s *shard) insert(a *[16]byte, now tick, d queueDrop) (uint32, insertResult) {
	res := inserted
	if s.n >= s.limit {
		victim := s.lists[probation].head
		if victim == noIndex {
			victim = s.lists[protected].head
			if victim == noIndex || since(now, s.peers[victim].lastUse) <= validTicks {
				return noIndex, refused
			}
		}
		s.remove(victim, now, d, DropQueueEvicted)
		res = insertedEvicting
	}
	var i uint32
	if s.free != noIndex {
		i = s.free
		s.free = s.peers[i].next
	} else {
		s.peers = append(s.peers, peer{})
		i = uint32(len(s.peers) - 1)
	}
	s.peers[i] = peer{
		addr:    *a,
		lastRx:  now - validTicks,
		lastTx:  now - validTicks,
		lastUse: now,
		prev:    noIndex,
		next:    noIndex,
	}
	s.index[*a] = i
	s.pushTail(i, probation)
	s.n++
	// An address whose earlier entry went away keeps its running budget.
	h := addrHash(a, s.seed)
	if m := &s.memo[h%budgetSlots]; m.tag == memoTag(h) && since(now, m.last) <= probeWindow {
		s.peers[i].probes, s.peers[i].lastTx = m.probes, m.last
	}
	return i, res
}

func memoTag(h uint64) uint32 { return uint32(h>>32) | 1 }

// remember keeps the budget of entry p, about to be removed, in the memory.
func (s *shard) remember(p *peer, now tick) {
	h := addrHash(&p.addr, s.seed)
	m, tag := &s.memo[h%budgetSlots], memoTag(h)
	switch {
	case m.tag == tag && p.probes == 0:
		*m = budgetMemo{} // answered since: nothing to remember
	case p.probes == 0:
	case m.tag == tag || m.tag == 0 || since(now, m.last) > probeWindow || m.probes <= p.probes:
		*m = budgetMemo{tag: tag, last: p.lastTx, probes: p.probes}
	}
}

// remove frees entry i, remembering its budget; its queue is dropped
// through d, counted under why.
func (s *shard) remove(i uint32, now tick, d queueDrop, why DropReason) {
	p := &s.peers[i]
	s.remember(p, now)
	l := probation
	if p.has(fProtected) {
		l = protected
	}
	s.unlink(i, l)
	if p.has(fQueued) {
		q := s.queues[i]
		delete(s.queues, i)
		d.drop(q, why)
	}
	if x, ok := s.ext[i]; ok {
		d.e.releasePort(x)
		delete(s.ext, i)
	}
	delete(s.index, p.addr)
	*p = peer{next: s.free}
	s.free = i
	s.n--
}

// takeQueue detaches entry i's queue, or returns nil.
func (s *shard) takeQueue(i uint32) *queue {
	p := &s.peers[i]
	if !p.has(fQueued) {
		return nil
	}
	p.flags &^= fQueued
	q := s.queues[i]
	delete(s.queues, i)
	return q
}

// queueOf returns entry i's queue, creating it.
func (s *shard) queueOf(i uint32) *queue {
	p := &s.peers[i]
	if p.has(fQueued) {
		return s.queues[i]
	}
	p.flags |= fQueued
	q := &queue{}
	s.queues[i] = q
	return q
}

// expire removes entries unused for idle, oldest first, at most budget of
// them, and returns how many it removed. Their queues are dropped through
// d. A shard left with a quarter or less of the slab it grew to is
// compacted.
func (s *shard) expire(now, idle tick, budget int, d queueDrop) int {
	n := 0
	for l := range s.lists {
		for n < budget {
			i := s.lists[l].head
			if i == noIndex || since(now, s.peers[i].lastUse) <= idle {
				break
			}
			s.remove(i, now, d, DropQueueExpired)
			n++
		}
	}
	if n > 0 && len(s.peers) >= compactMin && s.n <= len(s.peers)/4 {
		s.compact()
	}
	return n
}

// compactMin is the least slab worth compacting.
const compactMin = 256

// compact moves the live entries into a slab and an index sized for them,
// so that the memory a flood of peers took comes back once they expire: a
// Go map never shrinks, and the slab only reuses its free slots. Entries
// get new indices: the LRU lists and the queues are rebuilt in order.
func (s *shard) compact() {
	peers := make([]peer, 0, s.n)
	index := make(map[[16]byte]uint32, s.n)
	queues := make(map[uint32]*queue, len(s.queues))
	ext := make(map[uint32]*extState, len(s.ext))
	var lists [2]list
	for l := range s.lists {
		lists[l] = list{noIndex, noIndex}
		for i := s.lists[l].head; i != noIndex; i = s.peers[i].next {
			p := s.peers[i]
			ni := uint32(len(peers))
			p.prev, p.next = lists[l].tail, noIndex
			if p.prev != noIndex {
				peers[p.prev].next = ni
			} else {
				lists[l].head = ni
			}
			lists[l].tail = ni
			peers = append(peers, p)
			index[p.addr] = ni
			if p.has(fQueued) {
				queues[ni] = s.queues[i]
			}
			if x, ok := s.ext[i]; ok {
				ext[ni] = x
			}
		}
	}
	s.peers, s.index, s.queues, s.ext, s.lists, s.free = peers, index, queues, ext, lists, noIndex
}

// reset empties the shard and forgets every budget (a new address of ours
// starts afresh with everyone); queues are dropped through d.
func (s *shard) reset(d queueDrop) {
	for _, q := range s.queues {
		d.drop(q, DropQueueReset)
	}
	for _, x := range s.ext {
		d.e.releasePort(x)
	}
	// Fresh maps and slab: the old ones keep the size they grew to.
	s.queues = make(map[uint32]*queue)
	s.ext = make(map[uint32]*extState)
	s.index = make(map[[16]byte]uint32)
	s.peers = nil
	s.free = noIndex
	s.lists = [2]list{{noIndex, noIndex}, {noIndex, noIndex}}
	s.n = 0
	s.memo = [budgetSlots]budgetMemo{}
}

// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"sync"
)

// Global budgets for what other people's packets make us send. A per-peer
// budget (§5.2.6) does not bound a flood of spoofed sources, each of which
// is a new peer, so the sends that traffic from the Teredo side can
// trigger, and connectivity tests of any origin, also draw on token
// buckets shared by all peers.
const (
	// testsPerSecond and testBurst bound connectivity tests; the host's
	// tests and those triggered by incoming packets have separate buckets,
	// so a flood cannot starve the host.
	testsPerSecond = 10
	testBurst      = 10
	// repliesPerSecond and replyBurst bound the bubbles a client sends to
	// origin indications.
	repliesPerSecond = 10
	replyBurst       = 10
	// replySlots remembers the last reply to that many origins (more
	// recent ones take the place of older ones).
	replySlots = 256
	// newPeersPerSecond and newPeerBurst bound the Teredo peers a client
	// adds to its table from datagrams it did not ask for (a peer's
	// bubble or first packet): a peer needs only its own address to pass
	// the checks, so without a bound a flood of spoofed sources fills the
	// table at line rate. Peers the host sends to are not counted.
	newPeersPerSecond = 100
	newPeerBurst      = 200
)

// bucket is a token bucket on the engine's clock: burst sends at once, then
// rate a second. Its owner locks it.
type bucket struct {
	last        tick
	level       int64 // in tenths of a send: one tick of a 1/s rate
	rate, limit int64 // per tick, and the most level holds
}

func newBucket(perSecond, burst int) bucket {
	l := int64(burst) * ticksPerSecond
	return bucket{level: l, rate: int64(perSecond), limit: l}
}

// take spends one send's worth of tokens if there are enough.
func (b *bucket) take(now tick) bool {
	if d := int32(now - b.last); d > 0 {
		b.level = min(b.level+int64(d)*b.rate, b.limit)
		b.last = now
	}
	if b.level < ticksPerSecond {
		return false
	}
	b.level -= ticksPerSecond
	return true
}

// limiter is a bucket shared by goroutines. Only slow paths use it, so a
// mutex is cheap enough.
type limiter struct {
	mu sync.Mutex
	b  bucket
}

func newLimiter(perSecond, burst int) limiter { return limiter{b: newBucket(perSecond, burst)} }

func (l *limiter) take(now tick) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.take(now)
}

// replyGate budgets the bubbles a client sends to origin indications
// (RFC 4380 §5.2.3): at most one per origin every 2 s, as §5.2.6 spaces
// bubbles to a peer, and a global bucket. The origin needs no table entry
// (it is often a relay, known by no address we could key on): a small
// table keyed by a secret hash of the origin remembers the last reply.
// A collision only forgets an older origin, allowing one more reply to it
// within the global budget.
type replyGate struct {
	mu    sync.Mutex
	b     bucket
	seed  uint64
	slots [replySlots]struct {
		origin uint64 // IPv4 and port, with bit 63 set; 0 when free
		last   tick
	}
}

func newReplyGate(seed uint64) replyGate {
	return replyGate{b: newBucket(repliesPerSecond, replyBurst), seed: seed}
}

// allow reports whether a bubble may go to origin now, and if so counts it.
func (g *replyGate) allow(origin netip.AddrPort, now tick) bool { return g.allowKind(origin, 0, now) }

// allowKind is allow for one kind of answer: the two kinds of indirect
// bubble a client sends (RFC 6081's and Miredo's, see probeRound) come
// together from the same origin and are each answered.
func (g *replyGate) allowKind(origin netip.AddrPort, kind uint8, now tick) bool {
	a := origin.Addr().As4()
	k := 1<<63 | uint64(kind)<<56 | uint64(a[0])<<40 | uint64(a[1])<<32 | uint64(a[2])<<24 | uint64(a[3])<<16 | uint64(origin.Port())
	g.mu.Lock()
	defer g.mu.Unlock()
	sl := &g.slots[mix(k^g.seed)%replySlots]
	if sl.origin == k && since(now, sl.last) < probeSpacing {
		return false
	}
	if !g.b.take(now) {
		return false
	}
	sl.origin, sl.last = k, now
	return true
}

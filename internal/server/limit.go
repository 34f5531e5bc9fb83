// SPDX-License-Identifier: MIT

package server

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miredo-go/miredo/pkg/ratelimit"
)

// sendLimiter bounds how many datagrams the server sends to one IPv4 /24
// per second. A router solicitation with a spoofed source gets an
// advertisement about twice its size back, so without a bound the server
// is a reflector anyone can aim; with it, a victim network gets at most
// rate datagrams a second from the whole server. Real clients refresh once
// every 30 s, so the default (5000/s with an equal burst) leaves room for
// well over 100,000 clients behind one /24 of carrier-grade NAT.
//
// One limiter serves every socket loop: a per-loop bound would be
// multiplied by the number of sockets, over which spoofed source ports
// spread. Slots are found by a keyed hash of the /24, so an attacker cannot
// aim collisions; /24s that collide share a bucket, which errs on the side
// of limiting (a collision must never hand a victim's /24 a fresh burst).
// The slots are split into stripes, each behind its own mutex on its own
// cache lines, so two loops rarely wait for each other.
type sendLimiter struct {
	rate    atomic.Uint32 // tokens per second; 0 turns the limiter off (a reload may change it)
	seed    maphash.Seed
	stripes [limiterStripes]limiterStripe
}

const (
	limiterSlots   = 4096
	limiterStripes = 64
)

type limiterStripe struct {
	mu    sync.Mutex
	slots [limiterSlots / limiterStripes]limiterSlot
	_     [64]byte
}

type limiterSlot struct {
	key    uint32 // the /24 (top 24 bits) plus 1, so zero means empty
	bucket ratelimit.Bucket
}

func newSendLimiter(rate uint32) *sendLimiter {
	l := &sendLimiter{seed: maphash.MakeSeed()}
	l.rate.Store(rate)
	return l
}

// allow takes one token for a datagram to a at the batch's time, which it
// reads only when the limiter is on. It is safe for concurrent use.
func (l *sendLimiter) allow(a netip.Addr, clk *batchClock) bool {
	rate := l.rate.Load()
	if rate == 0 || !a.Is4() {
		return true
	}
	now := clk.now()
	b := a.As4()
	key := (uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])) + 1
	h := maphash.Bytes(l.seed, b[:3]) % limiterSlots
	st := &l.stripes[h/(limiterSlots/limiterStripes)]
	st.mu.Lock()
	defer st.mu.Unlock()
	s := &st.slots[h%(limiterSlots/limiterStripes)]
	switch {
	case s.key == 0:
		*s = limiterSlot{key: key, bucket: ratelimit.Full(rate, now)}
	case s.key != key:
		// Another /24 shares the slot: it takes over the bucket as it is,
		// so churning slots with other sources never refills a victim's.
		s.key = key
	}
	return s.bucket.Take(now, rate)
}

// batchClock is a batch's time for the send limiter, in milliseconds since
// start (any monotonic origin): read at most once per batch, and only when
// the limiter is on, so a loop that wakes for each datagram reads no clock
// with it off.
type batchClock struct {
	start time.Time
	ms    int64 // -1 until read
}

func newBatchClock(start time.Time) batchClock { return batchClock{start: start, ms: -1} }

func (c *batchClock) now() int64 {
	if c.ms < 0 {
		c.ms = int64(time.Since(c.start) / time.Millisecond)
	}
	return c.ms
}

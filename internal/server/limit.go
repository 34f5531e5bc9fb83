// SPDX-License-Identifier: MIT

package server

import (
	"hash/maphash"
	"net/netip"
)

// sendLimiter bounds how many datagrams the server sends to one IPv4 /24
// per second. A router solicitation with a spoofed source gets an
// advertisement about twice its size back, so without a bound the server
// is a reflector anyone can aim; with it, a victim network gets at most
// rate datagrams a second from each socket loop. Real clients refresh once
// every 30 s, so the default (5000/s with an equal burst) leaves room for
// well over 100,000 clients behind one /24 of carrier-grade NAT.
//
// Each loop owns its limiter: no locks. Slots are found by a keyed hash of
// the /24, so an attacker cannot aim collisions; /24s that collide share a
// bucket, which errs on the side of limiting (a collision must never hand
// a victim's /24 a fresh burst).
type sendLimiter struct {
	rate  uint32 // tokens per second; 0 turns the limiter off
	seed  maphash.Seed
	slots [limiterSlots]limiterSlot
}

const limiterSlots = 4096

type limiterSlot struct {
	key    uint32 // the /24 (top 24 bits) plus 1, so zero means empty
	tokens uint32
	last   uint32 // milliseconds of the last refill
}

func newSendLimiter(rate uint32) *sendLimiter {
	return &sendLimiter{rate: rate, seed: maphash.MakeSeed()}
}

// allow takes one token for a datagram to a at time now (milliseconds on
// any monotonic origin).
func (l *sendLimiter) allow(a netip.Addr, now uint32) bool {
	if l.rate == 0 || !a.Is4() {
		return true
	}
	b := a.As4()
	key := (uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])) + 1
	s := &l.slots[maphash.Bytes(l.seed, b[:3])%limiterSlots]
	switch {
	case s.key == 0:
		*s = limiterSlot{key: key, tokens: l.rate, last: now}
	case s.key != key:
		// Another /24 shares the slot: it takes over the bucket as it is,
		// so churning slots with other sources never refills a victim's.
		s.key = key
	}
	if elapsed := now - s.last; int32(elapsed) > 0 {
		if add := uint64(elapsed) * uint64(l.rate) / 1000; add > 0 {
			if t := uint64(s.tokens) + add; t >= uint64(l.rate) {
				s.tokens, s.last = l.rate, now
			} else {
				// Keep the fraction of a token not yet earned.
				s.tokens = uint32(t)
				s.last += uint32(add * 1000 / uint64(l.rate))
			}
		}
	}
	if s.tokens == 0 {
		return false
	}
	s.tokens--
	return true
}

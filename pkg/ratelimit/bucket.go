// SPDX-License-Identifier: MIT

// Package ratelimit holds the token bucket the daemons bound what they send
// with: the server per IPv4 /24 (a slot table around one Bucket each), the
// test responder for all askers at once.
package ratelimit

// Bucket is a token bucket filled at rate tokens a second up to rate, on a
// millisecond clock of the caller's choosing (any monotonic origin). It is
// 16 bytes with no lock, so callers can keep many in a table and guard them
// as they see fit; the zero Bucket is empty and starts filling at time 0.
type Bucket struct {
	tokens uint32
	// last is the time of the last refill in milliseconds: 64 bits, so no
	// idle time makes the difference wrap (a 32-bit clock refused a bucket
	// drained and then left alone for 25 days, forever).
	last int64
}

// Full returns a bucket holding rate tokens at time now.
func Full(rate uint32, now int64) Bucket { return Bucket{tokens: rate, last: now} }

// Take refills b for the time since its last refill and takes one token, if
// there is one, at time now.
func (b *Bucket) Take(now int64, rate uint32) bool {
	if elapsed := now - b.last; elapsed > 0 && rate > 0 {
		if add := uint64(elapsed) * uint64(rate) / 1000; add > 0 {
			if t := uint64(b.tokens) + add; t >= uint64(rate) {
				b.tokens, b.last = rate, now
			} else {
				// Keep the fraction of a token not yet earned.
				b.tokens = uint32(t)
				b.last += int64(add * 1000 / uint64(rate))
			}
		}
	}
	if b.tokens == 0 {
		return false
	}
	b.tokens--
	return true
}

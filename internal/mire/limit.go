// SPDX-License-Identifier: MIT

package mire

import (
	"sync"

	"github.com/miredo-go/miredo/pkg/ratelimit"
)

// limiter bounds the replies the responder sends per second, all askers
// together: one token bucket of rate tokens a second holding at most rate.
// Each reply is at most as large as its request, but for a parameter
// problem (the quoted packet plus 48 bytes); without a bound, requests with
// a spoofed source would aim all of them at a victim. One budget for all
// keeps the responder free of any state per peer, at the price that a
// flood from one source starves the others: for a test responder, the
// right trade.
type limiter struct {
	mu     sync.Mutex
	rate   uint32
	bucket ratelimit.Bucket
}

func newLimiter(rate uint32) *limiter {
	return &limiter{rate: rate, bucket: ratelimit.Full(rate, 0)}
}

// allow takes one token at time now (milliseconds since the responder
// started). It is safe for concurrent use.
func (l *limiter) allow(now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bucket.Take(now, l.rate)
}

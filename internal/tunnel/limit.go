package tunnel

import "sync"

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
)

// limiter is a token bucket on the engine's clock: burst sends at once,
// then rate a second. Only slow paths use it, so a mutex is cheap enough.
type limiter struct {
	mu          sync.Mutex
	last        tick
	level       int64 // in tenths of a send: one tick of a 1/s rate
	rate, limit int64 // per tick, and the most level holds
}

func newLimiter(perSecond, burst int) limiter {
	l := int64(burst) * ticksPerSecond
	return limiter{level: l, rate: int64(perSecond), limit: l}
}

// take spends one send's worth of tokens if there are enough.
func (l *limiter) take(now tick) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := int32(now - l.last); d > 0 {
		l.level = min(l.level+int64(d)*l.rate, l.limit)
		l.last = now
	}
	if l.level < ticksPerSecond {
		return false
	}
	l.level -= ticksPerSecond
	return true
}

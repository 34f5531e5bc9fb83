// SPDX-License-Identifier: MIT

package server

import (
	"net/netip"
	"testing"
)

func TestSendLimiter(t *testing.T) {
	l := newSendLimiter(10)
	a := netip.MustParseAddr("198.51.100.2")
	same24 := netip.MustParseAddr("198.51.100.77")
	other := netip.MustParseAddr("203.0.113.2")
	got := 0
	for range 25 {
		if l.allow(a, at(1000)) {
			got++
		}
	}
	if got != 10 {
		t.Fatalf("burst: %d allowed, want 10", got)
	}
	if l.allow(same24, at(1000)) {
		t.Error("another address of the same /24 got past the empty bucket")
	}
	if !l.allow(other, at(1000)) {
		t.Error("another /24 was limited")
	}
	if l.allow(a, at(1050)) {
		t.Error("a token came back after 50 ms at 10/s")
	}
	if !l.allow(a, at(1100)) {
		t.Error("no token after 100 ms at 10/s")
	}
	n := 0
	for range 100 {
		if l.allow(a, at(60000)) {
			n++
		}
	}
	if n != 10 {
		t.Errorf("after a long pause: %d allowed, want the burst of 10", n)
	}
	// Churn from other /24s does not refill a drained /24's bucket, even
	// when they share its slot.
	v := newSendLimiter(10)
	for range 10 {
		v.allow(a, at(5000))
	}
	for i := range 20000 {
		v.allow(netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1}), at(5000))
	}
	if v.allow(a, at(5000)) {
		t.Error("a drained /24 got a token back from other sources' churn")
	}

	// Fractions of a token are kept: at 100/s, two datagrams every 15 ms
	// for 1.5 s get 150 tokens, not the 100 that dropping each refill's
	// remainder would give.
	f := newSendLimiter(100)
	for range 100 {
		f.allow(a, at(0))
	}
	allowed := 0
	for i := 1; i <= 100; i++ {
		for range 2 {
			if f.allow(a, at(int64(15*i))) {
				allowed++
			}
		}
	}
	if allowed < 149 || allowed > 151 {
		t.Errorf("%d datagrams allowed in 1.5 s at 100/s, want 150", allowed)
	}

	off := newSendLimiter(0)
	for range 1000 {
		if !off.allow(a, at(0)) {
			t.Fatal("a limiter with rate 0 refused")
		}
	}
}

func TestSendLimiterAllocatesNothing(t *testing.T) {
	l := newSendLimiter(5000)
	a := netip.MustParseAddr("198.51.100.2")
	now := int64(0)
	if n := testing.AllocsPerRun(1000, func() { now++; l.allow(a, at(now)) }); n != 0 {
		t.Errorf("allow allocates %v times", n)
	}
}

// TestSendLimiterLongIdle: a /24 drained and then silent for longer than a
// 32-bit millisecond clock can tell apart from "earlier" (25 to 50 days)
// gets its burst back; with the old clock it stayed refused for good.
func TestSendLimiterLongIdle(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.2")
	day := int64(24 * 3600 * 1000)
	for _, idle := range []int64{1, 24, 25, 30, 49, 50, 60, 400} {
		l := newSendLimiter(10)
		start := int64(1000)
		for range 10 {
			l.allow(a, at(start))
		}
		if l.allow(a, at(start)) {
			t.Fatal("not drained")
		}
		if !l.allow(a, at(start+idle*day)) {
			t.Errorf("after %d days idle: still refused", idle)
		}
	}
}

// at is a batch clock that reads ms.
func at(ms int64) *batchClock { return &batchClock{ms: ms} }

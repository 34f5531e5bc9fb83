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
		if l.allow(a, 1000) {
			got++
		}
	}
	if got != 10 {
		t.Fatalf("burst: %d allowed, want 10", got)
	}
	if l.allow(same24, 1000) {
		t.Error("another address of the same /24 got past the empty bucket")
	}
	if !l.allow(other, 1000) {
		t.Error("another /24 was limited")
	}
	if l.allow(a, 1050) {
		t.Error("a token came back after 50 ms at 10/s")
	}
	if !l.allow(a, 1100) {
		t.Error("no token after 100 ms at 10/s")
	}
	n := 0
	for range 100 {
		if l.allow(a, 60000) {
			n++
		}
	}
	if n != 10 {
		t.Errorf("after a long pause: %d allowed, want the burst of 10", n)
	}
	off := newSendLimiter(0)
	for range 1000 {
		if !off.allow(a, 0) {
			t.Fatal("a limiter with rate 0 refused")
		}
	}
}

func TestSendLimiterAllocatesNothing(t *testing.T) {
	l := newSendLimiter(5000)
	a := netip.MustParseAddr("198.51.100.2")
	now := uint32(0)
	if n := testing.AllocsPerRun(1000, func() { now++; l.allow(a, now) }); n != 0 {
		t.Errorf("allow allocates %v times", n)
	}
}

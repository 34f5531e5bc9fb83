// SPDX-License-Identifier: MIT

package xdpio

import (
	"net/netip"
	"testing"
	"time"
)

// newTestCache is a hopCache without its resolver goroutine.
func newTestCache(max int) *hopCache {
	return &hopCache{
		hops:    map[uint32]hop{},
		pending: map[uint32]netip.Addr{},
		max:     max,
		ttl:     time.Second,
		wake:    make(chan struct{}, 1),
	}
}

func TestHopCacheLookup(t *testing.T) {
	c := newTestCache(10)
	dst, src := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.10")
	mac := [6]byte{2, 0, 0, 0, 0, 9}
	const now = int64(1e12)

	if _, ok := c.lookupLocked(dst, src, now); ok {
		t.Fatal("empty cache found a hop")
	}
	if got, queued := c.pending[key(dst)]; !queued || got != src {
		t.Fatalf("miss not queued with its source: %v %v", got, queued)
	}
	if len(c.wake) != 1 {
		t.Error("miss did not wake the resolver")
	}
	c.lookupLocked(dst, src, now)
	if len(c.pending) != 1 {
		t.Errorf("second miss queued again: %d pending", len(c.pending))
	}
	delete(c.pending, key(dst))

	c.insertLocked(key(dst), hop{mac: mac, expires: now + 10}, now)
	if got, ok := c.lookupLocked(dst, src, now+9); !ok || got != mac {
		t.Errorf("fresh entry: %v %v", got, ok)
	}
	if _, ok := c.lookupLocked(dst, src, now+10); ok || len(c.pending) != 1 {
		t.Errorf("expired entry used (%v) or not queued (%d pending)", ok, len(c.pending))
	}
	delete(c.pending, key(dst))
	c.insertLocked(key(dst), hop{kernel: true, expires: now + 10}, now)
	if _, ok := c.lookupLocked(dst, src, now); ok || len(c.pending) != 0 {
		t.Errorf("kernel entry: ok %v, %d pending", ok, len(c.pending))
	}
}

func TestHopCacheBounded(t *testing.T) {
	c := newTestCache(4)
	const now = int64(1e12)
	for i := range 4 {
		c.insertLocked(uint32(i), hop{expires: now + int64(i)}, now)
	}
	// Entries 0 and 1 have expired at now+1: they make room, live ones
	// stay.
	c.insertLocked(100, hop{expires: now + 50}, now+1)
	if len(c.hops) != 3 {
		t.Fatalf("%d entries, want 3", len(c.hops))
	}
	for _, k := range []uint32{2, 3, 100} {
		if _, ok := c.hops[k]; !ok {
			t.Errorf("live entry %d evicted", k)
		}
	}
	c.insertLocked(5, hop{expires: now + 50}, now+1)
	// Nothing expired: some entry goes, the cache stays at 4.
	c.insertLocked(101, hop{expires: now + 50}, now+1)
	if _, ok := c.hops[101]; !ok || len(c.hops) != 4 {
		t.Errorf("full cache: new entry %v, %d entries", ok, len(c.hops))
	}
	// Replacing an existing key evicts nothing.
	c.insertLocked(101, hop{expires: now + 60}, now+1)
	if len(c.hops) != 4 {
		t.Errorf("update changed the size to %d", len(c.hops))
	}
}

func TestHopCachePendingBounded(t *testing.T) {
	c := newTestCache(10)
	src := netip.MustParseAddr("192.0.2.10")
	for i := range maxPending + 10 {
		c.lookupLocked(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), src, 0)
	}
	if len(c.pending) != maxPending {
		t.Errorf("%d pending, want the bound %d", len(c.pending), maxPending)
	}
}

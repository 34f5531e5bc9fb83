// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"testing"

	"github.com/miredo-go/miredo/pkg/proto"
)

// trustedPair sets up an engine with a trusted, active peer and returns a
// packet each way.
func trustedPair(tb testing.TB, mode Mode) (e *Engine, toPeer, fromPeer []byte, from netip.AddrPort) {
	en := newEnv(&testing.T{}, mode)
	en.trust(peerAddr, peerMap)
	if mode == Client {
		return en.e, pkt(selfAddr, peerAddr, 1200), pkt(peerAddr, selfAddr, 1200), peerMap
	}
	return en.e, pkt(native, peerAddr, 1200), pkt(peerAddr, native, 1200), peerMap
}

// TestZeroAllocs: forwarding to and from a trusted peer allocates nothing,
// in both roles.
func TestZeroAllocs(t *testing.T) {
	for _, mode := range []Mode{ConeRelay, Client} {
		e, to, back, from := trustedPair(t, mode)
		var out Out
		// Warm up Out's slices.
		e.FromTunnel(to, &out)
		e.FromUDP(back, from, &out)
		out.Reset()
		if n := testing.AllocsPerRun(1000, func() {
			e.FromTunnel(to, &out)
			out.Reset()
		}); n != 0 {
			t.Errorf("mode %d: FromTunnel allocates %.1f per packet", mode, n)
		}
		if n := testing.AllocsPerRun(1000, func() {
			e.FromUDP(back, from, &out)
			out.Reset()
		}); n != 0 {
			t.Errorf("mode %d: FromUDP allocates %.1f per packet", mode, n)
		}
		if st := e.Stats(); st.Encapsulated < 1000 || st.Delivered < 1000 {
			t.Errorf("mode %d: not forwarded: %+v", mode, st)
		}
	}
}

// TestZeroAllocsBubbles: even the slow path's bubbles, once Out has grown,
// are built without allocating (the HMAC is written over sha256.Sum256).
func TestZeroAllocsBubbles(t *testing.T) {
	k := peerAddr.As16()
	e := New(Config{Mode: ConeRelay})
	if n := testing.AllocsPerRun(100, func() { _ = e.bubbleSource(&k, 1) }); n != 0 {
		t.Errorf("bubbleSource allocates %.1f", n)
	}
}

func BenchmarkFromTunnelTrusted(b *testing.B) {
	e, to, _, _ := trustedPair(b, ConeRelay)
	var out Out
	b.SetBytes(int64(len(to)))
	b.ReportAllocs()
	for b.Loop() {
		e.FromTunnel(to, &out)
		out.Reset()
	}
}

func BenchmarkFromUDPTrusted(b *testing.B) {
	e, _, back, from := trustedPair(b, ConeRelay)
	var out Out
	b.SetBytes(int64(len(back)))
	b.ReportAllocs()
	for b.Loop() {
		e.FromUDP(back, from, &out)
		out.Reset()
	}
}

// BenchmarkFromTunnelTrustedBigTable measures the same path with a million
// peers in the table (cache misses instead of a hot entry).
func BenchmarkFromTunnelTrustedBigTable(b *testing.B) {
	const n = 1 << 20
	en := newEnv(&testing.T{}, ConeRelay, func(c *Config) { c.MaxPeers = n })
	pkts := make([][]byte, 0, 4096)
	for i := range n {
		a := nth(i)
		en.trust(a, peerMap)
		if i%(n/4096) == 0 {
			pkts = append(pkts, pkt(native, a, 1200))
		}
	}
	var out Out
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		en.e.FromTunnel(pkts[i%len(pkts)], &out)
		out.Reset()
		i++
	}
}

// BenchmarkNewPeer is the slow path: a packet for an unknown peer is
// queued (a copy) and bubbled (an HMAC), and the peer answers.
func BenchmarkNewPeer(b *testing.B) {
	en := newEnv(&testing.T{}, ConeRelay, func(c *Config) { c.MaxPeers = 1 << 16 })
	var out Out
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		a := nth(i % (1 << 16))
		m, _ := proto.ParseAddress(a)
		en.e.FromTunnel(pkt(native, a, 100), &out)
		en.e.FromUDP(bubble(a, native), m.Mapping(), &out)
		out.Reset()
		i++
	}
}

// BenchmarkIdlePeerBytes reports the heap cost of an idle trusted peer in
// a table of a million.
func BenchmarkIdlePeerBytes(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(idlePeerBytes(1<<20), "bytes/peer")
	}
}

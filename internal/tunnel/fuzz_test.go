// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// fuzzEnv is an engine with one of each kind of peer: trusted, pending
// (bubbled, packets queued) and, for a client, a native peer under test.
func fuzzEnv(t *testing.T, mode Mode) *env {
	en := newEnv(t, mode%3)
	en.trust(peerAddr, peerMap)
	src := native
	if en.e.cfg.Mode == Client {
		src = selfAddr
		en.tun(pkt(src, native2, 20))
	}
	en.tun(pkt(src, teredoAddr(serverIP, peerMap2), 20))
	return en
}

// checkOut asserts what must hold whatever came in: no UDP to anything but
// a global unicast IPv4 address and a real port (a client may also reach a
// peer behind its own NAT at a private address, never 0/8, loopback,
// multicast or broadcast), every packet sent parses as a Teredo datagram,
// every packet to the host is well-formed IPv6, and a relay delivers only
// Teredo-sourced packets to native destinations (plus its own ICMPv6
// errors).
func checkOut(t *testing.T, en *env, fromTunnel bool) {
	t.Helper()
	check := func(m udpio.Message) {
		ok := proto.IsGlobalUnicastIPv4(m.Addr.Addr())
		if en.e.cfg.Mode == Client {
			ok = unicastIPv4(m.Addr.Addr())
		}
		if !ok || m.Addr.Port() == 0 {
			t.Fatalf("sent to %v", m.Addr)
		}
		var e proto.Envelope
		if err := proto.ParseEnvelope(m.Buf[:m.N], &e); err != nil {
			t.Fatalf("sent a malformed packet: %v", err)
		}
	}
	for _, m := range en.out.UDP {
		check(m)
	}
	for _, m := range en.out.Via {
		if en.e.cfg.Mode != Client {
			t.Fatalf("a relay sent from a random port")
		}
		check(m.Message)
	}
	for _, b := range en.out.Local {
		ip, _, err := proto.ParseIPv6(b)
		if err != nil {
			t.Fatalf("host got a malformed packet: %v", err)
		}
		if en.e.cfg.Mode != Client && !fromTunnel {
			if !proto.HasPrefix(ip.Src(), proto.DefaultPrefix) || proto.HasPrefix(ip.Dst(), proto.DefaultPrefix) || !ip.Dst().IsGlobalUnicast() {
				t.Fatalf("relay delivered %v -> %v", ip.Src(), ip.Dst())
			}
		}
	}
}

// rfc6081Seeds are bubbles with RFC 6081 trailers: an indirect bubble
// with every trailer, a solicitation, an advertisement, and trailers a
// receiver must drop or stop at.
func rfc6081Seeds() [][]byte {
	all := trailers{nonce: nonce(1), alts: []netip.AddrPort{peerLocal, peerMap2}, randomPort: 41000}
	return [][]byte{
		viaServer(peerMap, trBubble(peerAddr, selfAddr, all)),
		trBubble(peerAddr, selfAddr, trailers{nonce: nonce(2), discovery: proto.DiscoverySolicitation, hasDisc: true}),
		trBubble(peerAddr, selfAddr, trailers{nonce: nonce(3), discovery: proto.DiscoveryAdvertisement, hasDisc: true}),
		append(bubble(peerAddr, selfAddr), 0x41, 0),
		append(bubble(peerAddr, selfAddr), byte(proto.TrailerAlternateAddress), 8, 0, 0, 10, 0, 0, 3, 0, 0),
	}
}

func addSeeds(f *testing.F) {
	withOrigin := append(proto.AppendOrigin(nil, peerMap), bubble(peerAddr, selfAddr)...)
	for _, s := range append([][]byte{
		pkt(peerAddr, native, 8), pkt(peerAddr, selfAddr, 8), bubble(peerAddr, native), withOrigin,
		pkt(native, selfAddr, 8), pkt(native, peerAddr, 8), pkt(selfAddr, native2, 8),
		proto.AppendEchoReply(nil, proto.EchoFields{Src: native2, Dst: selfAddr, Data: make([]byte, 8)}),
		append(proto.AppendNonceAuth(nil, [8]byte{1}), pkt(peerAddr, native, 8)...),
		{}, {0}, {0, 0}, {0x60},
	}, rfc6081Seeds()...) {
		for mode := range 3 {
			f.Add(s, []byte{198, 51, 100, 2}, uint16(40000), uint8(mode), uint8(0))
		}
	}
}

func FuzzFromUDP(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, ip []byte, port uint16, mode, wait uint8) {
		en := fuzzEnv(t, Mode(mode))
		var a [4]byte
		copy(a[:], ip)
		from := netip.AddrPortFrom(netip.AddrFrom4(a), port)
		if mode&0x80 != 0 {
			from = server
		}
		en.clk.advance(time.Duration(wait) * 100 * time.Millisecond)
		en.udp(b, from)
		checkOut(t, en, false)
		en.tick()
		checkOut(t, en, false)
	})
}

func FuzzFromTunnel(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, _ []byte, _ uint16, mode, wait uint8) {
		en := fuzzEnv(t, Mode(mode))
		en.clk.advance(time.Duration(wait) * 100 * time.Millisecond)
		en.tun(b)
		checkOut(t, en, true)
		en.clk.advance(2 * time.Second)
		en.tick()
		checkOut(t, en, true)
	})
}

// FuzzFromRandomPort: whatever comes to a random port (an echo test's
// answers, its peer's bubbles and packets, anything else) keeps what
// checkOut holds, with an echo test running and a port-preserving peer
// being set up.
func FuzzFromRandomPort(f *testing.F) {
	var n [proto.NonceLen]byte
	for _, s := range append(rfc6081Seeds(),
		ra(n, peerMap), bubble(peerAddr, selfAddr), pkt(peerAddr, selfAddr, 8), []byte{0, 1, 0, 0}) {
		f.Add(s, []byte{198, 51, 100, 2}, uint16(40000), false, uint8(0))
		f.Add(s, []byte{192, 0, 2, 10}, uint16(proto.Port), true, uint8(5))
	}
	f.Fuzz(func(t *testing.T, b []byte, ip []byte, port uint16, seq bool, wait uint8) {
		self := symSelf
		self.PortPreserving = !seq
		en, ports := extEnv(t, self)
		en.tun(pkt(selfAddr, peerAddr, 20))
		en.udp(viaServer(peerMap, trBubble(peerAddr, selfAddr, trailers{nonce: nonce(1), randomPort: 41000})), server)
		if len(ports.open) == 0 {
			t.Fatal("no random port opened")
		}
		var a [4]byte
		copy(a[:], ip)
		from := netip.AddrPortFrom(netip.AddrFrom4(a), port)
		en.clk.advance(time.Duration(wait) * 100 * time.Millisecond)
		en.out.Reset()
		en.e.FromRandomPort(b, from, ports.open[0], &en.out)
		checkOut(t, en, false)
		en.tick()
		checkOut(t, en, false)
	})
}

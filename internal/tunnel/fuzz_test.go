// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
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
// a global unicast IPv4 address and a real port, every packet to the host
// is well-formed IPv6, and a relay delivers only Teredo-sourced packets to
// native destinations (plus its own ICMPv6 errors).
func checkOut(t *testing.T, en *env, fromTunnel bool) {
	t.Helper()
	for _, m := range en.out.UDP {
		if !proto.IsGlobalUnicastIPv4(m.Addr.Addr()) || m.Addr.Port() == 0 {
			t.Fatalf("sent to %v", m.Addr)
		}
		if _, _, err := proto.ParseIPv6(m.Buf[:m.N]); err != nil {
			t.Fatalf("sent a malformed packet: %v", err)
		}
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

func addSeeds(f *testing.F) {
	withOrigin := append(proto.AppendOrigin(nil, peerMap), bubble(peerAddr, selfAddr)...)
	for _, s := range [][]byte{
		pkt(peerAddr, native, 8), pkt(peerAddr, selfAddr, 8), bubble(peerAddr, native), withOrigin,
		pkt(native, selfAddr, 8), pkt(native, peerAddr, 8), pkt(selfAddr, native2, 8),
		proto.AppendEchoReply(nil, proto.EchoFields{Src: native2, Dst: selfAddr, Data: make([]byte, 8)}),
		append(proto.AppendNonceAuth(nil, [8]byte{1}), pkt(peerAddr, native, 8)...),
		{}, {0}, {0, 0}, {0x60},
	} {
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

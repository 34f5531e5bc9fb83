// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// A rule case: table state, one packet in, what must come out.
type ruleCase struct {
	name  string
	mode  Mode
	setup func(en *env)
	// in: a packet from the host (tun) or a datagram from "from" (udp).
	tun  []byte
	udp  []byte
	from netip.AddrPort
	// expectations
	want    verdict
	udpTo   []netip.AddrPort // destinations of out.UDP, in order
	local   int              // packets in out.Local
	icmp    uint8            // when local > 0 and icmp != 0: first Local is an ICMPv6 error of this type...
	code    uint8            // ...and code
	check   func(t *testing.T, en *env)
	selfOff bool // client not qualified
	// disable turns RFC 6081 extensions off: RFC 4380's rules alone.
	disable Extensions
}

func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, tc.mode, func(c *Config) { c.Disable = tc.disable })
			if tc.selfOff {
				en.e.SetSelf(Self{})
			}
			if tc.setup != nil {
				tc.setup(en)
			}
			var v verdict
			if tc.tun != nil {
				v = en.tun(tc.tun)
			} else {
				v = en.udp(tc.udp, tc.from)
			}
			if v != tc.want {
				t.Errorf("verdict %+v (%v), want %+v (%v)", v, v.reason, tc.want, tc.want.reason)
			}
			if got := en.sentTo(); !slices.Equal(got, tc.udpTo) {
				t.Errorf("UDP to %v, want %v", got, tc.udpTo)
			}
			if len(en.out.Local) != tc.local {
				t.Errorf("%d packets to the host, want %d", len(en.out.Local), tc.local)
			}
			if tc.icmp != 0 && len(en.out.Local) > 0 {
				ip := proto.IPv6(en.out.Local[0])
				m, err := proto.ParseICMPv6(ip)
				if err != nil || m.Type() != tc.icmp || m.Code() != tc.code {
					t.Errorf("host got %x (%v), want ICMPv6 %d/%d", en.out.Local[0], err, tc.icmp, tc.code)
				}
			}
			if tc.check != nil {
				tc.check(t, en)
			}
		})
	}
}

func TestFromTunnelRules(t *testing.T) {
	badServer := teredoAddr(netip.MustParseAddr("10.0.0.1"), peerMap)
	badClient := teredoAddr(serverIP, netip.MustParseAddrPort("192.168.1.2:4000"))
	zeroServer := teredoAddr(netip.IPv4Unspecified(), peerMap)
	icmpErr := proto.AppendDestUnreachable(nil, native2, 0, proto.IPv6(pkt(native, native2, 8)))
	stale := func(en *env) {
		en.trust(peerAddr, peerMap)
		en.clk.advance(31 * time.Second)
	}
	cases := []ruleCase{
		{name: "short", mode: ConeRelay, tun: []byte{0x60, 0, 0}, want: drop(DropMalformed)},
		{name: "not IPv6", mode: ConeRelay, tun: append([]byte{0x45}, make([]byte, 59)...), want: drop(DropMalformed)},
		{name: "length past the packet", mode: ConeRelay, tun: pkt(native, peerAddr, 10)[:45], want: drop(DropMalformed)},
		{name: "multicast", mode: ConeRelay, tun: pkt(native, netip.MustParseAddr("ff02::1"), 8), want: drop(DropMulticast)},
		{name: "client multicast", mode: Client, tun: pkt(selfAddr, netip.MustParseAddr("ff05::2"), 8), want: drop(DropMulticast)},
		{name: "client not qualified", mode: Client, selfOff: true, tun: pkt(native2, native, 8),
			want: drop(DropNotQualified), local: 1, icmp: proto.ICMPv6DstUnreachable, code: proto.UnreachAddress},
		{name: "relay native destination", mode: ConeRelay, tun: pkt(native, native2, 8),
			want: drop(DropNotTeredoDst), local: 1, icmp: proto.ICMPv6DstUnreachable, code: proto.UnreachAddress,
			check: func(t *testing.T, en *env) {
				ip := proto.IPv6(en.out.Local[0])
				if ip.Src() != native2 || ip.Dst() != native {
					t.Errorf("error %v -> %v, want from the unreachable %v to %v", ip.Src(), ip.Dst(), native2, native)
				}
			}},
		{name: "relay no error about an error", mode: ConeRelay, tun: icmpErr, want: drop(DropNotTeredoDst)},
		{name: "client native to native", mode: Client, tun: pkt(native2, native, 8),
			want: drop(DropProhibited), local: 1, icmp: proto.ICMPv6DstUnreachable, code: proto.UnreachProhibited},
		{name: "server IPv4 not global", mode: ConeRelay, tun: pkt(native, badServer, 8), want: drop(DropNonGlobal)},
		{name: "server IPv4 zero", mode: Client, tun: pkt(selfAddr, zeroServer, 8), want: drop(DropNonGlobal)},
		{name: "client IPv4 not global", mode: ConeRelay, tun: pkt(native, badClient, 8), want: drop(DropNonGlobal)},
		{name: "trusted", mode: ConeRelay, setup: func(en *env) { en.trust(peerAddr, peerMap2) },
			tun: pkt(native, peerAddr, 8), want: sent, udpTo: []netip.AddrPort{peerMap2}},
		{name: "client trusted native", mode: Client, setup: func(en *env) { en.trust(native, relayMap) },
			tun: pkt(selfAddr, native, 8), want: sent, udpTo: []netip.AddrPort{relayMap}},
		{name: "trusted but silent 31 s", mode: ConeRelay, setup: stale,
			tun: pkt(native, peerAddr, 8), want: queuedV, udpTo: []netip.AddrPort{server}},
		{name: "cone relay: indirect bubble", mode: ConeRelay,
			tun: pkt(native, peerAddr, 8), want: queuedV, udpTo: []netip.AddrPort{server}},
		{name: "restricted relay: direct, then indirect", mode: RestrictedRelay,
			tun: pkt(native, peerAddr, 8), want: queuedV, udpTo: []netip.AddrPort{peerMap, server}},
		{name: "client behind restricted NAT: both, direct first", mode: Client,
			tun: pkt(selfAddr, peerAddr, 8), want: queuedV, udpTo: []netip.AddrPort{peerMap, server}},
		{name: "client behind cone NAT: indirect", mode: Client,
			setup: func(en *env) { en.e.SetSelf(Self{Addr: selfAddr, Server: server, Cone: true}) },
			tun:   pkt(selfAddr, peerAddr, 8), want: queuedV, udpTo: []netip.AddrPort{server}},
		{name: "client native: connectivity test", mode: Client,
			tun: pkt(selfAddr, native, 8), want: queuedV, udpTo: []netip.AddrPort{server},
			check: func(t *testing.T, en *env) {
				ip := proto.IPv6(en.out.UDP[0].Buf)
				m, err := proto.ParseICMPv6(ip)
				if err != nil || m.Type() != proto.ICMPv6EchoRequest || ip.Src() != selfAddr || ip.Dst() != native || len(m.Body()) != 8 {
					t.Fatalf("not our echo request: %x (%v)", []byte(ip), err)
				}
				p, _ := en.peer(native)
				if string(m.Body()) != string(p.nonce[:]) || !p.has(fPinging) || p.has(fTrusted) {
					t.Errorf("peer %+v does not hold the nonce %x", p, m.Body())
				}
			}},
	}
	runRules(t, cases)
}

func TestFromUDPRules(t *testing.T) {
	// Keys come from detRand, so every env bubbles peerAddr from ourLL
	// (at its start, in key epoch 0).
	k := peerAddr.As16()
	ourLL := newEnv(t, ConeRelay).e.bubbleSource(&k, 0)
	untrusted := func(en *env) { en.tun(pkt(native, peerAddr, 8)) } // the relay sent to the peer
	withOrigin := func(origin netip.AddrPort, p []byte) []byte { return append(proto.AppendOrigin(nil, origin), p...) }
	nonglobal := netip.MustParseAddrPort("10.0.0.2:4000")
	toRelay := pkt(peerAddr, native, 8)
	cases := []ruleCase{
		// Relay (§5.4.2).
		{name: "garbage", mode: ConeRelay, udp: []byte("GET / HTTP/1.1\r\n"), from: peerMap, want: drop(DropMalformed)},
		{name: "two origins", mode: ConeRelay, udp: withOrigin(peerMap, withOrigin(peerMap, toRelay)), from: peerMap, want: drop(DropMalformed)},
		{name: "sender not global", mode: ConeRelay, udp: toRelay, from: nonglobal, want: drop(DropNonGlobal)},
		{name: "native source", mode: ConeRelay, udp: pkt(native2, native, 8), from: peerMap, want: drop(DropNotTeredoSrc)},
		{name: "link-local source", mode: ConeRelay, udp: pkt(netip.MustParseAddr("fe80::1"), native, 8), from: peerMap, want: drop(DropLinkLocalSrc)},
		{name: "multicast destination", mode: ConeRelay, udp: pkt(peerAddr, netip.MustParseAddr("ff02::1"), 8), from: peerMap, want: drop(DropMulticast)},
		{name: "Teredo to Teredo", mode: ConeRelay, setup: func(en *env) { en.trust(peerAddr, peerMap) },
			udp: pkt(peerAddr, selfAddr, 8), from: peerMap, want: drop(DropBadDst)},
		{name: "to link-local", mode: ConeRelay, setup: func(en *env) { en.trust(peerAddr, peerMap) },
			udp: pkt(peerAddr, netip.MustParseAddr("fe80::2"), 8), from: peerMap, want: drop(DropBadDst)},
		{name: "to loopback", mode: ConeRelay, udp: pkt(peerAddr, netip.IPv6Loopback(), 8), from: peerMap, want: drop(DropBadDst)},
		{name: "to IPv4-mapped", mode: ConeRelay, udp: pkt(peerAddr, netip.MustParseAddr("::ffff:192.0.2.1"), 8), from: peerMap, want: drop(DropBadDst)},
		{name: "unknown peer", mode: ConeRelay, udp: toRelay, from: peerMap, want: drop(DropUnknownPeer)},
		{name: "unknown peer bubble", mode: ConeRelay, udp: bubble(peerAddr, netip.MustParseAddr("fe80::1")), from: peerMap, want: drop(DropUnknownPeer)},
		{name: "known peer, spoofed mapping", mode: ConeRelay, setup: untrusted, udp: toRelay, from: peerMap2, want: drop(DropMismatch)},
		{name: "trusted peer, other mapping", mode: ConeRelay, setup: func(en *env) { en.trust(peerAddr, peerMap2) },
			udp: pkt(peerAddr, native, 8), from: relayMap, want: drop(DropMismatch)},
		{name: "symmetric NAT bubble to our source", mode: ConeRelay, setup: untrusted, udp: bubble(peerAddr, ourLL), from: peerMap2,
			want: consumed, udpTo: []netip.AddrPort{peerMap2},
			check: func(t *testing.T, en *env) {
				p, _ := en.peer(peerAddr)
				if !p.has(fTrusted) || p.mapping() != peerMap2 || !p.has(fProtected) {
					t.Errorf("peer %+v: want trusted at %v, protected", p, peerMap2)
				}
			}},
		{name: "symmetric NAT bubble to another source", mode: ConeRelay, setup: untrusted,
			udp: bubble(peerAddr, netip.MustParseAddr("fe80::1234")), from: peerMap2, want: drop(DropMismatch)},
		{name: "matching mapping verifies", mode: ConeRelay, setup: untrusted, udp: toRelay, from: peerMap,
			want: sent, udpTo: []netip.AddrPort{peerMap}, local: 1},
		{name: "trusted", mode: ConeRelay, setup: func(en *env) { en.trust(peerAddr, peerMap) },
			udp: toRelay, from: peerMap, want: sent, local: 1},
		{name: "trusted with trailer", mode: ConeRelay, setup: func(en *env) { en.trust(peerAddr, peerMap) },
			udp: append(pkt(peerAddr, native, 8), 1, 2, 3), from: peerMap, want: sent, local: 1,
			check: func(t *testing.T, en *env) {
				if len(en.out.Local[0]) != proto.IPv6HeaderLen+8 {
					t.Errorf("trailer delivered: %d bytes", len(en.out.Local[0]))
				}
			}},
		{name: "trusted bubble not delivered", mode: ConeRelay, setup: func(en *env) { en.trust(peerAddr, peerMap) },
			udp: bubble(peerAddr, native), from: peerMap, want: consumed},

		// Client (§5.2.3).
		{name: "client not qualified", mode: Client, selfOff: true, udp: pkt(peerAddr, selfAddr, 8), from: peerMap, want: drop(DropNotQualified)},
		{name: "indirect bubble via our server", mode: Client, disable: AllExtensions,
			udp: withOrigin(peerMap, bubble(peerAddr, selfAddr)), from: server, want: consumed, udpTo: []netip.AddrPort{peerMap},
			check: func(t *testing.T, en *env) {
				src, dst := en.bubbleAt(0)
				if src != selfAddr || dst != peerAddr {
					t.Errorf("reply bubble %v -> %v, want %v -> %v", src, dst, selfAddr, peerAddr)
				}
			}},
		{name: "relay's bubble via our server", mode: Client,
			udp: withOrigin(relayMap, bubble(netip.MustParseAddr("fe80::abcd"), selfAddr)), from: server, want: consumed, udpTo: []netip.AddrPort{relayMap},
			check: func(t *testing.T, en *env) {
				if _, dst := en.bubbleAt(0); dst != netip.MustParseAddr("fe80::abcd") {
					t.Errorf("reply bubble to %v, want the relay's link-local source", dst)
				}
			}},
		{name: "server bubble without origin", mode: Client, disable: AllExtensions, udp: bubble(peerAddr, selfAddr), from: server, want: consumed, udpTo: []netip.AddrPort{peerMap}},
		{name: "origin not global", mode: Client, udp: withOrigin(nonglobal, bubble(peerAddr, selfAddr)), from: server, want: consumed},
		{name: "bubble from a non-server", mode: Client, udp: withOrigin(peerMap, bubble(peerAddr, selfAddr)), from: relayMap, want: drop(DropMismatch)},
		{name: "not for us", mode: Client, udp: pkt(peerAddr, native, 8), from: peerMap, want: drop(DropBadDst)},
		{name: "client link-local source", mode: Client, udp: pkt(netip.MustParseAddr("fe80::1"), selfAddr, 8), from: peerMap, want: drop(DropLinkLocalSrc)},
		{name: "new Teredo peer at its mapping", mode: Client, udp: pkt(peerAddr, selfAddr, 8), from: peerMap, want: sent, local: 1,
			check: func(t *testing.T, en *env) {
				p, ok := en.peer(peerAddr)
				if !ok || !p.has(fTrusted) || p.has(fProtected) {
					t.Errorf("peer %+v: want trusted on probation", p)
				}
			}},
		{name: "Teredo peer elsewhere", mode: Client, udp: pkt(peerAddr, selfAddr, 8), from: peerMap2, want: drop(DropMismatch)},
		{name: "native source: queued and tested", mode: Client, udp: pkt(native, selfAddr, 8), from: relayMap,
			want: queuedV, udpTo: []netip.AddrPort{server}},
		{name: "trusted native via another relay", mode: Client, setup: func(en *env) { en.trust(native, relayMap) },
			udp: pkt(native, selfAddr, 8), from: relay2Map, want: queuedV, udpTo: []netip.AddrPort{server}},
		{name: "trusted native", mode: Client, setup: func(en *env) { en.trust(native, relayMap) },
			udp: pkt(native, selfAddr, 8), from: relayMap, want: sent, local: 1},
	}
	runRules(t, cases)
}

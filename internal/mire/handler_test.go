// SPDX-License-Identifier: MIT

package mire

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/miredo-go/miredo/pkg/proto"
)

var (
	me     = netip.MustParseAddr("192.0.2.40")
	asker  = netip.MustParseAddrPort("198.51.100.2:40000")
	native = netip.MustParseAddr("2001:db8:2::2")
)

// teredo is a Teredo address with server s and mapping m.
func teredo(prefix uint32, s netip.Addr, flags uint16, m netip.AddrPort) netip.Addr {
	return proto.Address{Prefix: prefix, Server: s, Flags: flags, MappedPort: m.Port(), MappedAddr: m.Addr()}.Addr()
}

var (
	mireAddr = teredo(proto.DefaultPrefix, me, 0, netip.AddrPortFrom(me, MappedPort))
	peer     = teredo(proto.DefaultPrefix, netip.MustParseAddr("192.0.2.10"), 0x04c8, asker)
)

func echoReq(src, dst netip.Addr, data string) []byte {
	return proto.AppendEchoRequest(nil, proto.EchoFields{Src: src, Dst: dst, HopLimit: 64, ID: 0x4242, Seq: 7, Data: []byte(data)})
}

// edit returns a copy of b changed by f.
func edit(b []byte, f func([]byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

// withNext is a header-only packet with next header nh and n zero bytes of
// payload.
func withNext(src, dst netip.Addr, nh uint8, n int) []byte {
	b := proto.AppendIPv6Header(nil, proto.IPv6Fields{PayloadLength: uint16(n), NextHeader: nh, HopLimit: 64, Src: src, Dst: dst})
	return append(b, make([]byte, n)...)
}

func icmp(src, dst netip.Addr, typ uint8, body int) []byte {
	b := withNext(src, dst, proto.ProtoICMPv6, 4+body)
	b[40] = typ
	c := proto.ICMPv6Checksum(src, dst, b[40:])
	b[42], b[43] = byte(c>>8), byte(c)
	return b
}

func TestHandle(t *testing.T) {
	h := NewHandler(me)
	good := echoReq(peer, mireAddr, "hello")
	goodReply := proto.AppendEchoReply(nil, proto.EchoFields{Src: mireAddr, Dst: peer, HopLimit: 255, ID: 0x4242, Seq: 7, Data: []byte("hello")})
	otherPrefix := teredo(0x3ffe831f, me, 0xffff, netip.AddrPortFrom(me, MappedPort))
	bubble := proto.AppendBubble(nil, peer, mireAddr, 0)
	llBubble := proto.AppendBubble(nil, netip.MustParseAddr("fe80::483b:bdbc:45b0:e661"), mireAddr, 0)
	udp6 := withNext(peer, mireAddr, 17, 8)
	origin := proto.AppendOrigin(nil, netip.MustParseAddrPort("203.0.113.7:9999"))
	auth := proto.AppendNonceAuth(nil, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})

	cases := []struct {
		name   string
		b      []byte
		from   netip.AddrPort
		on     Port
		reason DropReason // NotDropped: a reply is expected
		kind   Kind
		want   []byte // the reply, when not nil
	}{
		{"echo", good, asker, OnMappedPort, NotDropped, EchoReply, goodReply},
		{"echo behind auth and origin", append(append(auth, origin...), good...), asker, OnMappedPort, NotDropped, EchoReply, goodReply},
		{"echo with a trailer", append(append([]byte(nil), good...), 1, 2, 3, 4), asker, OnMappedPort, NotDropped, EchoReply, goodReply},
		{"echo, other code", edit(good, func(b []byte) { b[41] = 1; b[43]-- }), asker, OnMappedPort, NotDropped, EchoReply, goodReply},
		{"echo, any hop limit", edit(good, func(b []byte) { b[7] = 0 }), asker, OnMappedPort, NotDropped, EchoReply, goodReply},
		{"echo keeps class and flow", edit(good, func(b []byte) { copy(b, []byte{0x6a, 0xbc, 0xde, 0xf1}) }), asker, OnMappedPort, NotDropped, EchoReply,
			edit(goodReply, func(b []byte) { copy(b, []byte{0x6a, 0xbc, 0xde, 0xf1}) })},
		{"echo from native IPv6", echoReq(native, mireAddr, "x"), asker, OnMappedPort, NotDropped, EchoReply,
			proto.AppendEchoReply(nil, proto.EchoFields{Src: mireAddr, Dst: native, HopLimit: 255, ID: 0x4242, Seq: 7, Data: []byte("x")})},
		{"echo, other prefix and flags", echoReq(peer, otherPrefix, "x"), asker, OnMappedPort, NotDropped, EchoReply,
			proto.AppendEchoReply(nil, proto.EchoFields{Src: otherPrefix, Dst: peer, HopLimit: 255, ID: 0x4242, Seq: 7, Data: []byte("x")})},
		{"echo header only", icmp(peer, mireAddr, proto.ICMPv6EchoRequest, 4), asker, OnMappedPort, NotDropped, EchoReply, nil},
		{"bubble on 3544", bubble, asker, OnServerPort, NotDropped, Bubble, proto.AppendBubble(nil, mireAddr, peer, 0)},
		{"Miredo's bubble from a link-local source", llBubble, asker, OnServerPort, NotDropped, Bubble,
			proto.AppendBubble(nil, mireAddr, netip.MustParseAddr("fe80::483b:bdbc:45b0:e661"), 0)},
		{"bubble with hop limit and trailer", append(edit(bubble, func(b []byte) { b[7] = 9; b[1] = 0x0f }), 9, 9), asker, OnServerPort, NotDropped, Bubble,
			proto.AppendBubble(nil, mireAddr, peer, 0)},
		{"bubble behind an origin indication", append(append([]byte(nil), origin...), bubble...), asker, OnServerPort, NotDropped, Bubble, nil},
		{"UDP in IPv6", udp6, asker, OnMappedPort, NotDropped, ParamProblem, proto.AppendParamProblem(nil, mireAddr, 1, 6, proto.IPv6(udp6))},
		{"hop-by-hop header", withNext(peer, mireAddr, 0, 16), asker, OnMappedPort, NotDropped, ParamProblem, nil},

		{"from ourselves", good, netip.AddrPortFrom(me, MappedPort), OnMappedPort, DropLoop, 0, nil},
		{"from our server port", bubble, netip.AddrPortFrom(me, proto.Port), OnServerPort, DropLoop, 0, nil},
		{"private IPv4 source", good, netip.MustParseAddrPort("10.1.2.3:1000"), OnMappedPort, DropSource, 0, nil},
		{"port 0", good, netip.MustParseAddrPort("198.51.100.2:0"), OnMappedPort, DropSource, 0, nil},
		{"garbage", []byte("hello world"), asker, OnMappedPort, DropMalformed, 0, nil},
		{"empty", nil, asker, OnMappedPort, DropMalformed, 0, nil},
		{"IPv4 inside", []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, asker, OnMappedPort, DropMalformed, 0, nil},
		{"payload longer than the datagram", good[:len(good)-2], asker, OnMappedPort, DropMalformed, 0, nil},
		{"two origin indications", append(append(append([]byte(nil), origin...), origin...), bubble...), asker, OnServerPort, DropMalformed, 0, nil},
		{"echo to another server's client", echoReq(peer, teredo(proto.DefaultPrefix, netip.MustParseAddr("192.0.2.99"), 0, netip.AddrPortFrom(me, MappedPort)), "x"), asker, OnMappedPort, DropNotOurs, 0, nil},
		{"echo to another mapping", echoReq(peer, teredo(proto.DefaultPrefix, me, 0, netip.AddrPortFrom(me, proto.Port)), "x"), asker, OnMappedPort, DropNotOurs, 0, nil},
		{"echo to native IPv6", echoReq(peer, native, "x"), asker, OnMappedPort, DropNotOurs, 0, nil},
		{"echo to multicast", echoReq(peer, netip.MustParseAddr("ff02::1"), "x"), asker, OnMappedPort, DropNotOurs, 0, nil},
		{"our bits under a multicast prefix", echoReq(peer, teredo(0xff020000, me, 0, netip.AddrPortFrom(me, MappedPort)), "x"), asker, OnMappedPort, DropNotOurs, 0, nil},
		{"our bits under a link-local prefix", echoReq(peer, teredo(0xfe800000, me, 0, netip.AddrPortFrom(me, MappedPort)), "x"), asker, OnMappedPort, DropNotOurs, 0, nil},
		{"bubble to someone else", proto.AppendBubble(nil, peer, native, 0), asker, OnServerPort, DropNotOurs, 0, nil},
		{"echo from multicast", echoReq(netip.MustParseAddr("ff02::1"), mireAddr, "x"), asker, OnMappedPort, DropIPv6Source, 0, nil},
		{"echo from ::", echoReq(netip.IPv6Unspecified(), mireAddr, "x"), asker, OnMappedPort, DropIPv6Source, 0, nil},
		{"echo from ::1", echoReq(netip.IPv6Loopback(), mireAddr, "x"), asker, OnMappedPort, DropIPv6Source, 0, nil},
		{"parameter problem for multicast", withNext(netip.MustParseAddr("ff02::1"), mireAddr, 17, 0), asker, OnMappedPort, DropIPv6Source, 0, nil},
		{"echo on 3544", good, asker, OnServerPort, DropNotBubble, 0, nil},
		{"no next header with data on 3544", edit(append(append([]byte(nil), bubble...), 1, 2, 3, 4, 5, 6, 7, 8), func(b []byte) { b[5] = 8 }), asker, OnServerPort, DropNotBubble, 0, nil},
		{"router solicitation on 3544", proto.AppendRouterSolicitation(nil, [8]byte{9}, false), asker, OnServerPort, DropNotOurs, 0, nil},
		{"bubble on 3545", bubble, asker, OnMappedPort, DropDirectBubble, 0, nil},
		{"bad checksum", edit(good, func(b []byte) { b[42] ^= 1 }), asker, OnMappedPort, DropBadICMPv6, 0, nil},
		{"ICMPv6 of 5 bytes", icmp(peer, mireAddr, proto.ICMPv6EchoRequest, 1), asker, OnMappedPort, DropBadICMPv6, 0, nil},
		{"empty ICMPv6", withNext(peer, mireAddr, proto.ProtoICMPv6, 0), asker, OnMappedPort, DropBadICMPv6, 0, nil},
		{"echo reply", icmp(peer, mireAddr, proto.ICMPv6EchoReply, 8), asker, OnMappedPort, DropNotEcho, 0, nil},
		{"ICMPv6 error", icmp(peer, mireAddr, proto.ICMPv6DstUnreachable, 44), asker, OnMappedPort, DropNotEcho, 0, nil},
		{"neighbor solicitation", icmp(peer, mireAddr, 135, 20), asker, OnMappedPort, DropNotEcho, 0, nil},
	}
	var e proto.Envelope
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]byte, 0, 2048)
			r := h.Handle(tc.b, tc.from, tc.on, out, &e)
			if tc.reason != NotDropped {
				if r.Verdict != Drop || r.Reason != tc.reason {
					t.Fatalf("verdict %d reason %v, want drop (%v)", r.Verdict, r.Reason, tc.reason)
				}
				return
			}
			if r.Verdict != Reply || r.Kind != tc.kind || r.To != tc.from {
				t.Fatalf("verdict %d (%v) kind %v to %v, want a %v to %v", r.Verdict, r.Reason, r.Kind, r.To, tc.kind, tc.from)
			}
			if tc.want != nil && !bytes.Equal(r.Packet, tc.want) {
				t.Errorf("reply\n got %x\nwant %x", r.Packet, tc.want)
			}
			checkReply(t, r.Packet)
		})
	}
}

// checkReply checks that a reply is an IPv6 packet from our Teredo address
// with a valid ICMPv6 checksum, or a bubble.
func checkReply(t *testing.T, b []byte) {
	t.Helper()
	pkt, trailer, err := proto.ParseIPv6(b)
	if err != nil || len(trailer) != 0 {
		t.Fatalf("reply is not one IPv6 packet: %v, %d bytes after it", err, len(trailer))
	}
	if !NewHandler(me).ours(pkt.Src()) {
		t.Errorf("reply from %v, not our address", pkt.Src())
	}
	if pkt.IsBubble() {
		return
	}
	if _, err := proto.ParseICMPv6(pkt); err != nil {
		t.Errorf("reply: %v", err)
	}
}

func TestParamProblemFitsMinMTU(t *testing.T) {
	h := NewHandler(me)
	var e proto.Envelope
	big := withNext(peer, mireAddr, 6, 1400)
	r := h.Handle(big, asker, OnMappedPort, make([]byte, 0, 2048), &e)
	if r.Verdict != Reply || len(r.Packet) != proto.MinMTU {
		t.Fatalf("verdict %d, %d bytes: want a parameter problem of 1280 bytes", r.Verdict, len(r.Packet))
	}
	checkReply(t, r.Packet)
}

func TestAddress(t *testing.T) {
	if got := NewHandler(me).Address(); got != netip.MustParseAddr("2001:0:c000:228:0:f226:3fff:fdd7") {
		t.Errorf("Address = %v", got)
	}
}

// TestHandleDoesNotAllocate: with an out buffer large enough, handling a
// datagram allocates nothing, answered or dropped.
func TestHandleDoesNotAllocate(t *testing.T) {
	h := NewHandler(me)
	var e proto.Envelope
	out := make([]byte, 0, 2048)
	for _, b := range [][]byte{echoReq(peer, mireAddr, "hello"), withNext(peer, mireAddr, 17, 8), []byte("junk")} {
		if n := testing.AllocsPerRun(100, func() { h.Handle(b, asker, OnMappedPort, out, &e) }); n != 0 {
			t.Errorf("%d allocations per datagram", int(n))
		}
	}
	bubble := proto.AppendBubble(nil, peer, mireAddr, 0)
	if n := testing.AllocsPerRun(100, func() { h.Handle(bubble, asker, OnServerPort, out, &e) }); n != 0 {
		t.Errorf("%d allocations per bubble", int(n))
	}
}

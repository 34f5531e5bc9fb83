// SPDX-License-Identifier: MIT

package server

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/miredo-go/miredo/pkg/proto"
)

var (
	primary   = netip.MustParseAddr("192.0.2.10")
	secondary = netip.MustParseAddr("192.0.2.11")
	clientUDP = netip.MustParseAddrPort("198.51.100.2:35171")
	relayUDP  = netip.MustParseAddrPort("192.0.2.20:3545")
	native    = netip.MustParseAddr("2001:db8:2::2")
	nonce     = [proto.NonceLen]byte{0xe2, 0xd3, 0x12, 0x7c, 0x54, 0x46, 0xe3, 0xc9}
)

// teredoOf returns the Teredo address of a client of server at mapping m.
func teredoOf(server netip.Addr, m netip.AddrPort) netip.Addr {
	return proto.Address{Prefix: proto.DefaultPrefix, Server: server, Flags: 0x04c8, MappedPort: m.Port(), MappedAddr: m.Addr()}.Addr()
}

func echo(src, dst netip.Addr, typ uint8, data int) []byte {
	f := proto.EchoFields{Src: src, Dst: dst, HopLimit: 64, ID: 1, Seq: 1, Data: make([]byte, data)}
	if typ == proto.ICMPv6EchoReply {
		return proto.AppendEchoReply(nil, f)
	}
	return proto.AppendEchoRequest(nil, f)
}

func icmp(src, dst netip.Addr, typ, code uint8, body int) []byte {
	b := proto.AppendIPv6Header(nil, proto.IPv6Fields{NextHeader: proto.ProtoICMPv6, HopLimit: 64, Src: src, Dst: dst})
	b = append(b, typ, code, 0, 0)
	b = append(b, make([]byte, body)...)
	p := proto.IPv6(b)
	p.SetPayloadLength(uint16(len(b) - proto.IPv6HeaderLen))
	c := proto.ICMPv6Checksum(src, dst, b[proto.IPv6HeaderLen:])
	b[proto.IPv6HeaderLen+2], b[proto.IPv6HeaderLen+3] = byte(c>>8), byte(c)
	return b
}

// rsFrom is a router solicitation from src, without a Teredo header.
func rsFrom(src netip.Addr) []byte {
	b := icmp(src, proto.AllRouters(), proto.ICMPv6RouterSolicit, 0, 4)
	proto.IPv6(b).SetHopLimit(255)
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestHandle(t *testing.T) {
	h := NewHandler(primary, secondary, proto.DefaultPrefix, 1280)
	client := teredoOf(primary, clientUDP)
	otherServer := netip.MustParseAddr("203.0.113.9")
	foreignClient := teredoOf(otherServer, netip.MustParseAddrPort("203.0.113.2:4000"))
	ll := netip.MustParseAddr("fe80::e85f:6115:3445:80c")
	rs := proto.AppendRouterSolicitation(nil, nonce, false)
	coneRS := proto.AppendRouterSolicitation(nil, nonce, true)
	bubbleToClient := proto.AppendBubble(nil, ll, client, 0)
	origin := proto.AppendOrigin(nil, netip.MustParseAddrPort("1.2.3.4:5"))

	tests := []struct {
		name   string
		in     []byte
		from   netip.AddrPort
		on     Via
		want   Verdict
		reason DropReason
		via    Via
		to     netip.AddrPort
	}{
		// Router solicitations (case 4, §5.3.2).
		{"RS", rs, clientUDP, ViaPrimary, SendUDP, 0, ViaPrimary, clientUDP},
		{"RS on secondary", rs, clientUDP, ViaSecondary, SendUDP, 0, ViaSecondary, clientUDP},
		{"cone RS answered from the other address", coneRS, clientUDP, ViaPrimary, SendUDP, 0, ViaSecondary, clientUDP},
		{"cone RS on secondary", coneRS, clientUDP, ViaSecondary, SendUDP, 0, ViaPrimary, clientUDP},
		{"RS without auth header", rs[proto.AuthHeaderMinLen:], clientUDP, ViaPrimary, SendUDP, 0, ViaPrimary, clientUDP},
		{"RS from private IPv4", rs, netip.MustParseAddrPort("10.0.0.2:3544"), ViaPrimary, Drop, DropSourceNotGlobal, 0, netip.AddrPort{}},
		{"RS with bad checksum", func() []byte { b := bytes.Clone(rs); b[len(b)-5] ^= 1; return b }(), clientUDP, ViaPrimary, Drop, DropBadRS, 0, netip.AddrPort{}},
		{"RS with hop limit 64", func() []byte { b := bytes.Clone(rs); b[proto.AuthHeaderMinLen+7] = 64; return b }(), clientUDP, ViaPrimary, Drop, DropBadRS, 0, netip.AddrPort{}},
		{"RS truncated", rs[:len(rs)-4], clientUDP, ViaPrimary, Drop, DropMalformed, 0, netip.AddrPort{}},
		{"echo to ff02::2", echo(ll, proto.AllRouters(), proto.ICMPv6EchoRequest, 8), clientUDP, ViaPrimary, Drop, DropBadRS, 0, netip.AddrPort{}},
		{"bare RS from fe80::/10", rsFrom(proto.LinkLocalClient()), clientUDP, ViaPrimary, SendUDP, 0, ViaPrimary, clientUDP},
		// netip calls ::ffff:169.254.0.0/16 link-local; on the wire it is not.
		{"RS from IPv4-mapped 169.254", rsFrom(netip.MustParseAddr("::ffff:169.254.1.1")), clientUDP, ViaPrimary, Drop, DropNotAccepted, 0, netip.AddrPort{}},

		// Loop guard and malformed input (case 1).
		{"from our primary:3544", rs, netip.AddrPortFrom(primary, 3544), ViaPrimary, Drop, DropLoop, 0, netip.AddrPort{}},
		{"from our secondary:3544", bubbleToClient, netip.AddrPortFrom(secondary, 3544), ViaPrimary, Drop, DropLoop, 0, netip.AddrPort{}},
		{"empty", nil, clientUDP, ViaPrimary, Drop, DropMalformed, 0, netip.AddrPort{}},
		{"garbage", []byte("GET / HTTP/1.0\r\n\r\n"), clientUDP, ViaPrimary, Drop, DropMalformed, 0, netip.AddrPort{}},
		{"IPv6 length beyond datagram", bubbleToClient[:39], relayUDP, ViaPrimary, Drop, DropMalformed, 0, netip.AddrPort{}},
		{"bad auth header", cat([]byte{0, 1, 200, 200}, bubbleToClient), relayUDP, ViaPrimary, Drop, DropMalformed, 0, netip.AddrPort{}},

		// Case 2: only bubbles and ICMPv6.
		{"UDP inside", func() []byte {
			b := proto.AppendIPv6Header(nil, proto.IPv6Fields{PayloadLength: 8, NextHeader: 17, HopLimit: 64, Src: client, Dst: native})
			return append(b, make([]byte, 8)...)
		}(), clientUDP, ViaPrimary, Drop, DropNotBubbleOrICMP, 0, netip.AddrPort{}},

		// Bubbles through the server (case 6: relay's indirect bubble to our client).
		{"indirect bubble to our client", bubbleToClient, relayUDP, ViaPrimary, SendUDP, 0, ViaPrimary, clientUDP},
		{"indirect bubble arriving on secondary leaves from primary", bubbleToClient, relayUDP, ViaSecondary, SendUDP, 0, ViaPrimary, clientUDP},
		{"bubble with trailer keeps it", cat(bubbleToClient, []byte{1, 4, 0, 0, 0, 0}), relayUDP, ViaPrimary, SendUDP, 0, ViaPrimary, clientUDP},
		{"bubble with huge trailer", cat(bubbleToClient, make([]byte, 200)), relayUDP, ViaPrimary, Drop, DropTooBig, 0, netip.AddrPort{}},
		{"bubble with an origin indication in", cat(origin, bubbleToClient), relayUDP, ViaPrimary, SendUDP, 0, ViaPrimary, clientUDP},
		{"bubble from a private IPv4", bubbleToClient, netip.MustParseAddrPort("192.168.1.1:3545"), ViaPrimary, Drop, DropSourceNotGlobal, 0, netip.AddrPort{}},
		{"bubble to another server's client", proto.AppendBubble(nil, ll, foreignClient, 0), relayUDP, ViaPrimary, Drop, DropNotAccepted, 0, netip.AddrPort{}},
		{"bubble to a client behind 10/8", proto.AppendBubble(nil, ll, teredoOf(primary, netip.MustParseAddrPort("10.1.1.1:4000")), 0), relayUDP, ViaPrimary, Drop, DropClientNotGlobal, 0, netip.AddrPort{}},
		{"bubble to a client at port 0", proto.AppendBubble(nil, ll, teredoOf(primary, netip.MustParseAddrPort("198.51.100.2:0")), 0), relayUDP, ViaPrimary, Drop, DropClientNotGlobal, 0, netip.AddrPort{}},
		{"bubble to our client's mapping at our own address", proto.AppendBubble(nil, ll, teredoOf(primary, netip.MustParseAddrPort("192.0.2.10:3544")), 0), relayUDP, ViaPrimary, SendUDP, 0, ViaPrimary, netip.MustParseAddrPort("192.0.2.10:3544")},

		// Case 5: Teredo source whose mapping matches.
		{"client bubble to a peer of ours", proto.AppendBubble(nil, client, teredoOf(primary, netip.MustParseAddrPort("203.0.113.2:39645")), 0), clientUDP, ViaPrimary, SendUDP, 0, ViaPrimary, netip.MustParseAddrPort("203.0.113.2:39645")},
		{"spoofed Teredo source", proto.AppendBubble(nil, client, teredoOf(primary, netip.MustParseAddrPort("203.0.113.2:39645")), 0), netip.MustParseAddrPort("198.51.100.99:35171"), ViaPrimary, Drop, DropNotAccepted, 0, netip.AddrPort{}},
		{"spoofed port", proto.AppendBubble(nil, client, teredoOf(primary, netip.MustParseAddrPort("203.0.113.2:39645")), 0), netip.MustParseAddrPort("198.51.100.2:1"), ViaPrimary, Drop, DropNotAccepted, 0, netip.AddrPort{}},
		{"client bubble to another server's client", proto.AppendBubble(nil, client, foreignClient, 0), clientUDP, ViaPrimary, Drop, DropNotOurClient, 0, netip.AddrPort{}},

		// Direct connectivity test: echo request to native IPv6 over the raw socket.
		{"connectivity test", echo(client, native, proto.ICMPv6EchoRequest, 18), clientUDP, ViaPrimary, SendIPv6, 0, 0, netip.AddrPort{}},
		{"connectivity test, 80 data bytes", echo(client, native, proto.ICMPv6EchoRequest, 80), clientUDP, ViaPrimary, SendIPv6, 0, 0, netip.AddrPort{}},
		{"oversized echo", echo(client, native, proto.ICMPv6EchoRequest, 81), clientUDP, ViaPrimary, Drop, DropTooBig, 0, netip.AddrPort{}},
		{"echo reply to native", echo(client, native, proto.ICMPv6EchoReply, 8), clientUDP, ViaPrimary, Drop, DropNotAllowed, 0, netip.AddrPort{}},
		{"bubble to native", proto.AppendBubble(nil, client, native, 0), clientUDP, ViaPrimary, Drop, DropNotAllowed, 0, netip.AddrPort{}},
		{"ICMPv6 error to native", icmp(client, native, proto.ICMPv6DstUnreachable, 3, 44), clientUDP, ViaPrimary, Drop, DropNotAllowed, 0, netip.AddrPort{}},
		{"echo with bad checksum", func() []byte { b := echo(client, native, proto.ICMPv6EchoRequest, 8); b[42] ^= 1; return b }(), clientUDP, ViaPrimary, Drop, DropMalformed, 0, netip.AddrPort{}},
		{"echo to multicast", echo(client, netip.MustParseAddr("ff0e::1"), proto.ICMPv6EchoRequest, 8), clientUDP, ViaPrimary, Drop, DropLocalDst, 0, netip.AddrPort{}},
		{"echo to link-local", echo(client, ll, proto.ICMPv6EchoRequest, 8), clientUDP, ViaPrimary, Drop, DropLocalDst, 0, netip.AddrPort{}},
		{"echo to loopback", echo(client, netip.IPv6Loopback(), proto.ICMPv6EchoRequest, 8), clientUDP, ViaPrimary, Drop, DropDstNotGlobal, 0, netip.AddrPort{}},
		{"echo to IPv4-mapped", echo(client, netip.MustParseAddr("::ffff:192.0.2.1"), proto.ICMPv6EchoRequest, 8), clientUDP, ViaPrimary, Drop, DropDstNotGlobal, 0, netip.AddrPort{}},
		{"echo to IPv4-mapped 169.254", echo(client, netip.MustParseAddr("::ffff:169.254.1.1"), proto.ICMPv6EchoRequest, 8), clientUDP, ViaPrimary, Drop, DropDstNotGlobal, 0, netip.AddrPort{}},
		{"echo to IPv4-mapped multicast", echo(client, netip.MustParseAddr("::ffff:224.0.0.1"), proto.ICMPv6EchoRequest, 8), clientUDP, ViaPrimary, Drop, DropDstNotGlobal, 0, netip.AddrPort{}},
		{"native source to native", echo(native, netip.MustParseAddr("2001:db8:3::3"), proto.ICMPv6EchoRequest, 8), relayUDP, ViaPrimary, Drop, DropNotAccepted, 0, netip.AddrPort{}},
		{"native echo reply to our client", echo(native, client, proto.ICMPv6EchoReply, 18), relayUDP, ViaPrimary, SendUDP, 0, ViaPrimary, clientUDP},
		{"link-local RA to our client", icmp(ll, client, proto.ICMPv6RouterAdvertise, 0, 12), relayUDP, ViaPrimary, Drop, DropNotAllowed, 0, netip.AddrPort{}},
		{"native RA-type to our client", icmp(native, client, proto.ICMPv6RouterAdvertise, 0, 12), relayUDP, ViaPrimary, Drop, DropNotAllowed, 0, netip.AddrPort{}},
	}
	out := make([]byte, 0, 1500)
	var e proto.Envelope
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.Handle(tc.in, tc.from, tc.on, out, &e)
			if r.Verdict != tc.want || r.Reason != tc.reason {
				t.Fatalf("verdict %d reason %v, want %d %v", r.Verdict, r.Reason, tc.want, tc.reason)
			}
			if r.Verdict == SendUDP && (r.Via != tc.via || r.To != tc.to) {
				t.Errorf("send via %d to %v, want via %d to %v", r.Via, r.To, tc.via, tc.to)
			}
			if r.Verdict != Drop && len(r.Packet) == 0 {
				t.Error("empty packet")
			}
		})
	}
}

// TestRAContents checks the advertisement a solicitation gets, field by
// field, as a Miredo client reads it.
func TestRAContents(t *testing.T) {
	h := NewHandler(primary, secondary, proto.DefaultPrefix, 1400)
	var e proto.Envelope
	r := h.Handle(proto.AppendRouterSolicitation(nil, nonce, false), clientUDP, ViaPrimary, nil, &e)
	if r.Verdict != SendUDP {
		t.Fatalf("verdict %d reason %v", r.Verdict, r.Reason)
	}
	if err := proto.ParseEnvelope(r.Packet, &e); err != nil {
		t.Fatal(err)
	}
	if !e.HasAuth || e.Auth.Nonce != nonce || e.Auth.Confirmation != 0 || !e.HasOrigin || e.Origin != clientUDP {
		t.Errorf("envelope: auth %v nonce %x conf %d origin %v", e.HasAuth, e.Auth.Nonce, e.Auth.Confirmation, e.Origin)
	}
	if e.IPv6.Src() != proto.ServerLinkLocal(primary) || e.IPv6.Dst() != proto.LinkLocalClient() {
		t.Errorf("IPv6 %v -> %v", e.IPv6.Src(), e.IPv6.Dst())
	}
	ra, err := proto.ParseRouterAdvertisement(e.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if ra != (proto.RouterAdvertisement{Prefix: proto.DefaultPrefix, Server: primary, MTU: 1400}) {
		t.Errorf("RA = %+v", ra)
	}

	// Sent from the secondary address, the RA still names the primary.
	r = h.Handle(proto.AppendRouterSolicitation(nil, nonce, true), clientUDP, ViaPrimary, nil, &e)
	if err := proto.ParseEnvelope(r.Packet, &e); err != nil {
		t.Fatal(err)
	}
	if ra, _ := proto.ParseRouterAdvertisement(e.IPv6); ra.Server != primary || r.Via != ViaSecondary {
		t.Errorf("cone RA: via %d server %v", r.Via, ra.Server)
	}
}

// TestForwardedBubbleBytes checks a forwarded bubble is the bubble as it
// came, behind an origin indication naming its sender.
func TestForwardedBubbleBytes(t *testing.T) {
	h := NewHandler(primary, secondary, proto.DefaultPrefix, 1280)
	client := teredoOf(primary, clientUDP)
	in := proto.AppendBubble(nil, netip.MustParseAddr("fe80::e85f:6115:3445:80c"), client, 0)
	var e proto.Envelope
	r := h.Handle(in, relayUDP, ViaPrimary, make([]byte, 0, 128), &e)
	want := cat(proto.AppendOrigin(nil, relayUDP), in)
	if r.Verdict != SendUDP || !bytes.Equal(r.Packet, want) {
		t.Fatalf("forwarded %x, want %x", r.Packet, want)
	}
}

func TestHandleAllocatesNothing(t *testing.T) {
	h := NewHandler(primary, secondary, proto.DefaultPrefix, 1280)
	rs := proto.AppendRouterSolicitation(nil, nonce, false)
	bubble := proto.AppendBubble(nil, netip.MustParseAddr("fe80::1"), teredoOf(primary, clientUDP), 0)
	test := echo(teredoOf(primary, clientUDP), native, proto.ICMPv6EchoRequest, 18)
	out := make([]byte, 0, 1500)
	var e proto.Envelope
	allocs := testing.AllocsPerRun(1000, func() {
		h.Handle(rs, clientUDP, ViaPrimary, out, &e)
		h.Handle(bubble, relayUDP, ViaPrimary, out, &e)
		h.Handle(test, clientUDP, ViaPrimary, out, &e)
		h.Handle(rs[:20], clientUDP, ViaPrimary, out, &e)
	})
	if allocs != 0 {
		t.Errorf("Handle allocates %v times per packet", allocs)
	}
}

func BenchmarkHandleRS(b *testing.B) {
	h := NewHandler(primary, secondary, proto.DefaultPrefix, 1280)
	rs := proto.AppendRouterSolicitation(nil, nonce, false)
	out := make([]byte, 0, 1500)
	var e proto.Envelope
	b.ReportAllocs()
	for b.Loop() {
		if r := h.Handle(rs, clientUDP, ViaPrimary, out, &e); r.Verdict != SendUDP {
			b.Fatal(r.Reason)
		}
	}
}

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := DropReason(0); r < NumDropReasons; r++ {
		n := r.String()
		if n == "" || n == "unknown" || seen[n] {
			t.Errorf("reason %d has name %q", r, n)
		}
		seen[n] = true
	}
}

// SPDX-License-Identifier: MIT

package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func TestRouterSolicitationMatchesMiredo(t *testing.T) {
	rs := frame(t, "server.pcap", 1)
	var e Envelope
	if err := ParseEnvelope(rs.Payload, &e); err != nil {
		t.Fatal(err)
	}
	got := AppendRouterSolicitation(nil, e.Auth.Nonce, false)
	if !bytes.Equal(got, rs.Payload) {
		t.Fatalf("RS:\n got %x\nwant %x", got, rs.Payload)
	}
	if c := ICMPv6(e.IPv6.Payload()).Checksum(); c != 0x7d37 {
		t.Errorf("RS checksum %#04x, want 0x7d37", c)
	}
	info, err := ParseRouterSolicitation(e.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if info.Src != LinkLocalClient() || info.Cone {
		t.Errorf("ParseRouterSolicitation = %+v", info)
	}
}

func TestRouterSolicitationChecksums(t *testing.T) {
	// Precomputed by Miredo (fixed RS, so a fixed checksum) and for Windows.
	tests := []struct {
		src  netip.Addr
		want uint16
	}{
		{LinkLocalClient(), 0x7d37},
		{LinkLocalClientCone(), 0x125d},
		{netip.MustParseAddr("fe80::ffff:ffff:fffe"), 0x7d38},
	}
	for _, tc := range tests {
		msg := []byte{ICMPv6RouterSolicit, 0, 0, 0, 0, 0, 0, 0}
		if got := ICMPv6Checksum(tc.src, AllRouters(), msg); got != tc.want {
			t.Errorf("RS from %v: checksum %#04x, want %#04x", tc.src, got, tc.want)
		}
	}
	b := AppendRouterSolicitation(nil, [NonceLen]byte{}, true)
	var e Envelope
	if err := ParseEnvelope(b, &e); err != nil {
		t.Fatal(err)
	}
	info, err := ParseRouterSolicitation(e.IPv6)
	if err != nil || !info.Cone || info.Src != LinkLocalClientCone() {
		t.Errorf("cone RS: %+v, %v", info, err)
	}
}

func TestWindowsRouterSolicitation(t *testing.T) {
	d := frame(t, "windows-client.pcap", 6)
	var e Envelope
	if err := ParseEnvelope(d.Payload, &e); err != nil {
		t.Fatal(err)
	}
	info, err := ParseRouterSolicitation(e.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Cone || info.Src != netip.MustParseAddr("fe80::8000:ffff:ffff:fffd") {
		t.Errorf("Windows RS = %+v", info)
	}
}

func TestRouterAdvertisementMatchesMiredo(t *testing.T) {
	rs, ra := frame(t, "server.pcap", 1), frame(t, "server.pcap", 2)
	var rse Envelope
	if err := ParseEnvelope(rs.Payload, &rse); err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddr("192.0.2.10")
	got := AppendRouterAdvertisement(nil, RAFields{
		Nonce:  rse.Auth.Nonce,
		Client: rs.Src,
		Dst:    rse.IPv6.Src(),
		Server: server,
		Prefix: DefaultPrefix,
		MTU:    1280,
	})
	if !bytes.Equal(got, ra.Payload) {
		t.Fatalf("RA:\n got %x\nwant %x", got, ra.Payload)
	}
}

// checksumZeroDst returns the destination that gives the RA of server,
// prefix and mtu the checksum 0: the sum without a destination, P, is what
// the checksum of an RA to :: inverts, and a destination whose last word is
// that checksum (^P) brings the sum to 0xffff.
func checksumZeroDst(t *testing.T, server netip.Addr, prefix, mtu uint32) netip.Addr {
	t.Helper()
	b := AppendRouterAdvertisement(nil, RAFields{Server: server, Prefix: prefix, MTU: mtu})
	var d [16]byte
	copy(d[14:], b[raChecksumOff:raChecksumOff+2])
	return netip.AddrFrom16(d)
}

// TestRATemplateMatchesBuilder checks that the template appends the bytes
// AppendRouterAdvertisement builds, over fields chosen to push the checksum
// to its edges (every bit set, every carry, a result of 0) and over the
// addresses the builders map to 0.0.0.0 or write as IPv4-mapped.
func TestRATemplateMatchesBuilder(t *testing.T) {
	server := netip.MustParseAddr("192.0.2.10")
	client := netip.MustParseAddrPort("198.51.100.2:35171")
	ones := [NonceLen]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allOnes := netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	tests := []struct {
		name string
		f    RAFields
	}{
		{"Miredo", RAFields{Nonce: [NonceLen]byte{0xe2, 0xd3, 0x12, 0x7c, 0x54, 0x46, 0xe3, 0xc9}, Client: client, Dst: LinkLocalClient(), Server: server, Prefix: DefaultPrefix, MTU: 1280}},
		{"cone solicitation", RAFields{Nonce: [NonceLen]byte{1}, Client: client, Dst: LinkLocalClientCone(), Server: server, Prefix: DefaultPrefix, MTU: 1280}},
		{"Windows", RAFields{Nonce: [NonceLen]byte{9, 8, 7}, Client: netip.MustParseAddrPort("70.55.215.234:3797"),
			Dst: netip.MustParseAddr("fe80::8000:ffff:ffff:fffd"), Server: netip.MustParseAddr("65.55.158.80"), Prefix: DefaultPrefix, MTU: 1280}},
		{"every bit set", RAFields{Nonce: ones, Client: netip.MustParseAddrPort("255.255.255.255:65535"), Dst: allOnes,
			Server: netip.MustParseAddr("255.255.255.255"), Prefix: 0xffffffff, MTU: 0xffffffff}},
		{"destination all ones", RAFields{Nonce: ones, Client: client, Dst: allOnes, Server: server, Prefix: DefaultPrefix, MTU: 1280}},
		{"every bit clear", RAFields{Client: netip.MustParseAddrPort("0.0.0.0:0"), Dst: netip.IPv6Unspecified(),
			Server: netip.MustParseAddr("0.0.0.0"), Prefix: 0, MTU: 0}},
		{"checksum 0", RAFields{Nonce: ones, Client: client, Dst: checksumZeroDst(t, server, DefaultPrefix, 1280), Server: server, Prefix: DefaultPrefix, MTU: 1280}},
		{"checksum 0, every bit set", RAFields{Client: client, Dst: checksumZeroDst(t, netip.MustParseAddr("255.255.255.255"), 0xffffffff, 0xffffffff),
			Server: netip.MustParseAddr("255.255.255.255"), Prefix: 0xffffffff, MTU: 0xffffffff}},
		{"zero values", RAFields{}},
		{"IPv6 server and client", RAFields{Client: netip.MustParseAddrPort("[2001:db8::1]:4000"), Dst: LinkLocalClient(),
			Server: netip.MustParseAddr("2001:db8::2"), Prefix: DefaultPrefix, MTU: 1400}},
		{"IPv4-mapped server and client", RAFields{Client: netip.MustParseAddrPort("[::ffff:198.51.100.2]:4000"), Dst: LinkLocalClient(),
			Server: netip.MustParseAddr("::ffff:192.0.2.10"), Prefix: DefaultPrefix, MTU: 1400}},
		{"IPv4 destination", RAFields{Client: client, Dst: netip.MustParseAddr("198.51.100.2"), Server: server, Prefix: DefaultPrefix, MTU: 1280}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := AppendRouterAdvertisement([]byte("head"), tc.f)
			tmpl := NewRATemplate(tc.f.Server, tc.f.Prefix, tc.f.MTU)
			// Twice from one template, with another RA between: Append
			// must leave the template as it was.
			for range 2 {
				got := tmpl.Append([]byte("head"), tc.f.Nonce, tc.f.Client, tc.f.Dst)
				if !bytes.Equal(got, want) {
					t.Fatalf("template:\n got %x\nwant %x", got, want)
				}
				_ = tmpl.Append(nil, ones, client, allOnes)
			}
			if _, err := ParseICMPv6(IPv6(want[len("head")+raIPv6Off:])); err != nil {
				t.Errorf("checksum: %v", err)
			}
		})
	}
	t.Run("checksum 0 reached", func(t *testing.T) {
		b := NewRATemplate(server, DefaultPrefix, 1280).Append(nil, ones, client, checksumZeroDst(t, server, DefaultPrefix, 1280))
		if c := binary.BigEndian.Uint16(b[raChecksumOff:]); c != 0 {
			t.Errorf("checksum %#04x, want 0", c)
		}
	})
	t.Run("Miredo capture", func(t *testing.T) {
		rs, ra := frame(t, "server.pcap", 1), frame(t, "server.pcap", 2)
		var e Envelope
		if err := ParseEnvelope(rs.Payload, &e); err != nil {
			t.Fatal(err)
		}
		got := NewRATemplate(server, DefaultPrefix, 1280).Append(nil, e.Auth.Nonce, rs.Src, e.IPv6.Src())
		if !bytes.Equal(got, ra.Payload) {
			t.Fatalf("RA:\n got %x\nwant %x", got, ra.Payload)
		}
	})
}

func TestParseRouterAdvertisementCaptures(t *testing.T) {
	tests := []struct {
		file    string
		frame   int
		server  string
		mtu     uint32
		origin  string
		address string // the client's Teredo address, from the RA and its own flags
		flags   uint16
	}{
		{"server.pcap", 2, "192.0.2.10", 1280, "198.51.100.2:35171", "2001:0:c000:20a:4c8:769c:39cc:9bfd", 0x04c8},
		{"windows-client.pcap", 7, "65.55.158.80", 0, "70.55.215.234:3797", "2001:0:4137:9e50:8000:f12a:b9c8:2815", 0x8000},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			d := frame(t, tc.file, tc.frame)
			var e Envelope
			if err := ParseEnvelope(d.Payload, &e); err != nil {
				t.Fatal(err)
			}
			if !e.HasAuth || !e.HasOrigin || e.Origin != netip.MustParseAddrPort(tc.origin) {
				t.Fatalf("auth %v origin %v %v", e.HasAuth, e.HasOrigin, e.Origin)
			}
			ra, err := ParseRouterAdvertisement(e.IPv6)
			if err != nil {
				t.Fatal(err)
			}
			want := RouterAdvertisement{Prefix: DefaultPrefix, Server: netip.MustParseAddr(tc.server), MTU: tc.mtu}
			if ra != want {
				t.Fatalf("RA = %+v, want %+v", ra, want)
			}
			addr := Address{Prefix: ra.Prefix, Server: ra.Server, Flags: tc.flags, MappedPort: e.Origin.Port(), MappedAddr: e.Origin.Addr()}
			if addr.Addr() != netip.MustParseAddr(tc.address) {
				t.Errorf("client address %v, want %s", addr.Addr(), tc.address)
			}
		})
	}
}

// raBytes builds an RA payload and returns its IPv6 packet for mutation.
func raPacket(t *testing.T, mutate func(msg []byte) []byte) IPv6 {
	t.Helper()
	b := AppendRouterAdvertisement(nil, RAFields{
		Client: netip.MustParseAddrPort("198.51.100.2:40000"),
		Dst:    LinkLocalClient(),
		Server: netip.MustParseAddr("192.0.2.10"),
		Prefix: DefaultPrefix,
		MTU:    1400,
	})
	pkt := IPv6(b[AuthHeaderMinLen+OriginLen:])
	if mutate != nil {
		src, dst := pkt.Src(), pkt.Dst()
		msg := mutate(append([]byte(nil), pkt.Payload()...))
		msg[2], msg[3] = 0, 0
		c := ICMPv6Checksum(src, dst, msg)
		msg[2], msg[3] = byte(c>>8), byte(c)
		pkt = IPv6(append(append([]byte(nil), pkt[:IPv6HeaderLen]...), msg...))
		pkt.SetPayloadLength(uint16(len(msg)))
	}
	return pkt
}

func TestParseRouterAdvertisementRejects(t *testing.T) {
	const pio, mtu = raLen, raLen + pioLen
	tests := []struct {
		name   string
		mutate func(msg []byte) []byte
		err    error
	}{
		{"valid", func(m []byte) []byte { return m }, nil},
		{"no MTU option", func(m []byte) []byte { return m[:mtu] }, nil},
		{"no prefix", func(m []byte) []byte { return append(m[:pio], m[mtu:]...) }, ErrPrefixCount},
		{"two prefixes", func(m []byte) []byte { return append(m, m[pio:mtu]...) }, ErrPrefixCount},
		{"prefix /48", func(m []byte) []byte { m[pio+2] = 48; return m }, ErrPrefixCount},
		{"multicast prefix", func(m []byte) []byte { m[pio+16] = 0xff; return m }, ErrPrefixCount},
		{"MTU 1279", func(m []byte) []byte { m[mtu+6], m[mtu+7] = 0x04, 0xff; return m }, ErrBadMTU},
		{"MTU 65536", func(m []byte) []byte { m[mtu+5], m[mtu+6], m[mtu+7] = 1, 0, 0; return m }, ErrBadMTU},
		{"zero-length option", func(m []byte) []byte { return append(m, 9, 0) }, ErrBadOption},
		{"option past the end", func(m []byte) []byte { return append(m, 9, 2, 0, 0, 0, 0, 0, 0) }, ErrBadOption},
		{"odd byte", func(m []byte) []byte { return append(m, 1) }, ErrBadOption},
		{"code 1", func(m []byte) []byte { m[1] = 1; return m }, ErrNotRA},
		{"type RS", func(m []byte) []byte { m[0] = ICMPv6RouterSolicit; return m }, ErrNotRA},
		{"truncated", func(m []byte) []byte { return m[:12] }, ErrNotRA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRouterAdvertisement(raPacket(t, tc.mutate))
			if !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
	t.Run("obsolete prefix", func(t *testing.T) {
		ra, err := ParseRouterAdvertisement(raPacket(t, func(m []byte) []byte {
			copy(m[pio+16:pio+20], []byte{0x3f, 0xfe, 0x83, 0x1f})
			return m
		}))
		if err != nil || ra.Prefix != DefaultPrefix {
			t.Errorf("3ffe:831f:: read as %#x, %v; want 2001:0::", ra.Prefix, err)
		}
	})
	t.Run("bad checksum", func(t *testing.T) {
		pkt := raPacket(t, nil)
		pkt[IPv6HeaderLen+2] ^= 1
		if _, err := ParseRouterAdvertisement(pkt); !errors.Is(err, ErrICMPv6Checksum) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("hop limit 64", func(t *testing.T) {
		pkt := raPacket(t, nil)
		pkt.SetHopLimit(64)
		if _, err := ParseRouterAdvertisement(pkt); !errors.Is(err, ErrNotRA) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("IPv4-mapped 169.254 source", func(t *testing.T) {
		// netip calls ::ffff:169.254.0.0/16 link-local; the wire does not.
		pkt := raPacket(t, nil)
		pkt.SetSrc(netip.MustParseAddr("::ffff:169.254.1.1"))
		m := pkt[IPv6HeaderLen:]
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint16(m[2:4], packetChecksum(pkt, m))
		if _, err := ParseRouterAdvertisement(pkt); !errors.Is(err, ErrNotRA) {
			t.Errorf("err = %v, want ErrNotRA", err)
		}
	})
	t.Run("global source", func(t *testing.T) {
		pkt := raPacket(t, nil)
		pkt.SetSrc(netip.MustParseAddr("2001:db8::1")) // checksum now wrong too; either error will do
		if _, err := ParseRouterAdvertisement(pkt); err == nil {
			t.Error("accepted an RA from a global address")
		}
	})
}

func TestParseRouterSolicitationRejects(t *testing.T) {
	build := func(src, dst netip.Addr, hop uint8, msg []byte) IPv6 {
		b := AppendIPv6Header(nil, IPv6Fields{PayloadLength: uint16(len(msg)), NextHeader: ProtoICMPv6, HopLimit: hop, Src: src, Dst: dst})
		b = append(b, msg...)
		c := ICMPv6Checksum(src, dst, b[IPv6HeaderLen:])
		b[IPv6HeaderLen+2], b[IPv6HeaderLen+3] = byte(c>>8), byte(c)
		return IPv6(b)
	}
	rs := []byte{ICMPv6RouterSolicit, 0, 0, 0, 0, 0, 0, 0}
	ll, all := LinkLocalClient(), AllRouters()
	global := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name string
		pkt  IPv6
		err  error
	}{
		{"valid", build(ll, all, 255, rs), nil},
		{"to server link-local", build(ll, ServerLinkLocal(netip.MustParseAddr("192.0.2.10")), 255, rs), ErrNotRS},
		{"with option", build(ll, all, 255, append(append([]byte{}, rs...), 1, 1, 0, 0, 0, 0, 0, 0)), nil},
		{"global source", build(global, all, 255, rs), ErrNotRS},
		{"IPv4-mapped 169.254 source", build(netip.MustParseAddr("::ffff:169.254.1.1"), all, 255, rs), ErrNotRS},
		{"global destination", build(ll, global, 255, rs), ErrNotRS},
		{"hop limit 254", build(ll, all, 254, rs), ErrNotRS},
		{"code 1", build(ll, all, 255, []byte{ICMPv6RouterSolicit, 1, 0, 0, 0, 0, 0, 0}), ErrNotRS},
		{"short", build(ll, all, 255, []byte{ICMPv6RouterSolicit, 0, 0, 0}), ErrNotRS},
		{"echo request", build(ll, all, 255, []byte{ICMPv6EchoRequest, 0, 0, 0, 0, 0, 0, 0}), ErrNotRS},
		{"bad option", build(ll, all, 255, append(append([]byte{}, rs...), 1, 0)), ErrBadOption},
		{"bubble", IPv6(AppendBubble(nil, ll, all, 255)), ErrShortICMPv6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseRouterSolicitation(tc.pkt); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestBubbleMatchesMiredo(t *testing.T) {
	// server.pcap frame 6: the relay's indirect bubble to the server; frame 7:
	// the server forwarding it to the client with an origin indication.
	in, out := frame(t, "server.pcap", 6), frame(t, "server.pcap", 7)
	var e Envelope
	if err := ParseEnvelope(in.Payload, &e); err != nil {
		t.Fatal(err)
	}
	if !e.IPv6.IsBubble() {
		t.Fatal("frame 6 is not a bubble")
	}
	got := AppendBubble(nil, e.IPv6.Src(), e.IPv6.Dst(), 0)
	if !bytes.Equal(got, in.Payload) {
		t.Fatalf("bubble:\n got %x\nwant %x", got, in.Payload)
	}
	fwd := AppendOrigin(nil, in.Src)
	fwd = append(fwd, got...)
	if !bytes.Equal(fwd, out.Payload) {
		t.Fatalf("forwarded bubble:\n got %x\nwant %x", fwd, out.Payload)
	}
}

func TestEchoMatchesMiredo(t *testing.T) {
	// client-wan.pcap frame 3: Miredo's direct connectivity test, an echo
	// request with hop limit 128 whose data is Miredo's nonce.
	d := frame(t, "client-wan.pcap", 3)
	var e Envelope
	if err := ParseEnvelope(d.Payload, &e); err != nil {
		t.Fatal(err)
	}
	m, err := ParseICMPv6(e.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type() != ICMPv6EchoRequest || len(m.Body()) != 18 {
		t.Fatalf("type %d, %d data bytes", m.Type(), len(m.Body()))
	}
	got := AppendEchoRequest(nil, EchoFields{
		Src: e.IPv6.Src(), Dst: e.IPv6.Dst(), HopLimit: 128, ID: m.EchoID(), Seq: m.EchoSeq(), Data: m.Body(),
	})
	if !bytes.Equal(got, d.Payload) {
		t.Fatalf("echo request:\n got %x\nwant %x", got, d.Payload)
	}
	reply := AppendEchoReply(nil, EchoFields{Src: e.IPv6.Dst(), Dst: e.IPv6.Src(), HopLimit: 64, ID: 1, Seq: 2, Data: []byte("nonce")})
	rp, _, err := ParseIPv6(reply)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := ParseICMPv6(rp)
	if err != nil || rm.Type() != ICMPv6EchoReply || rm.EchoID() != 1 || rm.EchoSeq() != 2 || string(rm.Body()) != "nonce" {
		t.Errorf("echo reply round trip: %v %x", err, rm)
	}
}

func TestICMPv6ErrorsFitMinMTU(t *testing.T) {
	src := netip.MustParseAddr("2001:0:c000:20a:4c8:769c:39cc:9bfd")
	for _, tc := range []struct {
		name        string
		build       func(IPv6) []byte
		typ, code   uint8
		wantPointer uint32
	}{
		{"unreachable", func(p IPv6) []byte { return AppendDestUnreachable(nil, src, UnreachAddress, p) }, ICMPv6DstUnreachable, UnreachAddress, 0},
		{"param problem", func(p IPv6) []byte { return AppendParamProblem(nil, src, ParamProblemNextHeader, 6, p) }, ICMPv6ParamProblem, ParamProblemNextHeader, 6},
	} {
		for _, size := range []int{48, 1232, 1233, 1280, 1500, 9000} {
			invoking := AppendEchoRequest(nil, EchoFields{Src: netip.MustParseAddr("2001:db8::2"), Dst: src, HopLimit: 64, Data: make([]byte, size-48)})
			got := tc.build(IPv6(invoking))
			pkt, _, err := ParseIPv6(got)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseICMPv6(pkt)
			if err != nil {
				t.Fatal(err)
			}
			wantQuote := min(size, MinMTU-IPv6HeaderLen-8)
			if len(got) > MinMTU || len(m.Body()) != wantQuote || !bytes.Equal(m.Body(), invoking[:wantQuote]) {
				t.Errorf("%s, invoking %d bytes: error %d bytes quoting %d, want ≤1280 quoting %d", tc.name, size, len(got), len(m.Body()), wantQuote)
			}
			if m.Type() != tc.typ || m.Code() != tc.code || pkt.Dst() != netip.MustParseAddr("2001:db8::2") || pkt.HopLimit() != 255 ||
				binary.BigEndian.Uint32(m[4:8]) != tc.wantPointer {
				t.Errorf("%s: error header: type %d code %d field %x dst %v hop %d", tc.name, m.Type(), m.Code(), m[4:8], pkt.Dst(), pkt.HopLimit())
			}
		}
	}
}

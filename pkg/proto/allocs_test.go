// SPDX-License-Identifier: MIT

package proto

import (
	"net/netip"
	"testing"
)

// TestHotPathParsingAllocatesNothing proves that what the server, relay and
// client do for every datagram (envelope, IPv6, ICMPv6, RS and address
// decoding, global-address checks, RFC 6081 trailers) costs no allocation.
func TestHotPathParsingAllocatesNothing(t *testing.T) {
	rs := AppendRouterSolicitation(nil, [NonceLen]byte{1, 2, 3}, false)
	data := append(AppendOrigin(nil, netip.MustParseAddrPort("198.51.100.2:40000")),
		AppendEchoRequest(nil, EchoFields{Src: netip.MustParseAddr("2001:0:c000:20a:4c8:769c:39cc:9bfd"),
			Dst: netip.MustParseAddr("2001:db8:2::2"), HopLimit: 64, Data: make([]byte, 1000)})...)
	bubble := AppendBubble(AppendOrigin(nil, netip.MustParseAddrPort("198.51.100.2:40000")),
		netip.MustParseAddr("2001:0:c000:20a:4c8:769c:39cc:9bfd"), netip.MustParseAddr("2001:0:c000:20a:3c86:6522:34ff:8efd"), 0)
	bubble = AppendNonceTrailer(bubble, [TrailerNonceLen]byte{1, 2, 3, 4})
	bubble, _ = AppendAlternateAddressTrailer(bubble, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:40000")})
	bubble = AppendRandomPortTrailer(AppendDiscoveryTrailer(bubble, DiscoverySolicitation), 4001)
	var e Envelope
	var tr Trailers
	allocs := testing.AllocsPerRun(1000, func() {
		if err := ParseEnvelope(bubble, &e); err != nil {
			t.Fatal(err)
		}
		if err := ParseTrailers(e.Trailer, &tr); err != nil || tr.AltAddrs.Len() != 1 || tr.AltAddrs.At(0).Port() != 40000 {
			t.Fatal(err)
		}
		if err := ParseEnvelope(rs, &e); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRouterSolicitation(e.IPv6); err != nil {
			t.Fatal(err)
		}
		if err := ParseEnvelope(data, &e); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseICMPv6(e.IPv6); err != nil {
			t.Fatal(err)
		}
		a, ok := ParseAddress(e.IPv6.Src())
		if !ok || !HasPrefix(e.IPv6.Src(), DefaultPrefix) || !IsGlobalUnicastIPv4(a.MappedAddr) || !IsGlobalUnicastIPv4(e.Origin.Addr()) {
			t.Fatal("address checks failed")
		}
		_ = ParseEnvelope(data[:20], &e) // an error path too
	})
	if allocs != 0 {
		t.Errorf("parsing allocates %v times per packet, want 0", allocs)
	}
}

// TestBuildersAppendWithoutAllocating checks that building into a buffer
// with enough room does not allocate, so the data path can reuse buffers.
func TestBuildersAppendWithoutAllocating(t *testing.T) {
	buf := make([]byte, 0, 2048)
	src, dst := netip.MustParseAddr("2001:0:c000:20a:4c8:769c:39cc:9bfd"), netip.MustParseAddr("2001:db8:2::2")
	invoking := AppendEchoRequest(nil, EchoFields{Src: dst, Dst: src, HopLimit: 64, Data: make([]byte, 1400)})
	nonce := [NonceLen]byte{9}
	alt := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("198.51.100.2:40000")}
	var tr Trailers
	if err := ParseTrailers(mustHex(t, "0104deadbeef"+"030e0000"+"0a0000029c40"+"c63364029c40"+"05020fa1"), &tr); err != nil {
		t.Fatal(err)
	}
	ra := NewRATemplate(netip.MustParseAddr("192.0.2.10"), DefaultPrefix, 1280)
	allocs := testing.AllocsPerRun(1000, func() {
		b := AppendOrigin(buf[:0], netip.MustParseAddrPort("198.51.100.2:40000"))
		b = AppendBubble(b, src, dst, 0)
		b = AppendNonceTrailer(b, [TrailerNonceLen]byte{1, 2, 3, 4})
		b, _ = AppendAlternateAddressTrailer(b, alt)
		b = AppendRandomPortTrailer(AppendDiscoveryTrailer(b, DiscoveryAdvertisement), 4001)
		b, _ = AppendTrailers(b, &tr)
		b = AppendRouterSolicitation(b[:0], nonce, false)
		b = AppendRouterAdvertisement(b[:0], RAFields{Nonce: nonce, Client: netip.MustParseAddrPort("198.51.100.2:40000"),
			Dst: LinkLocalClient(), Server: netip.MustParseAddr("192.0.2.10"), Prefix: DefaultPrefix, MTU: 1280})
		b = ra.Append(b[:0], nonce, netip.MustParseAddrPort("198.51.100.2:40000"), LinkLocalClient())
		b = AppendEchoRequest(b[:0], EchoFields{Src: src, Dst: dst, HopLimit: 128, ID: 1, Seq: 2, Data: nonce[:]})
		_ = AppendDestUnreachable(b[:0], src, UnreachAddress, IPv6(invoking))
	})
	if allocs != 0 {
		t.Errorf("builders allocate %v times, want 0", allocs)
	}
}

func BenchmarkParseEnvelope(b *testing.B) {
	pkt := append(AppendOrigin(nil, netip.MustParseAddrPort("198.51.100.2:40000")),
		AppendEchoRequest(nil, EchoFields{Src: netip.MustParseAddr("2001:0:c000:20a:4c8:769c:39cc:9bfd"),
			Dst: netip.MustParseAddr("2001:db8:2::2"), HopLimit: 64, Data: make([]byte, 1192)})...)
	var e Envelope
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if err := ParseEnvelope(pkt, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRouterSolicitationToAdvertisement(b *testing.B) {
	rs := AppendRouterSolicitation(nil, [NonceLen]byte{1, 2, 3}, false)
	out := make([]byte, 0, 256)
	from := netip.MustParseAddrPort("198.51.100.2:40000")
	server := netip.MustParseAddr("192.0.2.10")
	var e Envelope
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseEnvelope(rs, &e); err != nil {
			b.Fatal(err)
		}
		info, err := ParseRouterSolicitation(e.IPv6)
		if err != nil {
			b.Fatal(err)
		}
		out = AppendRouterAdvertisement(out[:0], RAFields{Nonce: e.Auth.Nonce, Client: from, Dst: info.Src, Server: server, Prefix: DefaultPrefix, MTU: 1280})
	}
}

// The two ways of building a server's RA, the fields of each call fixed
// except the destination, which changes as a server's would.
func BenchmarkAppendRouterAdvertisement(b *testing.B) {
	out := make([]byte, 0, 256)
	f := RAFields{Nonce: [NonceLen]byte{1, 2, 3}, Client: netip.MustParseAddrPort("198.51.100.2:40000"),
		Server: netip.MustParseAddr("192.0.2.10"), Prefix: DefaultPrefix, MTU: 1280}
	dsts := [2]netip.Addr{LinkLocalClient(), LinkLocalClientCone()}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f.Dst = dsts[i&1]
		out = AppendRouterAdvertisement(out[:0], f)
		i++
	}
}

func BenchmarkRATemplateAppend(b *testing.B) {
	out := make([]byte, 0, 256)
	t := NewRATemplate(netip.MustParseAddr("192.0.2.10"), DefaultPrefix, 1280)
	nonce, client := [NonceLen]byte{1, 2, 3}, netip.MustParseAddrPort("198.51.100.2:40000")
	dsts := [2]netip.Addr{LinkLocalClient(), LinkLocalClientCone()}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		out = t.Append(out[:0], nonce, client, dsts[i&1])
		i++
	}
}

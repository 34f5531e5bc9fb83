// SPDX-License-Identifier: MIT

package proto

import (
	"bytes"
	"net/netip"
	"testing"
)

// Fuzz targets: each parser must never panic, and whatever it accepts must
// encode back to the same bytes (or to a packet that parses the same). The
// seeds are the table vectors and the captured Miredo and Windows traffic;
// crashers found by `make fuzz` land in testdata/fuzz/<Target>/ and run as
// regression cases with every `go test`.

func addCaptureSeeds(f *testing.F, ipv6Only bool) {
	for _, name := range captures {
		for _, d := range loadDatagrams(f, name) {
			if notTeredo[d.Src.Port()] || notTeredo[d.Dst.Port()] {
				continue
			}
			if !ipv6Only {
				f.Add(d.Payload)
				continue
			}
			var e Envelope
			if ParseEnvelope(d.Payload, &e) == nil {
				f.Add([]byte(e.IPv6))
			}
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	addCaptureSeeds(f, false)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Envelope
		if err := ParseEnvelope(b, &e); err != nil {
			return
		}
		if e.IPv6.Version() != 6 || len(e.IPv6) != IPv6HeaderLen+int(e.IPv6.PayloadLength()) {
			t.Fatalf("accepted a bad IPv6 packet: %x", []byte(e.IPv6))
		}
		got := rebuild(t, &e)
		if !bytes.Equal(got, b) {
			t.Fatalf("round trip:\n got %x\nwant %x", got, b)
		}
		var e2 Envelope
		if err := ParseEnvelope(got, &e2); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if e2.HasAuth != e.HasAuth || e2.HasOrigin != e.HasOrigin || e2.Origin != e.Origin || e2.Auth.Nonce != e.Auth.Nonce {
			t.Fatalf("re-parse differs: %+v vs %+v", e2, e)
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:c000:201:8000:cfc6:3fff:fd74", "::", "ffff::ffff"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 16 {
			return
		}
		in := netip.AddrFrom16([16]byte(b))
		a, ok := ParseAddress(in)
		if !ok {
			t.Fatal("ParseAddress refused an IPv6 address")
		}
		if got := a.Addr(); got != in {
			t.Fatalf("round trip %v -> %+v -> %v", in, a, got)
		}
		if HasPrefix(in, a.Prefix) != true {
			t.Fatal("HasPrefix disagrees with the decoded prefix")
		}
	})
}

func FuzzParseICMPv6(f *testing.F) {
	addCaptureSeeds(f, true)
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, _, err := ParseIPv6(b)
		if err != nil {
			return
		}
		m, err := ParseICMPv6(pkt)
		if err != nil {
			return
		}
		if len(m) < ICMPv6HeaderLen || ICMPv6Checksum(pkt.Src(), pkt.Dst(), m) != 0 {
			t.Fatal("accepted a message with a bad checksum")
		}
	})
}

func FuzzParseRouterSolicitation(f *testing.F) {
	addCaptureSeeds(f, true)
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, _, err := ParseIPv6(b)
		if err != nil {
			return
		}
		rs, err := ParseRouterSolicitation(pkt)
		if err != nil {
			return
		}
		if !rs.Src.IsLinkLocalUnicast() || rs.Src != pkt.Src() || pkt.HopLimit() != 255 {
			t.Fatalf("accepted %+v from %v hop %d", rs, pkt.Src(), pkt.HopLimit())
		}
		if a, _ := ParseAddress(rs.Src); a.Cone() != rs.Cone {
			t.Fatalf("cone %v, source flags %#x", rs.Cone, a.Flags)
		}
	})
}

func FuzzParseRouterAdvertisement(f *testing.F) {
	addCaptureSeeds(f, true)
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, _, err := ParseIPv6(b)
		if err != nil {
			return
		}
		ra, err := ParseRouterAdvertisement(pkt)
		if err != nil {
			return
		}
		if ra.MTU != 0 && (ra.MTU < MinMTU || ra.MTU > 65535) || !ra.Server.Is4() || ra.Prefix>>24 == 0xff {
			t.Fatalf("accepted %+v", ra)
		}
		if ra.MTU == 0 {
			return // our builder always writes an MTU option
		}
		// What we accept, we can say again: build an RA from the parsed
		// fields and read back the same thing.
		out := AppendRouterAdvertisement(nil, RAFields{Dst: pkt.Dst(), Server: ra.Server, Prefix: ra.Prefix, MTU: ra.MTU})
		var e Envelope
		if err := ParseEnvelope(out, &e); err != nil {
			t.Fatal(err)
		}
		ra2, err := ParseRouterAdvertisement(e.IPv6)
		if err != nil || ra2 != ra {
			t.Fatalf("rebuilt RA reads %+v, %v; want %+v", ra2, err, ra)
		}
	})
}

// fuzzAddr reads 4 bytes as an IPv4 address, 16 as an IPv6 one and
// anything else as the zero Addr, so a target covers all three.
func fuzzAddr(b []byte) netip.Addr {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b))
	case 16:
		return netip.AddrFrom16([16]byte(b))
	}
	return netip.Addr{}
}

// FuzzRATemplate checks that a server's RA template appends, for any
// fields, the bytes AppendRouterAdvertisement builds, with a correct
// checksum, and that an Append leaves the template unchanged.
func FuzzRATemplate(f *testing.F) {
	ones := bytes.Repeat([]byte{0xff}, 16)
	f.Add([]byte{0xe2, 0xd3, 0x12, 0x7c, 0x54, 0x46, 0xe3, 0xc9}, []byte{198, 51, 100, 2}, uint16(35171),
		LinkLocalClient().AsSlice(), []byte{192, 0, 2, 10}, DefaultPrefix, uint32(1280))
	f.Add(ones[:8], ones[:4], uint16(0xffff), ones, ones[:4], uint32(0xffffffff), uint32(0xffffffff))
	f.Add([]byte{}, []byte{}, uint16(0), []byte{}, []byte{}, uint32(0), uint32(0))
	f.Add([]byte{1}, netip.MustParseAddr("::ffff:198.51.100.2").AsSlice(), uint16(4000),
		[]byte{198, 51, 100, 2}, netip.MustParseAddr("2001:db8::2").AsSlice(), DefaultPrefix, uint32(1400))
	f.Fuzz(func(t *testing.T, nonce, client []byte, port uint16, to, server []byte, prefix, mtu uint32) {
		fields := RAFields{Client: netip.AddrPortFrom(fuzzAddr(client), port), Dst: fuzzAddr(to), Server: fuzzAddr(server), Prefix: prefix, MTU: mtu}
		copy(fields.Nonce[:], nonce)
		tmpl := NewRATemplate(fields.Server, prefix, mtu)
		want := AppendRouterAdvertisement([]byte{7}, fields)
		got := tmpl.Append([]byte{7}, fields.Nonce, fields.Client, fields.Dst)
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v:\n got %x\nwant %x", fields, got, want)
		}
		if _, err := ParseICMPv6(IPv6(got[1+raIPv6Off:])); err != nil {
			t.Fatalf("%+v: %v", fields, err)
		}
		// Another RA from the template, to the complement of everything.
		var other [NonceLen]byte
		for i := range other {
			other[i] = ^fields.Nonce[i]
		}
		d := fields.Dst.As16()
		for i := range d {
			d[i] = ^d[i]
		}
		_ = tmpl.Append(got[:0], other, netip.AddrPortFrom(netip.AddrFrom4([4]byte{1, 2, 3, 4}), ^port), netip.AddrFrom16(d))
		if again := tmpl.Append(nil, fields.Nonce, fields.Client, fields.Dst); !bytes.Equal(again, want[1:]) {
			t.Fatalf("%+v after another Append:\n got %x\nwant %x", fields, again, want[1:])
		}
	})
}

// FuzzTrailers walks arbitrary trailer areas (RFC 6081 §4, §5.1.2): no
// panic; the walk cuts the area into whole trailers up to the first
// truncated one; an error is one of the trailer sentinels; and whatever was
// read before any error is written again by AppendTrailers and reads back
// the same.
func FuzzTrailers(f *testing.F) {
	for _, tc := range trailerCases(f) {
		f.Add(mustHex(f, tc.hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr Trailers
		err := ParseTrailers(b, &tr)
		switch err {
		case nil, ErrTrailerTruncated, ErrTrailerLength, ErrTrailerDiscard, ErrAlternateAddress:
		default:
			t.Fatalf("unexpected error %v", err)
		}
		walked := 0
		for rest := b; len(rest) > 0; {
			tt, next, err := NextTrailer(rest)
			if err != nil {
				break
			}
			if len(tt) != TrailerHeaderLen+len(tt.Value()) || !bytes.Equal(tt, rest[:len(tt)]) {
				t.Fatalf("NextTrailer returned %x from %x", []byte(tt), rest)
			}
			walked += len(tt)
			rest = next
		}
		if err == nil && walked != len(b) {
			t.Fatalf("accepted %x but the walk stops after %d bytes", b, walked)
		}
		if tr.AltAddrs != nil && (tr.AltAddrs.Len() == 0 || tr.AltAddrs.Len() > MaxAlternateAddresses) {
			t.Fatalf("accepted %d alternate addresses", tr.AltAddrs.Len())
		}
		checkTrailersRoundTrip(t, &tr)
	})
}

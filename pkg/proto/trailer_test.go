// SPDX-License-Identifier: MIT

package proto

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// trailerCase is a trailer area written field by field from RFC 6081 §4
// and what ParseTrailers must make of it.
type trailerCase struct {
	name string
	hex  string
	want Trailers
	err  error
}

func altAddrs(t testing.TB, hex string) AlternateAddresses {
	return AlternateAddresses(mustHex(t, hex))
}

func trailerCases(t testing.TB) []trailerCase {
	nonce := [TrailerNonceLen]byte{0xde, 0xad, 0xbe, 0xef}
	return []trailerCase{
		{name: "none", hex: "", want: Trailers{}},
		// §4.2: type 0x01, length 0x04, 4-byte nonce.
		{name: "nonce", hex: "0104" + "deadbeef", want: Trailers{HasNonce: true, Nonce: nonce}},
		// §4.3: type 0x03, length 8 = reserved(2) + one entry: 10.0.0.2:40000.
		{name: "alternate address, one entry", hex: "0308" + "0000" + "0a000002" + "9c40",
			want: Trailers{AltAddrs: altAddrs(t, "0a0000029c40")}},
		// §4.3: length 14, the local endpoint and a UPnP mapping (the
		// "SHOULD be at most 14" case); reserved bytes ignored on receipt.
		{name: "alternate address, local and UPnP", hex: "030e" + "ffff" + "0a000002" + "9c40" + "c6336402" + "0dd9",
			want: Trailers{AltAddrs: altAddrs(t, "0a0000029c40"+"c63364020dd9")}},
		// §4.3: length 26, four entries, the most allowed.
		{name: "alternate address, four entries", hex: "031a0000" + "0a0000029c40" + "0a0000039c41" + "c63364029c42" + "cb0071029c43",
			want: Trailers{AltAddrs: altAddrs(t, "0a0000029c40"+"0a0000039c41"+"c63364029c42"+"cb0071029c43")}},
		// §4.4: type 0x04, length 4, DiscoveryType, 3 reserved bytes.
		{name: "discovery solicitation", hex: "0404" + "00" + "000000", want: Trailers{HasDiscovery: true, Discovery: DiscoverySolicitation}},
		{name: "discovery advertisement, reserved ignored", hex: "0404" + "01" + "abcdef", want: Trailers{HasDiscovery: true, Discovery: DiscoveryAdvertisement}},
		// §4.5: type 0x05, length 2, port 1201 (the prediction of §6.4).
		{name: "random port", hex: "0502" + "04b1", want: Trailers{RandomPort: 1201}},
		// §9 registers the Random Port trailer as 0x02.
		{name: "random port, IANA type", hex: "0202" + "04b1", want: Trailers{RandomPort: 1201}},
		// §6.3 packet 2: an indirect bubble with Nonce and Random Port.
		{name: "nonce and random port", hex: "0104deadbeef" + "05020fa1", want: Trailers{HasNonce: true, Nonce: nonce, RandomPort: 4001}},
		// §6.5 packet 2: Alternate Address and Nonce.
		{name: "alternate address and nonce", hex: "03080000c0a802109c40" + "0104deadbeef",
			want: Trailers{HasNonce: true, Nonce: nonce, AltAddrs: altAddrs(t, "c0a802109c40")}},
		// §4.1: unknown types starting 00, 10 or 11 are skipped...
		{name: "unknown 00, 10, 11 skipped", hex: "0000" + "3f01aa" + "8002bbbb" + "c003cccccc" + "0104deadbeef",
			want: Trailers{HasNonce: true, Nonce: nonce, Skipped: 4}},
		// ...and one starting 01 discards the packet.
		{name: "unknown 01 discards", hex: "0104deadbeef" + "4000", want: Trailers{HasNonce: true, Nonce: nonce}, err: ErrTrailerDiscard},
		{name: "unknown 0x7f discards", hex: "7f0100", err: ErrTrailerDiscard},
		// A later trailer of a type replaces an earlier one.
		{name: "second nonce wins", hex: "010400000001" + "0104deadbeef", want: Trailers{HasNonce: true, Nonce: nonce}},
		// §5.1.2: malformed trailers stop processing, earlier ones stand.
		{name: "one byte left", hex: "0104deadbeef" + "05", want: Trailers{HasNonce: true, Nonce: nonce}, err: ErrTrailerTruncated},
		{name: "value cut short", hex: "0104dead", err: ErrTrailerTruncated},
		{name: "unknown cut short", hex: "05020fa1" + "8005aa", want: Trailers{RandomPort: 4001}, err: ErrTrailerTruncated},
		// Lengths §4.2, §4.4 and §4.5 fix (MUST be 4, 4 and 2).
		{name: "nonce of 3 bytes", hex: "0103aabbcc", err: ErrTrailerLength},
		{name: "random port of 4 bytes", hex: "0104deadbeef" + "050400000fa1", want: Trailers{HasNonce: true, Nonce: nonce}, err: ErrTrailerLength},
		{name: "discovery of 1 byte", hex: "040101", err: ErrTrailerLength},
		// §4.3: lengths 8, 14, 20, 26 only; unicast addresses; ports not 0.
		{name: "alternate address length 7", hex: "0307" + "0000" + "0a0000029c", err: ErrAlternateAddress},
		{name: "alternate address without entries", hex: "03020000", err: ErrAlternateAddress},
		{name: "alternate address, five entries", hex: "0320" + "0000" + "0a0000029c40" + "0a0000029c41" + "0a0000029c42" + "0a0000029c43" + "0a0000029c44", err: ErrAlternateAddress},
		{name: "alternate address 0.0.0.0", hex: "03080000" + "00000000" + "9c40", err: ErrAlternateAddress},
		{name: "alternate address loopback", hex: "03080000" + "7f000001" + "9c40", err: ErrAlternateAddress},
		{name: "alternate address multicast", hex: "03080000" + "e0000001" + "9c40", err: ErrAlternateAddress},
		{name: "alternate address broadcast", hex: "03080000" + "ffffffff" + "9c40", err: ErrAlternateAddress},
		{name: "alternate address port 0", hex: "03080000" + "0a000002" + "0000", err: ErrAlternateAddress},
	}
}

func TestParseTrailers(t *testing.T) {
	for _, tc := range trailerCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			var got Trailers
			err := ParseTrailers(mustHex(t, tc.hex), &got)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			drops := errors.Is(tc.err, ErrTrailerDiscard) || errors.Is(tc.err, ErrAlternateAddress)
			if TrailerDropsPacket(err) != drops {
				t.Errorf("TrailerDropsPacket(%v) = %v", err, !drops)
			}
		})
	}
}

// What ParseTrailers accepts, AppendTrailers writes again, and it reads back
// the same (skipped trailers aside, which are not written).
func TestTrailersRoundTrip(t *testing.T) {
	for _, tc := range trailerCases(t) {
		if tc.err != nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			checkTrailersRoundTrip(t, &tc.want)
		})
	}
}

func checkTrailersRoundTrip(t *testing.T, in *Trailers) {
	t.Helper()
	b, err := AppendTrailers(nil, in)
	if err != nil {
		t.Fatalf("AppendTrailers(%+v): %v", in, err)
	}
	var again Trailers
	if err := ParseTrailers(b, &again); err != nil {
		t.Fatalf("re-parse of %x: %v", b, err)
	}
	want := *in
	want.Skipped = 0
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip %x:\n got %+v\nwant %+v", b, again, want)
	}
}

// The builders write the §4 layouts byte for byte.
func TestAppendTrailerLayouts(t *testing.T) {
	alt, err := AppendAlternateAddressTrailer(nil, []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("198.51.100.2:3545")})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"nonce", AppendNonceTrailer(nil, [4]byte{0xde, 0xad, 0xbe, 0xef}), "0104deadbeef"},
		{"random port", AppendRandomPortTrailer(nil, 1201), "050204b1"},
		{"solicitation", AppendDiscoveryTrailer(nil, DiscoverySolicitation), "040400000000"},
		{"advertisement", AppendDiscoveryTrailer(nil, DiscoveryAdvertisement), "040401000000"},
		{"alternate addresses", alt, "030e0000" + "0a0000029c40" + "c63364020dd9"},
	}
	for _, tc := range cases {
		if want := mustHex(t, tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s: %x, want %x", tc.name, tc.got, want)
		}
	}
	bad := [][]netip.AddrPort{
		nil,
		make([]netip.AddrPort, 5),
		{netip.MustParseAddrPort("10.0.0.2:0")},
		{netip.MustParseAddrPort("224.0.0.1:1")},
		{netip.MustParseAddrPort("[2001:db8::1]:1")},
	}
	for _, addrs := range bad {
		if b, err := AppendAlternateAddressTrailer([]byte{9}, addrs); !errors.Is(err, ErrAlternateAddress) || !bytes.Equal(b, []byte{9}) {
			t.Errorf("AppendAlternateAddressTrailer(%v) = %x, %v; want dst unchanged and ErrAlternateAddress", addrs, b, err)
		}
	}
}

// A bubble carries its trailers after the IPv6 packet (RFC 6081 §4): an
// indirect bubble as a Teredo server forwards it (origin indication, bubble,
// Nonce and Random Port trailers, §6.3 packet 2) parses as an envelope whose
// trailer area holds them, while the IPv6 packet stays 40 bytes.
func TestTrailersAfterBubble(t *testing.T) {
	src := netip.MustParseAddr("2001:0:c000:20a:4c8:769c:39cc:9bfd")
	dst := netip.MustParseAddr("2001:0:c000:20a:3c86:6522:34ff:8efd")
	b := AppendOrigin(nil, netip.MustParseAddrPort("198.51.100.2:35171"))
	b = AppendBubble(b, src, dst, 0)
	b = AppendNonceTrailer(b, [4]byte{1, 2, 3, 4})
	b = AppendRandomPortTrailer(b, 4001)
	var e Envelope
	if err := ParseEnvelope(b, &e); err != nil {
		t.Fatal(err)
	}
	if !e.IPv6.IsBubble() || len(e.IPv6) != IPv6HeaderLen || !e.HasOrigin {
		t.Fatalf("bubble not recognised: %+v", e)
	}
	var tr Trailers
	if err := ParseTrailers(e.Trailer, &tr); err != nil {
		t.Fatal(err)
	}
	if want := (Trailers{HasNonce: true, Nonce: [4]byte{1, 2, 3, 4}, RandomPort: 4001}); !reflect.DeepEqual(tr, want) {
		t.Errorf("trailers %+v, want %+v", tr, want)
	}
}

// NextTrailer cuts the area into whole trailers that put back together give
// the area again.
func TestNextTrailerWalk(t *testing.T) {
	area := mustHex(t, "0104deadbeef"+"0000"+"c003cccccc"+"05020fa1")
	var joined []byte
	var types []TrailerType
	for b := area; len(b) > 0; {
		tr, rest, err := NextTrailer(b)
		if err != nil {
			t.Fatal(err)
		}
		joined = append(joined, tr...)
		types = append(types, tr.Type())
		b = rest
	}
	if !bytes.Equal(joined, area) {
		t.Errorf("walk gives %x, want %x", joined, area)
	}
	if want := []TrailerType{TrailerNonce, 0, 0xc0, TrailerRandomPort}; !reflect.DeepEqual(types, want) {
		t.Errorf("types %v, want %v", types, want)
	}
}

func TestTrailerTypeBits(t *testing.T) {
	for typ := range 256 {
		tt := TrailerType(typ)
		if want := typ >= 0x40 && typ <= 0x7f; tt.DiscardIfUnknown() != want {
			t.Errorf("type %#x: DiscardIfUnknown = %v", typ, !want)
		}
	}
	for _, tt := range []TrailerType{TrailerNonce, TrailerRandomPortIANA, TrailerAlternateAddress, TrailerNeighborDiscover, TrailerRandomPort} {
		if !tt.Known() || tt.DiscardIfUnknown() {
			t.Errorf("type %#x: Known %v, DiscardIfUnknown %v", uint8(tt), tt.Known(), tt.DiscardIfUnknown())
		}
	}
}

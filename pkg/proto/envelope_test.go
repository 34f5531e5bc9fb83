// SPDX-License-Identifier: MIT

package proto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendOriginRFCExample(t *testing.T) {
	// RFC 4380 §5.1.1: port 337 and address 1.2.3.4 encode as 0000FEAEFEFDFCFB.
	got := AppendOrigin(nil, netip.MustParseAddrPort("1.2.3.4:337"))
	if want := mustHex(t, "0000feaefefdfcfb"); !bytes.Equal(got, want) {
		t.Fatalf("AppendOrigin = %x, want %x", got, want)
	}
	if o := decodeOrigin(got); o != netip.MustParseAddrPort("1.2.3.4:337") {
		t.Errorf("decodeOrigin = %v", o)
	}
}

func TestAppendAuth(t *testing.T) {
	nonce := [NonceLen]byte{1, 2, 3, 4, 5, 6, 7, 8}
	tests := []struct {
		name string
		auth Auth
		want string
	}{
		{"nonce only", Auth{Nonce: nonce}, "00010000" + "0102030405060708" + "00"},
		{"id and value", Auth{ClientID: []byte{0xaa, 0xbb}, Value: []byte{0xcc}, Nonce: nonce, Confirmation: 1},
			"00010201" + "aabb" + "cc" + "0102030405060708" + "01"},
	}
	for _, tc := range tests {
		got, err := AppendAuth(nil, tc.auth)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := mustHex(t, tc.want); !bytes.Equal(got, want) {
			t.Errorf("%s: AppendAuth = %x, want %x", tc.name, got, want)
		}
	}
	if got := AppendNonceAuth(nil, nonce); !bytes.Equal(got, mustHex(t, tests[0].want)) {
		t.Errorf("AppendNonceAuth = %x", got)
	}
	if _, err := AppendAuth(nil, Auth{ClientID: make([]byte, 256)}); !errors.Is(err, ErrTooLong) {
		t.Errorf("AppendAuth with a 256-byte id: err = %v, want ErrTooLong", err)
	}
}

// bubbleHex is a bubble from fe80::1 to 2001:db8::2, 40 bytes.
const bubbleHex = "6000000000003b00" + "fe800000000000000000000000000001" + "20010db8000000000000000000000002"

func TestParseEnvelope(t *testing.T) {
	nonce := "1122334455667788"
	origin := "0000feaefefdfcfb"
	echo := "6000000000083a40" + "fe800000000000000000000000000001" + "20010db8000000000000000000000002" + "8000000000000000"
	tests := []struct {
		name       string
		in         string
		err        error
		auth       bool
		origin     bool
		idLen      int
		valLen     int
		trailerLen int
		ipv6Len    int
	}{
		{"bare bubble", bubbleHex, nil, false, false, 0, 0, 0, 40},
		{"origin + bubble", origin + bubbleHex, nil, false, true, 0, 0, 0, 40},
		{"auth + bubble", "00010000" + nonce + "00" + bubbleHex, nil, true, false, 0, 0, 0, 40},
		{"auth + origin + bubble", "00010000" + nonce + "00" + origin + bubbleHex, nil, true, true, 0, 0, 0, 40},
		{"auth with id and value", "00010302" + "aabbcc" + "dddd" + nonce + "00" + bubbleHex, nil, true, false, 3, 2, 0, 40},
		{"payload", echo, nil, false, false, 0, 0, 0, 48},
		{"trailer tolerated (RFC 6081)", bubbleHex + "0104deadbeef", nil, false, false, 0, 0, 6, 40},
		{"empty", "", ErrShortIPv6, false, false, 0, 0, 0, 0},
		{"short IPv6", bubbleHex[:78], ErrShortIPv6, false, false, 0, 0, 0, 0},
		{"IPv4 inside", "4500001c" + bubbleHex[8:], ErrBadIndicator, false, false, 0, 0, 0, 0},
		{"version 0 after origin", origin + "0500" + bubbleHex[4:], ErrBadIndicator, false, true, 0, 0, 0, 0},
		{"payload length beyond datagram", echo[:len(echo)-2], ErrIPv6Length, false, false, 0, 0, 0, 0},
		{"short auth", "00010000" + nonce, ErrShortAuth, false, false, 0, 0, 0, 0},
		{"auth id beyond datagram", "0001ff00" + nonce + "00" + bubbleHex, ErrShortAuth, false, false, 0, 0, 0, 0},
		{"short origin", "0000feae", ErrShortOrigin, false, false, 0, 0, 0, 0},
		{"two origins", origin + origin + bubbleHex, ErrDuplicateOrigin, false, false, 0, 0, 0, 0},
		{"origin before auth", origin + "00010000" + nonce + "00" + bubbleHex, ErrBadIndicator, false, false, 0, 0, 0, 0},
		{"unknown indicator", "0002" + bubbleHex, ErrBadIndicator, false, false, 0, 0, 0, 0},
		{"one byte", "00", ErrBadIndicator, false, false, 0, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e Envelope
			err := ParseEnvelope(mustHex(t, tc.in), &e)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseEnvelope error = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if e.HasAuth != tc.auth || e.HasOrigin != tc.origin {
				t.Errorf("HasAuth=%v HasOrigin=%v, want %v %v", e.HasAuth, e.HasOrigin, tc.auth, tc.origin)
			}
			if len(e.Auth.ClientID) != tc.idLen || len(e.Auth.Value) != tc.valLen {
				t.Errorf("id %d bytes, value %d bytes; want %d, %d", len(e.Auth.ClientID), len(e.Auth.Value), tc.idLen, tc.valLen)
			}
			if tc.auth && hex.EncodeToString(e.Auth.Nonce[:]) != nonce {
				t.Errorf("nonce = %x, want %s", e.Auth.Nonce, nonce)
			}
			if tc.origin && e.Origin != netip.MustParseAddrPort("1.2.3.4:337") {
				t.Errorf("origin = %v", e.Origin)
			}
			if len(e.IPv6) != tc.ipv6Len || len(e.Trailer) != tc.trailerLen {
				t.Errorf("IPv6 %d bytes, trailer %d; want %d, %d", len(e.IPv6), len(e.Trailer), tc.ipv6Len, tc.trailerLen)
			}
			if e.IPv6.Src() != netip.MustParseAddr("fe80::1") || e.IPv6.Dst() != netip.MustParseAddr("2001:db8::2") {
				t.Errorf("IPv6 %v -> %v", e.IPv6.Src(), e.IPv6.Dst())
			}
		})
	}
}

func TestIPv6Accessors(t *testing.T) {
	b := mustHex(t, "6abcdef5000c3a40"+"fe800000000000000000000000000001"+"20010db8000000000000000000000002"+"00112233445566778899aabb")
	p, trailer, err := ParseIPv6(b)
	if err != nil || len(trailer) != 0 {
		t.Fatalf("ParseIPv6: %v, trailer %d", err, len(trailer))
	}
	if p.Version() != 6 || p.TrafficClass() != 0xab || p.FlowLabel() != 0xcdef5 || p.PayloadLength() != 12 ||
		p.NextHeader() != 58 || p.HopLimit() != 64 || len(p.Payload()) != 12 || p.IsBubble() {
		t.Errorf("accessors: v%d tc %#x fl %#x len %d nh %d hl %d bubble %v", p.Version(), p.TrafficClass(), p.FlowLabel(),
			p.PayloadLength(), p.NextHeader(), p.HopLimit(), p.IsBubble())
	}
	p.SetHopLimit(7)
	p.SetSrc(netip.MustParseAddr("2001:db8::7"))
	p.SetDst(netip.MustParseAddr("2001:db8::8"))
	if p.HopLimit() != 7 || p.Src() != netip.MustParseAddr("2001:db8::7") || p.Dst() != netip.MustParseAddr("2001:db8::8") {
		t.Errorf("setters did not stick: %d %v %v", p.HopLimit(), p.Src(), p.Dst())
	}
	bub, _, _ := ParseIPv6(mustHex(t, bubbleHex))
	if !bub.IsBubble() || len(bub.Packet()) != 40 {
		t.Error("bubble not recognised")
	}
}

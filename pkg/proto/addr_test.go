// SPDX-License-Identifier: MIT

package proto

import (
	"net/netip"
	"testing"
)

func TestParseAddressVectors(t *testing.T) {
	tests := []struct {
		addr   string
		server string
		flags  uint16
		port   uint16
		mapped string
	}{
		// RFC 4380 example as published (Wikipedia, CyberChef): cone, no random bits.
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "65.54.227.120", 0x8000, 40000, "192.0.2.45"},
		// Miredo's own address-comparison test vector.
		{"2001:0:c000:201:8000:cfc6:3fff:fd74", "192.0.2.1", 0x8000, 12345, "192.0.2.139"},
		// The two Miredo 1.2.6 clients of the reference captures (RFC 5991 random bits).
		{"2001:0:c000:20a:4c8:769c:39cc:9bfd", "192.0.2.10", 0x04c8, 35171, "198.51.100.2"},
		{"2001:0:c000:20a:3c86:6522:34ff:8efd", "192.0.2.10", 0x3c86, 39645, "203.0.113.2"},
		// Windows client of the Zeek capture: Microsoft server 65.55.158.80, mapped 70.55.215.234:3797.
		{"2001:0:4137:9e50:8000:f12a:b9c8:2815", "65.55.158.80", 0x8000, 3797, "70.55.215.234"},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			a, ok := ParseAddress(netip.MustParseAddr(tc.addr))
			if !ok {
				t.Fatal("ParseAddress: not ok")
			}
			want := Address{
				Prefix:     DefaultPrefix,
				Server:     netip.MustParseAddr(tc.server),
				Flags:      tc.flags,
				MappedPort: tc.port,
				MappedAddr: netip.MustParseAddr(tc.mapped),
			}
			if a != want {
				t.Fatalf("ParseAddress = %+v, want %+v", a, want)
			}
			if got := a.Addr(); got != netip.MustParseAddr(tc.addr) {
				t.Errorf("Addr() = %v, want %v", got, tc.addr)
			}
			if a.Cone() != (tc.flags&FlagCone != 0) {
				t.Errorf("Cone() = %v", a.Cone())
			}
			if a.Mapping() != netip.AddrPortFrom(want.MappedAddr, tc.port) {
				t.Errorf("Mapping() = %v", a.Mapping())
			}
			if !HasPrefix(netip.MustParseAddr(tc.addr), DefaultPrefix) {
				t.Error("HasPrefix = false")
			}
		})
	}
}

func TestParseAddressRejectsIPv4(t *testing.T) {
	if _, ok := ParseAddress(netip.MustParseAddr("192.0.2.1")); ok {
		t.Error("ParseAddress accepted an IPv4 address")
	}
	if HasPrefix(netip.MustParseAddr("192.0.2.1"), DefaultPrefix) {
		t.Error("HasPrefix accepted an IPv4 address")
	}
	if HasPrefix(netip.MustParseAddr("2001:db8::1"), DefaultPrefix) {
		t.Error("HasPrefix accepted 2001:db8::1")
	}
}

func TestPrefixHelpers(t *testing.T) {
	p := PrefixOf(netip.MustParseAddr("2001:0::"))
	if p != DefaultPrefix {
		t.Errorf("PrefixOf(2001:0::) = %#x", p)
	}
	if got := PrefixAddr(0x3ffe831f); got != netip.MustParseAddr("3ffe:831f::") {
		t.Errorf("PrefixAddr = %v", got)
	}
}

func TestRandomFlags(t *testing.T) {
	tests := []struct {
		r    [2]byte
		cone bool
		want uint16
	}{
		{[2]byte{0xff, 0xff}, false, 0x3cff},
		{[2]byte{0xff, 0xff}, true, 0xbcff},
		{[2]byte{0x00, 0x00}, false, 0x0000},
		{[2]byte{0xc3, 0x00}, false, 0x0000}, // C, R, U and G bits never come from randomness
		{[2]byte{0x04, 0xc8}, false, 0x04c8}, // Miredo client 1 of the captures
		{[2]byte{0x3c, 0x86}, false, 0x3c86},
	}
	for _, tc := range tests {
		if got := RandomFlags(tc.r, tc.cone); got != tc.want {
			t.Errorf("RandomFlags(%x, %v) = %#04x, want %#04x", tc.r, tc.cone, got, tc.want)
		}
	}
}

func TestServerLinkLocal(t *testing.T) {
	tests := map[string]string{
		"192.0.2.10":   "fe80::8000:f227:3fff:fdf5", // Miredo server of the captures
		"65.55.158.80": "fe80::8000:f227:bec8:61af", // Microsoft's server of the Windows capture
	}
	for server, want := range tests {
		if got := ServerLinkLocal(netip.MustParseAddr(server)); got != netip.MustParseAddr(want) {
			t.Errorf("ServerLinkLocal(%s) = %v, want %s", server, got, want)
		}
	}
}

func TestIsGlobalUnicastIPv4(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"0.0.0.0", false}, {"0.1.2.3", false},
		{"10.0.0.1", false}, {"10.255.255.255", false},
		{"127.0.0.1", false},
		{"169.254.1.1", false}, {"169.253.1.1", true}, {"169.255.0.1", true},
		{"172.16.0.1", false}, {"172.31.255.255", false}, {"172.15.0.1", true}, {"172.32.0.1", true},
		{"192.168.0.1", false}, {"192.169.0.1", true},
		{"192.88.99.1", false}, {"192.88.98.1", true}, {"192.88.100.1", true},
		{"224.0.0.1", false}, {"239.255.255.255", false},
		{"240.0.0.1", false}, // class E: reserved, never a real mapping (stricter than Miredo)
		{"255.255.255.255", false},
		// Documentation ranges count as global, as in Miredo, so labs work.
		{"192.0.2.1", true}, {"198.51.100.2", true}, {"203.0.113.2", true},
		{"65.54.227.120", true}, {"1.2.3.4", true}, {"223.255.255.254", true},
		{"::1", false}, {"::ffff:1.2.3.4", false}, {"2001:db8::1", false},
	}
	for _, tc := range tests {
		if got := IsGlobalUnicastIPv4(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("IsGlobalUnicastIPv4(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if IsGlobalUnicastIPv4(netip.Addr{}) {
		t.Error("zero Addr counted as global")
	}
}

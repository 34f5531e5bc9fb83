// SPDX-License-Identifier: MIT

package proto

import (
	"encoding/binary"
	"net/netip"
)

// Port is the Teredo UDP port that servers listen on (RFC 4380 §2.7).
const Port = 3544

// DefaultPrefix is the global Teredo service prefix 2001:0::/32 (RFC 4380
// §2.6), as the first 32 bits of an address.
const DefaultPrefix uint32 = 0x20010000

// Flag bits in the 16-bit flags field of a Teredo address.
const (
	// FlagCone marks a client behind a cone NAT (RFC 4380 §4). RFC 5991
	// deprecates setting it; servers still honour it in solicitations.
	FlagCone uint16 = 0x8000
	// RandomFlagsMask covers the 12 bits RFC 5991 §4 fills at random so that
	// addresses are harder to guess: flags layout CRAAAAUG AAAAAAAA.
	RandomFlagsMask uint16 = 0x3CFF
)

// Address is a decoded Teredo address: prefix(32) ‖ server IPv4(32) ‖
// flags(16) ‖ ~port(16) ‖ ~client IPv4(32). The port and client address are
// stored de-obfuscated.
type Address struct {
	Prefix     uint32     // first 32 bits, normally DefaultPrefix
	Server     netip.Addr // the client's Teredo server (IPv4)
	Flags      uint16
	MappedPort uint16     // the client's external UDP port
	MappedAddr netip.Addr // the client's external IPv4 address
}

// ParseAddress decodes any IPv6 address as a Teredo address; whether a is in
// the Teredo prefix is for the caller to check (HasPrefix). It reports false
// when a is not an IPv6 address (IPv4-mapped addresses are IPv6 here).
func ParseAddress(a netip.Addr) (Address, bool) {
	if !a.Is6() {
		return Address{}, false
	}
	b := a.As16()
	return decodeAddress(&b), true
}

func decodeAddress(b *[16]byte) Address {
	return Address{
		Prefix:     binary.BigEndian.Uint32(b[0:4]),
		Server:     netip.AddrFrom4([4]byte(b[4:8])),
		Flags:      binary.BigEndian.Uint16(b[8:10]),
		MappedPort: ^binary.BigEndian.Uint16(b[10:12]),
		MappedAddr: netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}),
	}
}

// Addr encodes the Teredo address. Server and MappedAddr must be IPv4 (an
// invalid address encodes as 0.0.0.0).
func (a Address) Addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:4], a.Prefix)
	s := ipv4Bytes(a.Server)
	copy(b[4:8], s[:])
	binary.BigEndian.PutUint16(b[8:10], a.Flags)
	binary.BigEndian.PutUint16(b[10:12], ^a.MappedPort)
	m := ipv4Bytes(a.MappedAddr)
	for i := range m {
		b[12+i] = ^m[i]
	}
	return netip.AddrFrom16(b)
}

// Cone reports whether the cone flag is set.
func (a Address) Cone() bool { return a.Flags&FlagCone != 0 }

// Mapping returns the client's external IPv4 endpoint.
func (a Address) Mapping() netip.AddrPort { return netip.AddrPortFrom(a.MappedAddr, a.MappedPort) }

// HasPrefix reports whether addr lies in the Teredo /32 prefix.
func HasPrefix(addr netip.Addr, prefix uint32) bool {
	if !addr.Is6() {
		return false
	}
	b := addr.As16()
	return binary.BigEndian.Uint32(b[0:4]) == prefix
}

// PrefixOf returns the first 32 bits of an IPv6 address, the form in which
// prefixes are configured ("Prefix 2001:0::").
func PrefixOf(addr netip.Addr) uint32 {
	b := addr.As16()
	return binary.BigEndian.Uint32(b[0:4])
}

// PrefixAddr turns a 32-bit Teredo prefix back into an address, for logs and
// configuration.
func PrefixAddr(prefix uint32) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:4], prefix)
	return netip.AddrFrom16(b)
}

// RandomFlags returns flags with the RFC 5991 random bits taken from r (two
// bytes of it) and cone set as asked. r is the caller's random source, so
// tests can be deterministic and daemons can use crypto/rand.
func RandomFlags(r [2]byte, cone bool) uint16 {
	f := binary.BigEndian.Uint16(r[:]) & RandomFlagsMask
	if cone {
		f |= FlagCone
	}
	return f
}

func ipv4Bytes(a netip.Addr) [4]byte {
	if a.Is4() || a.Is4In6() {
		return a.Unmap().As4()
	}
	return [4]byte{}
}

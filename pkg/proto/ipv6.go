// SPDX-License-Identifier: MIT

package proto

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header constants.
const (
	IPv6HeaderLen = 40
	// MinMTU is the IPv6 minimum link MTU (RFC 8200 §5), Teredo's default MTU
	// and the size an ICMPv6 error must fit in.
	MinMTU = 1280
)

// Next-header values Teredo deals with.
const (
	ProtoICMPv6 = 58
	ProtoNoNext = 59 // a bubble carries no payload
)

// IPv6 is a view of an IPv6 packet: the 40-byte header and what follows.
// Accessors do not check bounds: make sure len(b) >= IPv6HeaderLen (ParseIPv6
// or ParseEnvelope do) before calling them.
type IPv6 []byte

// Version returns the IP version field (6 for a valid packet).
func (b IPv6) Version() uint8 { return b[0] >> 4 }

// TrafficClass returns the traffic class.
func (b IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(b[0:2]) >> 4) }

// FlowLabel returns the 20-bit flow label.
func (b IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(b[0:4]) & 0xFFFFF }

// PayloadLength returns the payload length field.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[4:6]) }

// NextHeader returns the next-header field.
func (b IPv6) NextHeader() uint8 { return b[6] }

// HopLimit returns the hop limit.
func (b IPv6) HopLimit() uint8 { return b[7] }

// Src returns the source address.
func (b IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(b[8:24])) }

// Dst returns the destination address.
func (b IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(b[24:40])) }

// Payload returns the bytes the payload length field covers.
func (b IPv6) Payload() []byte { return b[IPv6HeaderLen : IPv6HeaderLen+int(b.PayloadLength())] }

// Packet returns the header and payload without trailing bytes.
func (b IPv6) Packet() IPv6 { return b[:IPv6HeaderLen+int(b.PayloadLength())] }

// IsBubble reports whether the packet is a Teredo bubble: an IPv6 header
// with no payload and next header 59 (RFC 4380 §2.8).
func (b IPv6) IsBubble() bool { return b.PayloadLength() == 0 && b.NextHeader() == ProtoNoNext }

// SetPayloadLength sets the payload length field.
func (b IPv6) SetPayloadLength(n uint16) { binary.BigEndian.PutUint16(b[4:6], n) }

// SetHopLimit sets the hop limit.
func (b IPv6) SetHopLimit(h uint8) { b[7] = h }

// SetSrc sets the source address.
func (b IPv6) SetSrc(a netip.Addr) { s := a.As16(); copy(b[8:24], s[:]) }

// SetDst sets the destination address.
func (b IPv6) SetDst(a netip.Addr) { d := a.As16(); copy(b[24:40], d[:]) }

// IPv6Fields are the header fields a builder writes. Traffic class and flow
// label are always zero: Teredo control messages carry neither.
type IPv6Fields struct {
	PayloadLength uint16
	NextHeader    uint8
	HopLimit      uint8
	Src, Dst      netip.Addr
}

// AppendIPv6Header appends a 40-byte IPv6 header to dst.
func AppendIPv6Header(dst []byte, f IPv6Fields) []byte {
	dst = append(dst, 0x60, 0, 0, 0, 0, 0, f.NextHeader, f.HopLimit)
	binary.BigEndian.PutUint16(dst[len(dst)-4:], f.PayloadLength)
	s, d := f.Src.As16(), f.Dst.As16()
	dst = append(dst, s[:]...)
	return append(dst, d[:]...)
}

// ParseIPv6 checks that b starts with a well-formed IPv6 packet (RFC 4380
// §5.2.3: version 6, payload length within the datagram) and returns a view
// of exactly that packet; bytes beyond the payload length are returned as the
// trailer (RFC 6081 puts trailers there).
func ParseIPv6(b []byte) (pkt IPv6, trailer []byte, err error) {
	if len(b) < IPv6HeaderLen {
		return nil, nil, ErrShortIPv6
	}
	v := IPv6(b)
	if v.Version() != 6 {
		return nil, nil, ErrNotIPv6
	}
	n := IPv6HeaderLen + int(v.PayloadLength())
	if n > len(b) {
		return nil, nil, ErrIPv6Length
	}
	return v[:n], b[n:], nil
}

// Link-local and multicast addresses Teredo nodes use (RFC 4380 §4, Miredo).
// They are functions, as in net/netip, so no caller can change them.

// LinkLocalClient is the RS source Miredo uses: fe80::ffff:ffff:ffff.
func LinkLocalClient() netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 10: 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
}

// LinkLocalClientCone is the RS source with the cone bit, as Windows XP and
// Miredo's cone variant use it: fe80::8000:5445:5245:444f ("TEREDO").
func LinkLocalClientCone() netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: 0x80, 0x00, 'T', 'E', 'R', 'E', 'D', 'O'})
}

// IsLinkLocalIPv6 reports whether a is an IPv6 link-local unicast address,
// fe80::/10: the only source a router solicitation or advertisement may
// have (RFC 4861 §6.1). netip's IsLinkLocalUnicast would also take the
// IPv4-mapped ::ffff:169.254.0.0/16, which is not link-local on the wire.
func IsLinkLocalIPv6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.IsLinkLocalUnicast()
}

// AllRouters is ff02::2, the destination of router solicitations.
func AllRouters() netip.Addr { return netip.AddrFrom16([16]byte{0xff, 0x02, 15: 0x02}) }

// ServerLinkLocal returns the link-local source a Teredo server gives its
// router advertisements: fe80::8000:f227:<~server IPv4>, that is the cone
// flag, the obfuscated port 3544 and the obfuscated server address, as
// Miredo and Microsoft's servers send it.
func ServerLinkLocal(server netip.Addr) netip.Addr {
	a := Address{Prefix: 0xfe800000, Flags: FlagCone, MappedPort: Port, MappedAddr: server}
	b := a.Addr().As16()
	b[4], b[5], b[6], b[7] = 0, 0, 0, 0
	return netip.AddrFrom16(b)
}

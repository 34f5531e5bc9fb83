// SPDX-License-Identifier: MIT

package proto

import (
	"encoding/binary"
	"net/netip"
)

// ICMPv6 message types Teredo nodes send or inspect.
const (
	ICMPv6DstUnreachable  = 1
	ICMPv6PacketTooBig    = 2
	ICMPv6TimeExceeded    = 3
	ICMPv6ParamProblem    = 4
	ICMPv6EchoRequest     = 128
	ICMPv6EchoReply       = 129
	ICMPv6RouterSolicit   = 133
	ICMPv6RouterAdvertise = 134
)

// Destination-unreachable codes (RFC 4443 §3.1) the client and relay use.
const (
	UnreachNoRoute     = 0
	UnreachProhibited  = 1
	UnreachAddress     = 3
	UnreachPort        = 4
	ICMPv6HeaderLen    = 4
	icmpv6EchoHeader   = 8
	icmpv6ErrorHeader  = 8
	maxICMPv6ErrorSize = MinMTU - IPv6HeaderLen // the error must fit in 1280 bytes
)

// ICMPv6 is a view of an ICMPv6 message (the IPv6 payload). Accessors do not
// check bounds: len(b) >= ICMPv6HeaderLen for the common fields, >= 8 for the
// echo and error fields.
type ICMPv6 []byte

// Type returns the message type.
func (b ICMPv6) Type() uint8 { return b[0] }

// Code returns the message code.
func (b ICMPv6) Code() uint8 { return b[1] }

// Checksum returns the checksum field.
func (b ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(b[2:4]) }

// EchoID returns the identifier of an echo request or reply.
func (b ICMPv6) EchoID() uint16 { return binary.BigEndian.Uint16(b[4:6]) }

// EchoSeq returns the sequence number of an echo request or reply.
func (b ICMPv6) EchoSeq() uint16 { return binary.BigEndian.Uint16(b[6:8]) }

// Body returns what follows the 8-byte echo or error header: echo data, or
// the invoking packet an error quotes.
func (b ICMPv6) Body() []byte { return b[8:] }

// ICMPv6Checksum computes the checksum of msg sent from src to dst (RFC 4443
// §2.3: over the IPv6 pseudo-header and the message). The checksum field of
// msg must be zero, or the result is zero when msg carries a correct one.
func ICMPv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	sum := sumBytes(0, s[:])
	sum = sumBytes(sum, d[:])
	sum += uint64(len(msg)) + ProtoICMPv6
	return ^fold(sumBytes(sum, msg))
}

// packetChecksum is ICMPv6Checksum for the message carried by pkt, whose
// header holds source and destination side by side (bytes 8-40): summing
// them there spares the hot path a trip through netip.Addr and back.
func packetChecksum(pkt IPv6, msg []byte) uint16 {
	sum := sumBytes(0, pkt[8:IPv6HeaderLen])
	sum += uint64(len(msg)) + ProtoICMPv6
	return ^fold(sumBytes(sum, msg))
}

// fold reduces a ones'-complement sum to 16 bits (not inverted). A sum that
// is not zero folds to a value in 1-0xffff, whatever order its words were
// added in, which is what lets RATemplate add the destination last.
func fold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xFFFF + sum>>16
	}
	return uint16(sum)
}

// sumBytes adds b to a ones'-complement sum as big-endian 16-bit words.
func sumBytes(sum uint64, b []byte) uint64 {
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b[0:4])) + uint64(binary.BigEndian.Uint32(b[4:8]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// ParseICMPv6 checks that pkt carries a whole ICMPv6 message with a correct
// checksum and returns a view of it.
func ParseICMPv6(pkt IPv6) (ICMPv6, error) {
	if pkt.NextHeader() != ProtoICMPv6 {
		return nil, ErrShortICMPv6
	}
	m := ICMPv6(pkt.Payload())
	if len(m) < ICMPv6HeaderLen {
		return nil, ErrShortICMPv6
	}
	if packetChecksum(pkt, m) != 0 {
		return nil, ErrICMPv6Checksum
	}
	return m, nil
}

// finishICMPv6 fills in the payload length and ICMPv6 checksum of the
// packet that starts at dst[start:], whose message was appended with a zero
// checksum.
func finishICMPv6(dst []byte, start int) []byte {
	pkt := IPv6(dst[start:])
	msg := dst[start+IPv6HeaderLen:]
	pkt.SetPayloadLength(uint16(len(msg)))
	binary.BigEndian.PutUint16(msg[2:4], packetChecksum(pkt, msg))
	return dst
}

// EchoFields describe an ICMPv6 echo request or reply.
type EchoFields struct {
	Src, Dst netip.Addr
	HopLimit uint8
	ID, Seq  uint16
	Data     []byte // for a connectivity test, carries the nonce
}

// AppendEchoRequest appends an IPv6 packet carrying an ICMPv6 echo request,
// as used by the direct IPv6 connectivity test (RFC 4380 §5.2.9).
func AppendEchoRequest(dst []byte, f EchoFields) []byte {
	return appendEcho(dst, ICMPv6EchoRequest, f)
}

// AppendEchoReply appends an IPv6 packet carrying an ICMPv6 echo reply.
func AppendEchoReply(dst []byte, f EchoFields) []byte {
	return appendEcho(dst, ICMPv6EchoReply, f)
}

func appendEcho(dst []byte, typ uint8, f EchoFields) []byte {
	start := len(dst)
	dst = AppendIPv6Header(dst, IPv6Fields{NextHeader: ProtoICMPv6, HopLimit: f.HopLimit, Src: f.Src, Dst: f.Dst})
	dst = append(dst, typ, 0, 0, 0, byte(f.ID>>8), byte(f.ID), byte(f.Seq>>8), byte(f.Seq))
	dst = append(dst, f.Data...)
	return finishICMPv6(dst, start)
}

// AppendDestUnreachable appends an IPv6 packet carrying an ICMPv6
// destination-unreachable error about invoking, from src to the invoking
// packet's source. The quoted packet is cut so that the whole error fits in
// 1280 bytes (RFC 4443 §2.4 (c)). Hop limit is 255, as for locally generated
// errors.
func AppendDestUnreachable(dst []byte, src netip.Addr, code uint8, invoking IPv6) []byte {
	return appendError(dst, src, ICMPv6DstUnreachable, code, 0, invoking)
}

// Parameter-problem codes (RFC 4443 §3.4).
const (
	ParamProblemHeader     = 0 // erroneous header field
	ParamProblemNextHeader = 1 // unrecognized next header type
	ParamProblemOption     = 2 // unrecognized IPv6 option
)

// AppendParamProblem appends an IPv6 packet carrying an ICMPv6 parameter
// problem about invoking, from src to the invoking packet's source, with
// pointer the offset of the offending byte in invoking (6 for its next
// header field). The quote is cut and the hop limit set as for
// AppendDestUnreachable.
func AppendParamProblem(dst []byte, src netip.Addr, code uint8, pointer uint32, invoking IPv6) []byte {
	return appendError(dst, src, ICMPv6ParamProblem, code, pointer, invoking)
}

// appendError appends an ICMPv6 error message of type typ whose 32-bit
// field after the checksum (unused, MTU or pointer) holds param.
func appendError(dst []byte, src netip.Addr, typ, code uint8, param uint32, invoking IPv6) []byte {
	quote := []byte(invoking)
	if max := maxICMPv6ErrorSize - icmpv6ErrorHeader; len(quote) > max {
		quote = quote[:max]
	}
	start := len(dst)
	dst = AppendIPv6Header(dst, IPv6Fields{NextHeader: ProtoICMPv6, HopLimit: 255, Src: src, Dst: invoking.Src()})
	dst = append(dst, typ, code, 0, 0, byte(param>>24), byte(param>>16), byte(param>>8), byte(param))
	dst = append(dst, quote...)
	return finishICMPv6(dst, start)
}

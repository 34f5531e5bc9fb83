// SPDX-License-Identifier: MIT

package xdpio

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Frame layout: an untagged Ethernet II header, an IPv4 header (options
// allowed on receive, none on send) and a UDP header.
const (
	ethHeaderLen  = 14
	ipv4MinHeader = 20
	udpHeaderLen  = 8
	// headersLen is the size of the headers buildFrame writes.
	headersLen = ethHeaderLen + ipv4MinHeader + udpHeaderLen

	etherTypeIPv4 = 0x0800
	protoUDP      = 17

	// sendTTL is the TTL of datagrams we send: Linux's default
	// (net.ipv4.ip_default_ttl).
	sendTTL = 64
	// flagDF is the IPv4 don't-fragment flag, set on every frame we send,
	// as Linux does on a UDP socket in its default path-MTU mode: we never
	// fragment ourselves (a datagram too long for the link goes through
	// the kernel instead, see Conn.WriteBatch).
	flagDF = 0x4000
	// fragMask covers the more-fragments flag and the fragment offset.
	fragMask = 0x3fff
)

// RXDrop says why a received frame was not handed to the caller. Frames the
// XDP program steers to us were already filtered on ethertype, header length,
// fragmentation, protocol, port and address, so only damage shows here.
type RXDrop uint8

// Drop reasons, in the order the parser checks.
const (
	rxOK            RXDrop = iota
	DropShort              // shorter than Ethernet + IPv4 + UDP headers
	DropNotIPv4            // ethertype other than IPv4, or IP version not 4
	DropBadHeader          // IPv4 header length or total length inconsistent with the frame
	DropIPChecksum         // IPv4 header checksum wrong
	DropFragment           // a fragment (the kernel reassembles those)
	DropNotUDP             // protocol other than UDP
	DropUDPLength          // UDP length shorter than its header or longer than the IPv4 payload
	DropUDPChecksum        // UDP checksum present and wrong
	DropNotOurs            // destination address or port not one we serve
	NumRXDrops
)

var rxDropNames = [NumRXDrops]string{
	rxOK:            "none",
	DropShort:       "short",
	DropNotIPv4:     "not_ipv4",
	DropBadHeader:   "bad_header",
	DropIPChecksum:  "ip_checksum",
	DropFragment:    "fragment",
	DropNotUDP:      "not_udp",
	DropUDPLength:   "udp_length",
	DropUDPChecksum: "udp_checksum",
	DropNotOurs:     "not_ours",
}

// String returns the stable snake_case name used in logs and counters.
func (r RXDrop) String() string {
	if r < NumRXDrops {
		return rxDropNames[r]
	}
	return "unknown"
}

// datagram is what parseFrame finds in a frame: the UDP payload (aliasing
// the frame) and both endpoints.
type datagram struct {
	payload  []byte
	src, dst netip.AddrPort
}

// parseFrame checks an Ethernet frame holding an IPv4 UDP datagram the way
// the kernel's receive path would (lengths, IPv4 header checksum, no
// fragment, UDP length, UDP checksum when not zero) and returns it. Bytes
// after the IPv4 total length (Ethernet padding) and after the UDP length
// are ignored, as Linux trims them. It never panics and never allocates.
//
// A UDP checksum that holds exactly the pseudo-header sum is accepted: that
// is what a local sender's kernel leaves in a datagram whose checksum it
// handed to offload (CHECKSUM_PARTIAL), and veth passes such datagrams to
// XDP unfinished, where the kernel's own path would have trusted them. On a
// physical link it is as likely as any other wrong value (1 in 65536).
func parseFrame(f []byte) (datagram, RXDrop) {
	if len(f) < ethHeaderLen+ipv4MinHeader+udpHeaderLen {
		return datagram{}, DropShort
	}
	if binary.BigEndian.Uint16(f[12:14]) != etherTypeIPv4 {
		return datagram{}, DropNotIPv4
	}
	ip := f[ethHeaderLen:]
	if ip[0]>>4 != 4 {
		return datagram{}, DropNotIPv4
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < ipv4MinHeader || total < ihl || total > len(ip) {
		return datagram{}, DropBadHeader
	}
	ip = ip[:total]
	if checksum(0, ip[:ihl]) != 0 {
		return datagram{}, DropIPChecksum
	}
	if binary.BigEndian.Uint16(ip[6:8])&fragMask != 0 {
		return datagram{}, DropFragment
	}
	if ip[9] != protoUDP {
		return datagram{}, DropNotUDP
	}
	udp := ip[ihl:]
	if len(udp) < udpHeaderLen {
		return datagram{}, DropUDPLength
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < udpHeaderLen || ulen > len(udp) {
		return datagram{}, DropUDPLength
	}
	udp = udp[:ulen]
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	if sum := binary.BigEndian.Uint16(udp[6:8]); sum != 0 {
		pseudo := pseudoSum(ip[12:20], ulen)
		if checksum(pseudo, udp) != 0 && sum != fold(pseudo) {
			return datagram{}, DropUDPChecksum
		}
	}
	return datagram{
		payload: udp[udpHeaderLen:],
		src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:2])),
		dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:4])),
	}, rxOK
}

// frameHeader is what stays the same in every frame one Conn sends to one
// next hop, apart from the addresses: kept per Conn so that buildFrame only
// fills in what changes.
type frameHeader struct {
	dstMAC, srcMAC [6]byte
	id             uint16 // IPv4 identification of the next frame
	udpChecksum    bool   // compute the UDP checksum (else send 0, RFC 768)
}

// buildFrame writes an Ethernet + IPv4 + UDP frame carrying payload from src
// to dst into out, which must hold headersLen+len(payload) bytes, and returns
// its length. The IPv4 header has no options, DF set and TTL 64; the
// identification field counts up per frame (RFC 6864 lets an atomic
// datagram carry any value). It never allocates.
func buildFrame(out []byte, h *frameHeader, src, dst netip.AddrPort, payload []byte) int {
	n := headersLen + len(payload)
	f := out[:n]
	copy(f[0:6], h.dstMAC[:])
	copy(f[6:12], h.srcMAC[:])
	binary.BigEndian.PutUint16(f[12:14], etherTypeIPv4)

	ip := f[ethHeaderLen : ethHeaderLen+ipv4MinHeader]
	ip[0] = 0x45 // version 4, 5 words of header
	ip[1] = 0    // DSCP and ECN
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipv4MinHeader+udpHeaderLen+len(payload)))
	binary.BigEndian.PutUint16(ip[4:6], h.id)
	h.id++
	binary.BigEndian.PutUint16(ip[6:8], flagDF)
	ip[8] = sendTTL
	ip[9] = protoUDP
	ip[10], ip[11] = 0, 0
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(0, ip))

	udp := f[ethHeaderLen+ipv4MinHeader:]
	ulen := udpHeaderLen + len(payload)
	binary.BigEndian.PutUint16(udp[0:2], src.Port())
	binary.BigEndian.PutUint16(udp[2:4], dst.Port())
	binary.BigEndian.PutUint16(udp[4:6], uint16(ulen))
	udp[6], udp[7] = 0, 0
	copy(udp[udpHeaderLen:], payload)
	if h.udpChecksum {
		sum := checksum(pseudoSum(ip[12:20], ulen), udp)
		if sum == 0 {
			sum = 0xffff // 0 means "no checksum" (RFC 768)
		}
		binary.BigEndian.PutUint16(udp[6:8], sum)
	}
	return n
}

// pseudoSum is the unfolded ones'-complement sum of the IPv4 pseudo-header
// (RFC 768): both addresses (addrs holds source then destination, 8 bytes),
// the protocol and the UDP length.
func pseudoSum(addrs []byte, udpLen int) uint64 {
	return uint64(binary.BigEndian.Uint32(addrs[0:4])) + uint64(binary.BigEndian.Uint32(addrs[4:8])) +
		protoUDP + uint64(udpLen)
}

// checksum returns the Internet checksum (RFC 1071) of b with initial added
// in: the complement of the folded ones'-complement sum of b's big-endian
// 16-bit words. It adds 8 bytes at a time with carries, which a
// ones'-complement sum allows since the result is folded at the end; over a
// correct header or datagram (checksum field included) it returns 0.
func checksum(initial uint64, b []byte) uint16 {
	var sum, carry uint64
	sum = initial
	for len(b) >= 8 {
		sum, carry = bits.Add64(sum, binary.BigEndian.Uint64(b), carry)
		b = b[8:]
	}
	// The last 0 to 7 bytes, zero-padded to a big-endian word.
	var last [8]byte
	copy(last[:], b)
	tail := binary.BigEndian.Uint64(last[:])
	sum, carry = bits.Add64(sum, tail, carry)
	sum, carry = bits.Add64(sum, 0, carry)
	sum += carry // carry is 1 only if sum wrapped to 0: no overflow
	return ^fold(sum)
}

// fold folds a 64-bit ones'-complement sum to 16 bits.
func fold(sum uint64) uint16 {
	s := sum>>32 + sum&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

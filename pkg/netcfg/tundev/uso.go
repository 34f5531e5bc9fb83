// SPDX-License-Identifier: MIT

package tundev

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Writing UDP with segmentation offload (USO, Linux 6.2): adjacent
// IPv6/UDP datagrams of one flow in a Write batch go to the kernel as one
// super-datagram behind a virtio-net header of type
// VIRTIO_NET_HDR_GSO_UDP_L4, in one writev(2), the way tcpRun merges TCP.
// The kernel keeps it whole as far as it can and cuts it back into the
// original datagrams (__udp_gso_segment) before a socket or a NIC without
// USO sees them, so every datagram arrives as it was sent. Only runs of
// adjacent packets merge, so order and Write's count stay exact.
//
// What the kernel can give back unchanged decides the rules: same
// addresses, ports, traffic class, flow label and hop limit (the first
// datagram's headers stand for all); every payload of the same length but
// the last, which may be shorter (gso_size is one length for all); no
// extension headers (csum_start is right after the fixed header); a valid
// checksum on each, because the kernel computes new ones and would hide a
// corrupt datagram.

// udpRun measures the UDP run that starts at bufs[0][offset:]: how many
// packets from the front merge into one super-datagram, the first one's
// payload length (the segment size) and all their payload bytes. A run of
// 1 means the first packet goes alone. Every bufs[i] must be at least
// offset bytes long.
func udpRun(bufs [][]byte, offset int) (n, segPay, payTotal int) {
	count := len(bufs)
	if count < 2 {
		return count, 0, 0
	}
	p0 := bufs[0][offset:]
	segPay, ok := parseUDPDatagram(p0)
	if !ok {
		return 1, 0, 0
	}
	last := segPay
	payTotal = segPay
	n = 1
	checked := false
	for n < count && n < maxRunSegments && last == segPay {
		p := bufs[n][offset:]
		pay, ok := parseUDPDatagram(p)
		if !ok || pay > segPay || udpHdrLen+payTotal+pay > maxIPv6Pay || !sameUDPFlow(p0, p) {
			break
		}
		if !checked {
			if !validUDP6Checksum(p0) {
				return 1, 0, 0
			}
			checked = true
		}
		if !validUDP6Checksum(p) {
			break
		}
		payTotal += pay
		last = pay
		n++
	}
	if n == 1 {
		return 1, 0, 0
	}
	return n, segPay, payTotal
}

// parseUDPDatagram accepts the packets a UDP run can hold and returns the UDP
// payload length: IPv6 with UDP straight after the fixed header, IPv6 and
// UDP lengths that match the buffer, a non-empty payload and a checksum
// field that is not 0 (which IPv6 forbids, RFC 8200 §8.1). It does not
// verify the checksum.
func parseUDPDatagram(pkt []byte) (int, bool) {
	if len(pkt) <= ipv6HdrLen+udpHdrLen || pkt[0]>>4 != 6 || pkt[ipv6NextAt] != unix.IPPROTO_UDP ||
		int(binary.BigEndian.Uint16(pkt[ipv6PayLenAt:]))+ipv6HdrLen != len(pkt) {
		return 0, false
	}
	udp := pkt[ipv6HdrLen:]
	if int(binary.BigEndian.Uint16(udp[udpLenAt:])) != len(udp) || binary.BigEndian.Uint16(udp[udpCsumAt:]) == 0 {
		return 0, false
	}
	return len(udp) - udpHdrLen, true
}

// validUDP6Checksum verifies the UDP checksum of a packet parseUDPDatagram
// accepted.
func validUDP6Checksum(pkt []byte) bool {
	return fold(sumBytes(pseudoSum6(pkt, unix.IPPROTO_UDP, len(pkt)-ipv6HdrLen), pkt[ipv6HdrLen:])) == 0xffff
}

// sameUDPFlow reports that b's headers equal a's in everything the
// super-datagram keeps from its first datagram: version, traffic class,
// flow label, hop limit, addresses and ports. Both passed parseUDPDatagram.
func sameUDPFlow(a, b []byte) bool {
	return bytes.Equal(a[0:4], b[0:4]) && a[7] == b[7] &&
		bytes.Equal(a[8:ipv6HdrLen+udpLenAt], b[8:ipv6HdrLen+udpLenAt])
}

// udpRunHeader writes into dst (at least 48 bytes) the headers of the
// super-datagram a run starting with packet p0 makes: p0's headers with
// the whole length in the IPv6 and UDP length fields, and in the checksum
// field the pseudo-header sum of that length, as a partial checksum
// carries it (the kernel swaps the length for each datagram's own and
// adds the rest). It returns dst's used part and the virtio-net header to
// send in front.
func udpRunHeader(dst, p0 []byte, segPay, payTotal int) ([]byte, vnetHdr) {
	h := dst[:ipv6HdrLen+udpHdrLen]
	copy(h, p0[:ipv6HdrLen+udpHdrLen])
	udpLen := udpHdrLen + payTotal
	binary.BigEndian.PutUint16(h[ipv6PayLenAt:], uint16(udpLen))
	binary.BigEndian.PutUint16(h[ipv6HdrLen+udpLenAt:], uint16(udpLen))
	binary.BigEndian.PutUint16(h[ipv6HdrLen+udpCsumAt:], fold(pseudoSum6(h, unix.IPPROTO_UDP, udpLen)))
	return h, vnetHdr{
		flags:      unix.VIRTIO_NET_HDR_F_NEEDS_CSUM,
		gsoType:    unix.VIRTIO_NET_HDR_GSO_UDP_L4,
		hdrLen:     ipv6HdrLen + udpHdrLen,
		gsoSize:    uint16(segPay),
		csumStart:  ipv6HdrLen,
		csumOffset: udpCsumAt,
	}
}

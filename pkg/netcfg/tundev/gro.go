// SPDX-License-Identifier: MIT

package tundev

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Writing with offloads on: consecutive in-order TCP segments of one flow
// in a Write batch go to the kernel as one super-segment with a virtio-net
// header, in one write(2), as a NIC doing GRO would hand them up. The
// kernel then treats them as one packet all the way to the receiving
// socket, or cuts them again if it forwards them. Only runs of adjacent
// packets merge, so the packets of a batch reach the kernel in their
// order and Write's count stays exact.
//
// The rules follow Linux's tcp_gro_receive: same addresses, ports, traffic
// class, flow label, hop limit, ACK number, window and options; sequence
// numbers that continue exactly; every segment but the last of the full
// segment size; nothing after a PSH; no SYN, FIN, RST, URG or CWR. Each
// segment's checksum is verified before it merges, because the kernel
// trusts the one we compute for the whole.

// maxRunSegments bounds a run (and so the iovec a Write builds).
const maxRunSegments = 64

// tcpSeg is what coalescing needs to know about one IPv6/TCP packet.
type tcpSeg struct {
	hdrLen int // IPv6 header + TCP header with options
	payLen int
	seq    uint32
	flags  uint8
}

// parseTCP6 accepts the packets a run can hold: IPv6 with TCP straight
// after the fixed header (no extension headers), a payload length that
// matches the buffer, a non-empty payload and an ACK without SYN, FIN,
// RST, URG or CWR. It does not look at the checksum.
func parseTCP6(pkt []byte) (tcpSeg, bool) {
	if len(pkt) < ipv6HdrLen+tcpMinHdrLen || pkt[0]>>4 != 6 || pkt[ipv6NextAt] != unix.IPPROTO_TCP ||
		int(binary.BigEndian.Uint16(pkt[ipv6PayLenAt:]))+ipv6HdrLen != len(pkt) {
		return tcpSeg{}, false
	}
	tcp := pkt[ipv6HdrLen:]
	hdrLen := ipv6HdrLen + int(tcp[tcpOffAt]>>4)*4
	flags := tcp[tcpFlagsAt]
	if hdrLen < ipv6HdrLen+tcpMinHdrLen || hdrLen >= len(pkt) ||
		flags&tcpACK == 0 || flags&(tcpSYN|tcpFIN|tcpRST|tcpURG|tcpCWR) != 0 {
		return tcpSeg{}, false
	}
	return tcpSeg{hdrLen: hdrLen, payLen: len(pkt) - hdrLen, seq: binary.BigEndian.Uint32(tcp[tcpSeqAt:]), flags: flags}, true
}

// validTCP6Checksum verifies the TCP checksum of a packet parseTCP6
// accepted.
func validTCP6Checksum(pkt []byte) bool {
	return fold(sumBytes(pseudoSum6(pkt, unix.IPPROTO_TCP, len(pkt)-ipv6HdrLen), pkt[ipv6HdrLen:])) == 0xffff
}

// sameFlowHeaders reports that b's headers equal a's in everything a
// merged packet keeps from its first segment: version, traffic class and
// flow label, hop limit, addresses, ports, ACK number, flags other than
// PSH, window, urgent pointer and options. Both passed parseTCP6.
func sameFlowHeaders(a []byte, sa tcpSeg, b []byte, sb tcpSeg) bool {
	return sa.hdrLen == sb.hdrLen &&
		(sa.flags^sb.flags)&^tcpPSH == 0 &&
		bytes.Equal(a[0:4], b[0:4]) && // version, traffic class, flow label
		a[7] == b[7] && // hop limit
		bytes.Equal(a[8:ipv6HdrLen+tcpSeqAt], b[8:ipv6HdrLen+tcpSeqAt]) && // addresses, ports
		bytes.Equal(a[ipv6HdrLen+tcpAckAt:ipv6HdrLen+tcpFlagsAt], b[ipv6HdrLen+tcpAckAt:ipv6HdrLen+tcpFlagsAt]) && // ACK, data offset
		bytes.Equal(a[ipv6HdrLen+tcpWindowAt:ipv6HdrLen+tcpCsumAt], b[ipv6HdrLen+tcpWindowAt:ipv6HdrLen+tcpCsumAt]) && // window
		bytes.Equal(a[ipv6HdrLen+tcpCsumAt+2:sa.hdrLen], b[ipv6HdrLen+tcpCsumAt+2:sb.hdrLen]) // urgent pointer, options
}

// tcpRun measures the run that starts at bufs[0][offset:]: how many
// packets from the front merge into one super-segment, and their payload
// bytes. A run of 1 means the first packet goes alone, unchanged. Every
// bufs[i] must be at least offset bytes long.
func tcpRun(bufs [][]byte, offset int) (n int, first tcpSeg, payTotal int) {
	count := len(bufs)
	if count < 2 {
		return count, tcpSeg{}, 0
	}
	p0 := bufs[0][offset:]
	first, ok := parseTCP6(p0)
	if !ok || first.flags&tcpPSH != 0 {
		return 1, first, 0
	}
	last := first
	payTotal = first.payLen
	n = 1
	checked := false
	for n < count && n < maxRunSegments {
		if last.payLen != first.payLen || last.flags&tcpPSH != 0 {
			break // a short segment or a push ends a run
		}
		p := bufs[n][offset:]
		s, ok := parseTCP6(p)
		if !ok || s.payLen > first.payLen || s.seq != last.seq+uint32(last.payLen) ||
			first.hdrLen-ipv6HdrLen+payTotal+s.payLen > maxIPv6Pay ||
			!sameFlowHeaders(p0, first, p, s) {
			break
		}
		if !checked {
			if !validTCP6Checksum(p0) {
				return 1, first, 0
			}
			checked = true
		}
		if !validTCP6Checksum(p) {
			break
		}
		payTotal += s.payLen
		last = s
		n++
	}
	if n == 1 {
		payTotal = 0
	}
	return n, first, payTotal
}

// runHeader writes into dst (at least first.hdrLen bytes) the headers of
// the super-segment that a run starting with packet p0 makes: p0's
// headers with the whole payload length, PSH if the last segment had it,
// and in the checksum field the pseudo-header sum that a partial checksum
// carries (the kernel adds the rest). It returns dst's used part and the
// virtio-net header to send in front.
func runHeader(dst, p0 []byte, first tcpSeg, payTotal int, psh bool) ([]byte, vnetHdr) {
	h := dst[:first.hdrLen]
	copy(h, p0[:first.hdrLen])
	tcpLen := first.hdrLen - ipv6HdrLen + payTotal
	binary.BigEndian.PutUint16(h[ipv6PayLenAt:], uint16(tcpLen))
	if psh {
		h[ipv6HdrLen+tcpFlagsAt] |= tcpPSH
	}
	binary.BigEndian.PutUint16(h[ipv6HdrLen+tcpCsumAt:], fold(pseudoSum6(h, unix.IPPROTO_TCP, tcpLen)))
	return h, vnetHdr{
		flags:      unix.VIRTIO_NET_HDR_F_NEEDS_CSUM,
		gsoType:    unix.VIRTIO_NET_HDR_GSO_TCPV6,
		hdrLen:     uint16(first.hdrLen),
		gsoSize:    uint16(first.payLen),
		csumStart:  ipv6HdrLen,
		csumOffset: tcpCsumAt,
	}
}

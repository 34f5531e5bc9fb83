// SPDX-License-Identifier: MIT

package tundev

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Reading with offloads on: the kernel hands the TUN reader packets whose
// checksum it left unfinished and TCP (or UDP) "super-segments" of up to
// 64 KiB that it did not cut to the MTU (TSO/USO), each described by a
// virtio-net header. The tunnel must carry MTU-sized IPv6 packets with
// valid checksums, so this file finishes the checksums and does the
// segmentation the kernel skipped, the way a NIC would (and as Linux's own
// tcp_gso_segment does).

// IPv6 and TCP header fields used here (RFC 8200 §3, RFC 9293 §3.1).
const (
	ipv6HdrLen   = 40
	ipv6PayLenAt = 4  // payload length
	ipv6NextAt   = 6  // next header
	tcpSeqAt     = 4  // sequence number, from the TCP header
	tcpAckAt     = 8  // acknowledgment number
	tcpOffAt     = 12 // data offset (high nibble)
	tcpFlagsAt   = 13
	tcpWindowAt  = 14
	tcpCsumAt    = 16
	tcpMinHdrLen = 20
	udpHdrLen    = 8
	udpLenAt     = 4
	udpCsumAt    = 6
	maxIPv6Pay   = 65535 // without a jumbogram, which we never enable
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80
)

var (
	errBadCsumOffsets = errors.New("partial checksum outside the packet")
	errBadGSO         = errors.New("malformed super-segment")
	errGSONotIPv6     = errors.New("super-segment is not IPv6")
	errSegmentTooBig  = errors.New("segment larger than the read buffer")
)

// completeChecksum finishes a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM):
// the field at csumStart+csumOffset already holds the pseudo-header sum, so
// the checksum of everything from csumStart on, that field included, is
// the final value. It works for any protocol and either IP version, so
// IPv4 packets pass through with nothing but their checksum finished.
// Like the kernel (skb_checksum_help) it never stores 0, which UDP
// reserves for "no checksum"; 0xffff is the same value to TCP.
func completeChecksum(pkt []byte, h vnetHdr) error {
	start, at := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
	if at+2 > len(pkt) {
		return fmt.Errorf("netcfg: checksum at %d+%d in %d bytes: %w", h.csumStart, h.csumOffset, len(pkt), errBadCsumOffsets)
	}
	cs := checksum(0, pkt[start:])
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[at:], cs)
	return nil
}

// segmenter cuts one super-segment (TCP or UDP in IPv6) into packets of at
// most mss payload bytes, one per call to next, so that a Read whose
// buffers run out can stop and go on at the next Read.
type segmenter struct {
	pkt    []byte // the super-segment without its virtio header
	l4     int    // offset of the TCP or UDP header
	hdrLen int    // l4 plus the L4 header: copied in front of every piece
	mss    int    // payload bytes per packet
	tcp    bool
	flags  uint8  // the super-segment's TCP flags
	pos    int    // offset in pkt of the next payload byte
	seq    uint32 // TCP sequence number of the byte at pos
	left   int    // packets still to produce
}

// newSegmenter checks that pkt is a super-segment it can cut up as h
// describes: IPv6, TCP (VIRTIO_NET_HDR_GSO_TCPV6) or UDP
// (VIRTIO_NET_HDR_GSO_UDP_L4), headers inside the packet, and pieces whose
// IPv6 payload length fits in 16 bits. The L4 header is where the partial
// checksum starts, so extension headers in between are carried along.
func newSegmenter(h vnetHdr, pkt []byte) (segmenter, error) {
	var s segmenter
	if len(pkt) < ipv6HdrLen || pkt[0]>>4 != 6 {
		return s, errGSONotIPv6
	}
	var proto uint8
	switch h.gso() {
	case unix.VIRTIO_NET_HDR_GSO_TCPV6:
		s.tcp, proto = true, unix.IPPROTO_TCP
	case unix.VIRTIO_NET_HDR_GSO_UDP_L4:
		proto = unix.IPPROTO_UDP
	default:
		return s, fmt.Errorf("netcfg: GSO type %#x: %w", h.gsoType, errBadGSO)
	}
	s.l4 = ipv6HdrLen
	if h.needsCsum() {
		s.l4 = int(h.csumStart)
	} else if pkt[ipv6NextAt] != proto {
		return s, fmt.Errorf("netcfg: GSO without checksum offsets and next header %d: %w", pkt[ipv6NextAt], errBadGSO)
	}
	if s.l4 < ipv6HdrLen {
		return s, fmt.Errorf("netcfg: L4 header at %d: %w", s.l4, errBadGSO)
	}
	s.hdrLen = s.l4 + udpHdrLen
	if s.tcp {
		if s.l4+tcpMinHdrLen > len(pkt) {
			return s, fmt.Errorf("netcfg: TCP header at %d in %d bytes: %w", s.l4, len(pkt), errBadGSO)
		}
		s.hdrLen = s.l4 + int(pkt[s.l4+tcpOffAt]>>4)*4
		if s.hdrLen < s.l4+tcpMinHdrLen {
			return s, fmt.Errorf("netcfg: TCP data offset %d: %w", s.hdrLen-s.l4, errBadGSO)
		}
		s.flags = pkt[s.l4+tcpFlagsAt]
		s.seq = binary.BigEndian.Uint32(pkt[s.l4+tcpSeqAt:])
	}
	if s.hdrLen > len(pkt) {
		return s, fmt.Errorf("netcfg: headers end at %d in %d bytes: %w", s.hdrLen, len(pkt), errBadGSO)
	}
	s.mss = int(h.gsoSize)
	if s.mss == 0 {
		return s, fmt.Errorf("netcfg: segment size 0: %w", errBadGSO)
	}
	payload := len(pkt) - s.hdrLen
	if s.hdrLen-ipv6HdrLen+min(s.mss, payload) > maxIPv6Pay {
		return s, fmt.Errorf("netcfg: segments of %d bytes after %d of headers: %w", s.mss, s.hdrLen, errBadGSO)
	}
	s.pkt, s.pos = pkt, s.hdrLen
	s.left = max(1, (payload+s.mss-1)/s.mss) // a bare header still makes one packet
	return s, nil
}

// done reports that every piece has been produced.
func (s *segmenter) done() bool { return s.left == 0 }

// next writes the next packet into dst and returns its length. TCP pieces
// get their sequence number; FIN and PSH stay on the last piece only and
// CWR on the first only, as the kernel's own segmentation does. Every
// piece gets its IPv6 payload length and a full L4 checksum.
func (s *segmenter) next(dst []byte) (int, error) {
	chunk := min(s.mss, len(s.pkt)-s.pos)
	n := s.hdrLen + chunk
	if n > len(dst) {
		return 0, fmt.Errorf("netcfg: %d-byte segment, %d-byte buffer: %w", n, len(dst), errSegmentTooBig)
	}
	copy(dst, s.pkt[:s.hdrLen])
	copy(dst[s.hdrLen:n], s.pkt[s.pos:s.pos+chunk])
	binary.BigEndian.PutUint16(dst[ipv6PayLenAt:], uint16(n-ipv6HdrLen))
	l4 := dst[s.l4:n]
	if s.tcp {
		binary.BigEndian.PutUint32(l4[tcpSeqAt:], s.seq)
		f := s.flags
		if s.left > 1 {
			f &^= tcpFIN | tcpPSH
		}
		if s.pos != s.hdrLen {
			f &^= tcpCWR
		}
		l4[tcpFlagsAt] = f
		l4[tcpCsumAt], l4[tcpCsumAt+1] = 0, 0
		binary.BigEndian.PutUint16(l4[tcpCsumAt:], checksum(pseudoSum6(dst, unix.IPPROTO_TCP, len(l4)), l4))
	} else {
		binary.BigEndian.PutUint16(l4[udpLenAt:], uint16(len(l4)))
		l4[udpCsumAt], l4[udpCsumAt+1] = 0, 0
		cs := checksum(pseudoSum6(dst, unix.IPPROTO_UDP, len(l4)), l4)
		if cs == 0 {
			cs = 0xffff
		}
		binary.BigEndian.PutUint16(l4[udpCsumAt:], cs)
	}
	s.pos += chunk
	s.seq += uint32(chunk)
	s.left--
	return n, nil
}

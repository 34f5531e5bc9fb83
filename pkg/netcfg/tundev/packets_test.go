// SPDX-License-Identifier: MIT

package tundev

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Test packets, built and checked with a deliberately naive checksum (a
// 16-bit word loop) so that the unrolled one in checksum.go is checked
// against something independent.

var (
	srcAddr = netip.MustParseAddr("2001:db8::1")
	dstAddr = netip.MustParseAddr("2001:0:c000:201:8000:f227:3fff:fdfe")
)

// refSum is the one's-complement sum of b as 16-bit big-endian words,
// folded, not inverted.
func refSum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum
}

// refL4Sum is the folded sum of an IPv6 packet's pseudo-header and its
// L4 part from l4 on; a packet whose checksum is right gives 0xffff.
func refL4Sum(pkt []byte, l4 int, proto uint8) uint32 {
	s := refSum(0, pkt[8:40])
	n := len(pkt) - l4
	s = refSum(s, []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, proto})
	return refSum(s, pkt[l4:])
}

// tcpSpec describes an IPv6/TCP test packet.
type tcpSpec struct {
	src, dst       netip.Addr
	sport, dport   uint16
	seq, ack       uint32
	flags          uint8
	window         uint16
	options        []byte // a multiple of 4 bytes
	payload        []byte
	tclass, hop    uint8
	extHdr         []byte // an IPv6 destination-options header to put before TCP
	badChecksum    bool
	partialCsumFor bool // leave the pseudo-header sum, as the kernel does with NEEDS_CSUM
}

func (s tcpSpec) build() []byte {
	if !s.src.IsValid() {
		s.src = srcAddr
	}
	if !s.dst.IsValid() {
		s.dst = dstAddr
	}
	if s.hop == 0 {
		s.hop = 64
	}
	if s.window == 0 {
		s.window = 512
	}
	l4 := 40 + len(s.extHdr)
	tcpLen := 20 + len(s.options) + len(s.payload)
	b := make([]byte, l4+tcpLen)
	b[0] = 6<<4 | s.tclass>>4
	b[1] = s.tclass<<4 | 0x1
	b[2], b[3] = 0x23, 0x45 // flow label
	binary.BigEndian.PutUint16(b[4:], uint16(len(s.extHdr)+tcpLen))
	b[6] = unix.IPPROTO_TCP
	if len(s.extHdr) > 0 {
		b[6] = 60 // destination options
		copy(b[40:], s.extHdr)
		b[40] = unix.IPPROTO_TCP
	}
	b[7] = s.hop
	src, dst := s.src.As16(), s.dst.As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	t := b[l4:]
	binary.BigEndian.PutUint16(t[0:], s.sport)
	binary.BigEndian.PutUint16(t[2:], s.dport)
	binary.BigEndian.PutUint32(t[4:], s.seq)
	binary.BigEndian.PutUint32(t[8:], s.ack)
	t[12] = byte((20+len(s.options))/4) << 4
	t[13] = s.flags
	binary.BigEndian.PutUint16(t[14:], s.window)
	copy(t[20:], s.options)
	copy(t[20+len(s.options):], s.payload)
	if s.partialCsumFor {
		// What NEEDS_CSUM means: the field holds the pseudo-header sum.
		n := len(t)
		ps := refSum(refSum(0, b[8:40]), []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, unix.IPPROTO_TCP})
		binary.BigEndian.PutUint16(t[16:], uint16(ps))
		return b
	}
	cs := ^uint16(refL4Sum(b, l4, unix.IPPROTO_TCP))
	if s.badChecksum {
		cs ^= 0x0100
	}
	binary.BigEndian.PutUint16(t[16:], cs)
	return b
}

// udp6 builds an IPv6/UDP packet; with partial, the checksum field holds
// the pseudo-header sum only.
func udp6(payload []byte, partial bool) []byte {
	b := make([]byte, 48+len(payload))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b[6] = unix.IPPROTO_UDP
	b[7] = 64
	src, dst := srcAddr.As16(), dstAddr.As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	binary.BigEndian.PutUint16(b[40:], 3544)
	binary.BigEndian.PutUint16(b[42:], 40000)
	binary.BigEndian.PutUint16(b[44:], uint16(8+len(payload)))
	copy(b[48:], payload)
	n := 8 + len(payload)
	if partial {
		ps := refSum(refSum(0, b[8:40]), []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, unix.IPPROTO_UDP})
		binary.BigEndian.PutUint16(b[46:], uint16(ps))
		return b
	}
	cs := ^uint16(refL4Sum(b, 40, unix.IPPROTO_UDP))
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(b[46:], cs)
	return b
}

// pattern returns n bytes that differ from one offset to the next, so a
// misplaced byte shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed + byte(i>>8)
	}
	return b
}

// tsOption is a timestamp option padded with two NOPs, as Linux sends it.
func tsOption(val, echo uint32) []byte {
	o := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(o[4:], val)
	binary.BigEndian.PutUint32(o[8:], echo)
	return o
}

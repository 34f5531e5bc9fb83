// SPDX-License-Identifier: MIT

package tundev

import (
	"encoding/binary"
	"math/bits"
)

// The Internet checksum (RFC 1071) as the offload paths need it: splitting
// a super-segment computes a checksum per packet, and coalescing verifies
// one per packet, so this runs once per packet and is worth unrolling.

// sumBytes adds b to the one's-complement accumulator acc, 32 bytes per
// round, and returns the unfolded 64-bit sum. Big-endian 16-bit words are
// what the checksum adds; summing 64-bit big-endian words with end-around
// carry gives the same result once folded (RFC 1071 §2(B)).
func sumBytes(acc uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		acc, c = bits.Add64(acc, uint64(b[0])<<8, c)
	}
	// The last carry goes back in. Add64 leaves acc at 0 whenever it
	// reports a carry, so this addition cannot overflow.
	acc, c = bits.Add64(acc, 0, c)
	return acc + c
}

// fold reduces a 64-bit accumulator to the 16-bit one's-complement sum
// (not inverted).
func fold(acc uint64) uint16 {
	s := acc>>32 + acc&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// pseudoSum6 is the IPv6 pseudo-header's contribution (RFC 8200 §8.1):
// source, destination, upper-layer length and next header. ip is an IPv6
// header (at least 40 bytes).
func pseudoSum6(ip []byte, proto uint8, l4len int) uint64 {
	acc := sumBytes(0, ip[8:40])
	acc, c := bits.Add64(acc, uint64(l4len)+uint64(proto), 0)
	return acc + c
}

// checksum returns the value to store in a checksum field: the inverted
// one's-complement sum of b plus the partial sum acc.
func checksum(acc uint64, b []byte) uint16 {
	return ^fold(sumBytes(acc, b))
}

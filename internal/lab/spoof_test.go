// SPDX-License-Identifier: MIT

package lab

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAppendIPv4UDP: the header checksum verifies, and the UDP checksum
// matches one computed independently over the pseudo-header.
func TestAppendIPv4UDP(t *testing.T) {
	from, to := netip.MustParseAddrPort("198.51.100.7:40000"), netip.MustParseAddrPort("192.0.2.30:3544")
	for _, n := range []int{0, 1, 40, 41} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		b := appendIPv4UDP(nil, from, to, p)
		if len(b) != 28+n || checksum(0, b[:20]) != 0 {
			t.Fatalf("%d-byte payload: length %d, header checksum residue %#x", n, len(b), checksum(0, b[:20]))
		}
		s, d := from.Addr().As4(), to.Addr().As4()
		pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_UDP, byte((8+n)>>8), byte(8+n))
		if c := checksum(0, append(pseudo, b[20:]...)); c != 0 {
			t.Errorf("%d-byte payload: UDP checksum residue %#x", n, c)
		}
	}
}

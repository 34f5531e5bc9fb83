// SPDX-License-Identifier: MIT

package proto

import "net/netip"

// IsGlobalUnicastIPv4 reports whether a is an IPv4 address a Teredo node may
// send to or accept as a mapping (RFC 4380 §5.2.4, §5.3.1, §5.4.1): not in
// 0/8, 10/8, 127/8, 169.254/16, 172.16/12, 192.168/16, 192.88.99/24 (6to4
// relay anycast), 224/4 (multicast and class E) or the limited broadcast
// address.
//
// The documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24) count as
// global, as they do in Miredo, so namespace labs can use them.
func IsGlobalUnicastIPv4(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	switch {
	case b[0] == 0, b[0] == 10, b[0] == 127:
		return false
	case b[0] == 169 && b[1] == 254:
		return false
	case b[0] == 172 && b[1]&0xF0 == 16:
		return false
	case b[0] == 192 && b[1] == 168:
		return false
	case b[0] == 192 && b[1] == 88 && b[2] == 99:
		return false
	case b[0] >= 224: // multicast 224/4, reserved 240/4 and 255.255.255.255
		return false
	}
	return true
}

// SPDX-License-Identifier: MIT

package lab

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// NATMode is a NAT behaviour in RFC 4787 terms. Every mode translates the LAN
// to the WAN address and, with one host per LAN, keeps the source port unless
// the mode randomises it; the modes differ in mapping and filtering.
type NATMode int

const (
	// PortRestricted is plain Linux SNAT: endpoint-independent mapping,
	// address-and-port-dependent filtering. It is the default.
	PortRestricted NATMode = iota
	// FullCone maps endpoint-independently and lets anyone reach a mapping.
	FullCone
	// AddressRestricted lets a remote address reach a mapping once the LAN
	// host has sent to that address, from any of its ports.
	AddressRestricted
	// Symmetric picks a new random external port per destination, and only
	// that destination may answer.
	Symmetric
)

var natModeNames = [...]string{
	PortRestricted:    "port-restricted",
	FullCone:          "full-cone",
	AddressRestricted: "address-restricted",
	Symmetric:         "symmetric",
}

func (m NATMode) String() string {
	if m < 0 || int(m) >= len(natModeNames) {
		return fmt.Sprintf("NATMode(%d)", int(m))
	}
	return natModeNames[m]
}

// ParseNATMode reads a mode name as String writes it; "cone" and
// "restricted" are accepted too.
func ParseNATMode(s string) (NATMode, error) {
	switch strings.ToLower(s) {
	case "cone", "fullcone":
		return FullCone, nil
	case "restricted", "addressrestricted":
		return AddressRestricted, nil
	case "portrestricted":
		return PortRestricted, nil
	}
	for m, name := range natModeNames {
		if strings.EqualFold(s, name) {
			return NATMode(m), nil
		}
	}
	return 0, fmt.Errorf("unknown NAT mode %q (want %s)", s, strings.Join(natModeNames[:], ", "))
}

// natTable is the nftables table the lab owns in a NAT box.
const natTable = "labnat"

// mappingTimeout is how long a cone mapping or a restricted-cone permission
// outlives the last outbound packet; it matches conntrack's assured UDP
// timeout so the emulation behaves the same in every mode.
const mappingTimeout = "120s"

// natRuleset returns an nft(8) script that atomically replaces the NAT box's
// table with one implementing mode, translating lan to wan.
//
// The cone modes keep, in a dynamic map filled by outbound UDP after source
// translation, which LAN endpoint owns each external port; any inbound packet
// to a mapped port is translated back to it (address-restricted only when the
// LAN endpoint has sent to that remote address). Port-restricted and
// symmetric rely on conntrack alone. Unsolicited UDP to the WAN is dropped
// silently, as home NATs do, rather than answered with port unreachable.
func natRuleset(mode NATMode, lan netip.Prefix, wan netip.Addr) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	lanNet := lan.Masked()
	// Declaring the table first makes the delete succeed on first use.
	line("table ip %s", natTable)
	line("delete table ip %s", natTable)
	line("table ip %s {", natTable)
	cone := mode == FullCone || mode == AddressRestricted
	if cone {
		line("\tmap cone {")
		line("\t\ttype inet_service : ipv4_addr . inet_service")
		line("\t\tflags dynamic,timeout")
		line("\t\ttimeout %s", mappingTimeout)
		line("\t}")
	}
	if mode == AddressRestricted {
		line("\tset peers {")
		line("\t\ttype inet_service . ipv4_addr")
		line("\t\tflags dynamic,timeout")
		line("\t\ttimeout %s", mappingTimeout)
		line("\t}")
	}
	line("\tchain postrouting {")
	line("\t\ttype nat hook postrouting priority srcnat; policy accept;")
	if mode == Symmetric {
		line("\t\toifname \"wan\" ip saddr %s snat to %s fully-random", lanNet, wan)
	} else {
		line("\t\toifname \"wan\" ip saddr %s snat to %s", lanNet, wan)
	}
	line("\t}")
	if cone {
		// After srcnat, so the packet carries its external port.
		line("\tchain mapping {")
		line("\t\ttype filter hook postrouting priority srcnat + 10; policy accept;")
		line("\t\toifname \"wan\" ip saddr %s udp sport != 0 update @cone { udp sport : ct original ip saddr . ct original proto-src }", wan)
		if mode == AddressRestricted {
			line("\t\toifname \"wan\" ip saddr %s udp sport != 0 update @peers { udp sport . ip daddr }", wan)
		}
		line("\t}")
		line("\tchain prerouting {")
		line("\t\ttype nat hook prerouting priority dstnat; policy accept;")
		if mode == AddressRestricted {
			line("\t\tiifname \"wan\" ip daddr %s udp dport . ip saddr @peers dnat ip to udp dport map @cone", wan)
		} else {
			line("\t\tiifname \"wan\" ip daddr %s udp dport != 0 dnat ip to udp dport map @cone", wan)
		}
		line("\t}")
	}
	line("\tchain input {")
	line("\t\ttype filter hook input priority filter; policy accept;")
	line("\t\tiifname \"wan\" meta l4proto udp ct state new drop")
	line("\t}")
	line("}")
	return b.String()
}

var snatRE = regexp.MustCompile(`snat (?:ip )?to ([0-9.]+)`)

// parseRuleset reads back the mode and WAN address from the output of
// "nft list table" for a table natRuleset wrote.
func parseRuleset(listing string) (NATMode, netip.Addr, error) {
	m := snatRE.FindStringSubmatch(listing)
	if m == nil {
		return 0, netip.Addr{}, fmt.Errorf("no snat rule in the NAT table")
	}
	wan, err := netip.ParseAddr(m[1])
	if err != nil {
		return 0, netip.Addr{}, fmt.Errorf("snat address: %w", err)
	}
	switch {
	case strings.Contains(listing, "fully-random"):
		return Symmetric, wan, nil
	case strings.Contains(listing, "set peers"):
		return AddressRestricted, wan, nil
	case strings.Contains(listing, "map cone"):
		return FullCone, wan, nil
	}
	return PortRestricted, wan, nil
}

// SPDX-License-Identifier: MIT

package lab

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// NATMode is a NAT behaviour in RFC 4787 terms (and RFC 6081 §2's for the
// kinds of symmetric NAT). Every mode translates the LAN to the WAN address
// and, with one host per LAN, keeps the source port unless the mode
// randomises or allocates it; the modes differ in mapping and filtering.
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
	// SymmetricPortPreserving is symmetric, but keeps the internal port as
	// the external one when no live mapping uses that port yet (RFC 6081
	// §2 "port-preserving", §3.3): a socket's first destination sees its
	// own port, later destinations random ones.
	SymmetricPortPreserving
	// SymmetricSequential is symmetric and hands out external ports one
	// after the other, one per new flow of any LAN host (RFC 6081 §2
	// "sequential port-symmetric", §3.4), from seqFirstPort on.
	SymmetricSequential
	// SymmetricUPnP is Symmetric with a UPnP Internet Gateway Device on the
	// LAN (see Gateway): a port mapping lets anyone reach the mapped port,
	// and the LAN endpoint's first flow leaves from it (so a Teredo server
	// reflects the reserved mapping back), while its flows to other
	// destinations still get random ports (RFC 6081 §3.2).
	SymmetricUPnP
)

var natModeNames = [...]string{
	PortRestricted:          "port-restricted",
	FullCone:                "full-cone",
	AddressRestricted:       "address-restricted",
	Symmetric:               "symmetric",
	SymmetricPortPreserving: "symmetric-port-preserving",
	SymmetricSequential:     "symmetric-sequential",
	SymmetricUPnP:           "symmetric-upnp",
}

func (m NATMode) String() string {
	if m < 0 || int(m) >= len(natModeNames) {
		return fmt.Sprintf("NATMode(%d)", int(m))
	}
	return natModeNames[m]
}

// NATModes lists every behaviour, in declaration order.
func NATModes() []NATMode {
	out := make([]NATMode, len(natModeNames))
	for i := range out {
		out[i] = NATMode(i)
	}
	return out
}

// EndpointDependent reports whether the mode maps each destination to its
// own external port: one of the symmetric kinds.
func (m NATMode) EndpointDependent() bool { return m >= Symmetric }

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

// Sequential port allocation: the external ports SymmetricSequential hands
// out, in turn, wrapping after seqPorts flows.
const (
	seqFirstPort = 20000
	seqPorts     = 1024
)

// natRuleset returns an nft(8) script that atomically replaces the NAT box's
// table with one implementing mode, translating lan to wan; maps are the
// UPnP port mappings a SymmetricUPnP box carries (ignored otherwise).
//
// The cone modes keep, in a dynamic map filled by outbound UDP after source
// translation, which LAN endpoint owns each external port; any inbound packet
// to a mapped port is translated back to it (address-restricted only when the
// LAN endpoint has sent to that remote address). Port-restricted and the
// symmetric kinds rely on conntrack for filtering. Unsolicited UDP to the WAN
// is dropped silently, as home NATs do, rather than answered with port
// unreachable.
//
// The symmetric kinds differ in how a new UDP flow's external port is
// chosen; NAT rules only see a flow's first packet:
//   - random: snat fully-random;
//   - port-preserving: the internal port, unless a live mapping already
//     uses it as its external port (set "taken", refreshed by every
//     outbound packet after translation), else random;
//   - sequential: a counter (numgen inc) through a typed map to ports
//     seqFirstPort and up: a bare numgen value written into the port is not
//     byte-swapped (lab-notes);
//   - UPnP: random, except that a mapped LAN endpoint with no live flow it
//     started (set "used") leaves from its mapped port; inbound packets to a
//     mapped port are translated to its LAN endpoint, whatever their source.
func natRuleset(mode NATMode, lan netip.Prefix, wan netip.Addr, maps []PortMapping) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	lanNet := lan.Masked()
	out := fmt.Sprintf("oifname \"wan\" ip saddr %s", lanNet)
	// Declaring the table first makes the delete succeed on first use.
	line("table ip %s", natTable)
	line("delete table ip %s", natTable)
	line("table ip %s {", natTable)
	cone := mode == FullCone || mode == AddressRestricted
	dynamicSet := func(name, typ string) {
		line("\tset %s {", name)
		line("\t\ttype %s", typ)
		line("\t\tflags dynamic,timeout")
		line("\t\ttimeout %s", mappingTimeout)
		line("\t}")
	}
	if cone {
		line("\tmap cone {")
		line("\t\ttype inet_service : ipv4_addr . inet_service")
		line("\t\tflags dynamic,timeout")
		line("\t\ttimeout %s", mappingTimeout)
		line("\t}")
	}
	if mode == AddressRestricted {
		dynamicSet("peers", "inet_service . ipv4_addr")
	}
	switch mode {
	case SymmetricPortPreserving:
		dynamicSet("taken", "inet_service")
	case SymmetricUPnP:
		dynamicSet("used", "ipv4_addr . inet_service")
		line("\tmap %s {", upnpInMap)
		line("\t\ttype inet_service : ipv4_addr . inet_service")
		if len(maps) > 0 {
			line("\t\telements = { %s }", joinElements(maps, func(m PortMapping) string { return upnpInElement(m) }))
		}
		line("\t}")
		line("\tmap %s {", upnpOutMap)
		line("\t\ttype ipv4_addr . inet_service : ipv4_addr . inet_service")
		if len(maps) > 0 {
			line("\t\telements = { %s }", joinElements(maps, func(m PortMapping) string { return upnpOutElement(m, wan) }))
		}
		line("\t}")
	}
	line("\tchain postrouting {")
	line("\t\ttype nat hook postrouting priority srcnat; policy accept;")
	switch mode {
	case Symmetric:
		line("\t\t%s snat to %s fully-random", out, wan)
	case SymmetricPortPreserving:
		line("\t\t%s udp sport @taken snat to %s fully-random", out, wan)
		line("\t\t%s snat to %s", out, wan)
	case SymmetricSequential:
		ports := make([]string, seqPorts)
		for i := range ports {
			ports[i] = fmt.Sprintf("%d : %d", i, seqFirstPort+i)
		}
		line("\t\t%s meta l4proto udp snat to %s : numgen inc mod %d map { %s }", out, wan, seqPorts, strings.Join(ports, ", "))
		line("\t\t%s snat to %s", out, wan)
	case SymmetricUPnP:
		// A lookup that misses ends the rule: unmapped endpoints fall
		// through to the random one.
		line("\t\t%s ip saddr . udp sport != @used snat ip to ip saddr . udp sport map @%s", out, upnpOutMap)
		line("\t\t%s snat to %s fully-random", out, wan)
	default:
		line("\t\t%s snat to %s", out, wan)
	}
	line("\t}")
	// After srcnat, so the packet carries its external port.
	switch {
	case cone:
		line("\tchain mapping {")
		line("\t\ttype filter hook postrouting priority srcnat + 10; policy accept;")
		line("\t\toifname \"wan\" ip saddr %s udp sport != 0 update @cone { udp sport : ct original ip saddr . ct original proto-src }", wan)
		if mode == AddressRestricted {
			line("\t\toifname \"wan\" ip saddr %s udp sport != 0 update @peers { udp sport . ip daddr }", wan)
		}
		line("\t}")
	case mode == SymmetricPortPreserving:
		line("\tchain mapping {")
		line("\t\ttype filter hook postrouting priority srcnat + 10; policy accept;")
		line("\t\toifname \"wan\" ip saddr %s udp sport != 0 update @taken { udp sport }", wan)
		line("\t}")
	case mode == SymmetricUPnP:
		line("\tchain mapping {")
		line("\t\ttype filter hook postrouting priority srcnat + 10; policy accept;")
		line("\t\toifname \"wan\" ct direction original meta l4proto udp update @used { ct original ip saddr . ct original proto-src }")
		line("\t}")
	}
	switch mode {
	case FullCone, AddressRestricted, SymmetricUPnP:
		line("\tchain prerouting {")
		line("\t\ttype nat hook prerouting priority dstnat; policy accept;")
		switch mode {
		case AddressRestricted:
			line("\t\tiifname \"wan\" ip daddr %s udp dport . ip saddr @peers dnat ip to udp dport map @cone", wan)
		case FullCone:
			line("\t\tiifname \"wan\" ip daddr %s udp dport != 0 dnat ip to udp dport map @cone", wan)
		case SymmetricUPnP:
			line("\t\tiifname \"wan\" ip daddr %s udp dport != 0 dnat ip to udp dport map @%s", wan, upnpInMap)
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

// The maps a SymmetricUPnP box keeps its port mappings in: external port to
// LAN endpoint (inbound), LAN endpoint to WAN endpoint (its first flow).
const (
	upnpInMap  = "upnp_in"
	upnpOutMap = "upnp_out"
)

func upnpInElement(m PortMapping) string {
	return fmt.Sprintf("%d : %s . %d", m.External, m.Internal.Addr(), m.Internal.Port())
}

func upnpOutElement(m PortMapping, wan netip.Addr) string {
	return fmt.Sprintf("%s . %d : %s . %d", m.Internal.Addr(), m.Internal.Port(), wan, m.External)
}

func joinElements(maps []PortMapping, f func(PortMapping) string) string {
	parts := make([]string, len(maps))
	for i, m := range maps {
		parts[i] = f(m)
	}
	return strings.Join(parts, ", ")
}

// mappingScript returns the nft(8) script that adds (or deletes) one UPnP
// port mapping in a SymmetricUPnP box's maps, in one transaction and without
// touching its flows.
func mappingScript(add bool, m PortMapping, wan netip.Addr) string {
	if !add {
		return fmt.Sprintf("delete element ip %s %s { %d }\ndelete element ip %s %s { %s . %d }\n",
			natTable, upnpInMap, m.External, natTable, upnpOutMap, m.Internal.Addr(), m.Internal.Port())
	}
	return fmt.Sprintf("add element ip %s %s { %s }\nadd element ip %s %s { %s }\n",
		natTable, upnpInMap, upnpInElement(m), natTable, upnpOutMap, upnpOutElement(m, wan))
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
	case strings.Contains(listing, "map "+upnpInMap):
		return SymmetricUPnP, wan, nil
	case strings.Contains(listing, "set taken"):
		return SymmetricPortPreserving, wan, nil
	case strings.Contains(listing, "numgen inc"):
		return SymmetricSequential, wan, nil
	case strings.Contains(listing, "fully-random"):
		return Symmetric, wan, nil
	case strings.Contains(listing, "set peers"):
		return AddressRestricted, wan, nil
	case strings.Contains(listing, "map cone"):
		return FullCone, wan, nil
	}
	return PortRestricted, wan, nil
}

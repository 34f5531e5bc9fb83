// SPDX-License-Identifier: MIT

package lab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Host names, as passed to Lab.Host.
const (
	Router  = "router"
	Server  = "server"  // 192.0.2.10 and 192.0.2.11, 2001:db8:1::10
	Relay   = "relay"   // 192.0.2.20, 2001:db8:1::2
	Pub     = "pub"     // 192.0.2.30, public IPv4, no NAT
	Inet1   = "inet1"   // 192.0.2.40
	Inet2   = "inet2"   // 192.0.2.50 and 192.0.2.51
	Native  = "native"  // 2001:db8:2::2, IPv6 only
	NAT1    = "nat1"    // WAN 198.51.100.2 (or .3 after Rebind), LAN 10.0.0.1/24
	Client1 = "client1" // 10.0.0.2 behind nat1
	Client3 = "client3" // 10.0.0.3 behind nat1 too: the shared NAT
	NAT2    = "nat2"    // WAN 203.0.113.2 (or .3 after Rebind), LAN 10.0.1.1/24
	Client2 = "client2" // 10.0.1.2 behind nat2
)

// hostSpec describes one namespace of the topology.
type hostSpec struct {
	name string
	// ifname is the host's uplink interface; the router-side end of a direct
	// link is named after the host.
	ifname string
	v4, v6 []netip.Prefix
	gw4    netip.Addr
	gw6    netip.Addr
	// bridged hosts hang off the router's "ix" bridge; the others have a
	// link of their own (native to the router, clients to their NAT box).
	bridged bool
	// upstream is the namespace holding the other end of the uplink.
	upstream string
	fwd4     bool
	fwd6     bool
	// sysctl holds settings beyond the common ones (the fleet router's
	// multipath hash).
	sysctl map[string]string
}

// natSpec is the fixed part of a NAT box: its LAN and WAN addressing.
type natSpec struct {
	name    string
	clients []string     // hosts on its LAN, bridged together
	lan     netip.Prefix // the NAT box's own LAN address with its prefix
	// wans are the WAN addresses Rebind cycles through; wans[0] is used first.
	wans []netip.Addr
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

var (
	ixGW4 = addr("192.0.2.1")
	ixGW6 = addr("2001:db8:1::1")
)

// lanIfname is a NAT box's LAN interface, a bridge.
const lanIfname = "lan"

// teredoPrefix is routed by the router to the relay.
var teredoPrefix = pfx("2001::/32")

// specsFor is the topology of a lab, with the fleet's hosts when fleet is
// set (see fleet.go).
func specsFor(fleet bool) []hostSpec {
	if fleet {
		return fleetSpecs()
	}
	return hostSpecs()
}

// hostSpecs is the topology in creation order: a host's upstream comes before
// it. It returns a fresh slice so callers cannot change the plan.
func hostSpecs() []hostSpec {
	return []hostSpec{
		{name: Router, fwd4: true, fwd6: true},
		{name: Server, ifname: "eth0", bridged: true, upstream: Router,
			v4: []netip.Prefix{pfx("192.0.2.10/24"), pfx("192.0.2.11/24")},
			v6: []netip.Prefix{pfx("2001:db8:1::10/64")}, gw4: ixGW4, gw6: ixGW6},
		{name: Relay, ifname: "eth0", bridged: true, upstream: Router, fwd6: true,
			v4: []netip.Prefix{pfx("192.0.2.20/24")},
			v6: []netip.Prefix{pfx("2001:db8:1::2/64")}, gw4: ixGW4, gw6: ixGW6},
		{name: Pub, ifname: "eth0", bridged: true, upstream: Router,
			v4: []netip.Prefix{pfx("192.0.2.30/24")}, gw4: ixGW4},
		{name: Inet1, ifname: "eth0", bridged: true, upstream: Router,
			v4: []netip.Prefix{pfx("192.0.2.40/24")}, gw4: ixGW4},
		{name: Inet2, ifname: "eth0", bridged: true, upstream: Router,
			v4: []netip.Prefix{pfx("192.0.2.50/24"), pfx("192.0.2.51/24")}, gw4: ixGW4},
		{name: Native, ifname: "eth0", upstream: Router,
			v6: []netip.Prefix{pfx("2001:db8:2::2/64")}, gw6: addr("2001:db8:2::1")},
		{name: NAT1, ifname: "wan", upstream: Router, fwd4: true,
			v4:  []netip.Prefix{pfx("198.51.100.2/24"), pfx("198.51.100.3/24")},
			gw4: addr("198.51.100.1")},
		{name: Client1, ifname: "eth0", upstream: NAT1,
			v4: []netip.Prefix{pfx("10.0.0.2/24")}, gw4: addr("10.0.0.1")},
		{name: Client3, ifname: "eth0", upstream: NAT1,
			v4: []netip.Prefix{pfx("10.0.0.3/24")}, gw4: addr("10.0.0.1")},
		{name: NAT2, ifname: "wan", upstream: Router, fwd4: true,
			v4:  []netip.Prefix{pfx("203.0.113.2/24"), pfx("203.0.113.3/24")},
			gw4: addr("203.0.113.1")},
		{name: Client2, ifname: "eth0", upstream: NAT2,
			v4: []netip.Prefix{pfx("10.0.1.2/24")}, gw4: addr("10.0.1.1")},
	}
}

func natSpecs() []natSpec {
	return []natSpec{
		{name: NAT1, clients: []string{Client1, Client3}, lan: pfx("10.0.0.1/24"),
			wans: []netip.Addr{addr("198.51.100.2"), addr("198.51.100.3")}},
		{name: NAT2, clients: []string{Client2}, lan: pfx("10.0.1.1/24"),
			wans: []netip.Addr{addr("203.0.113.2"), addr("203.0.113.3")}},
	}
}

// routerLinks are the router's point-to-point links, keyed by the host at the
// other end, with the router's address on them.
func routerLinks() map[string]netip.Prefix {
	return map[string]netip.Prefix{
		Native: pfx("2001:db8:2::1/64"),
		NAT1:   pfx("198.51.100.1/24"),
		NAT2:   pfx("203.0.113.1/24"),
	}
}

// ipScripts returns, per namespace and in order, the ip(8) batch scripts that
// wire the topology (with the fleet's hosts when fleet is set). ns maps a
// host name to its namespace name.
func ipScripts(ns func(string) string, fleet bool) []nsScript {
	specs := specsFor(fleet)
	nats := map[string]natSpec{}
	for _, n := range natSpecs() {
		nats[n.name] = n
	}
	links := routerLinks()
	var out []nsScript
	for _, h := range specs {
		var b strings.Builder
		line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
		line("link set lo up")
		if h.name == Router {
			line("link add ix type bridge")
			line("link set ix up")
			line("addr add %s/24 dev ix", ixGW4)
			line("addr add %s/64 dev ix nodad", ixGW6)
			for _, d := range specs {
				if d.upstream != Router {
					continue
				}
				line("link add %s type veth peer name %s netns %s", d.name, d.ifname, ns(d.name))
				if d.bridged {
					line("link set %s master ix", d.name)
				} else {
					line("addr add %s dev %s%s", links[d.name], d.name, nodad(links[d.name]))
				}
				line("link set %s up", d.name)
			}
			if !fleet {
				// A fleet's router learns the prefix from its relays by BGP.
				line("route add %s via %s dev ix", teredoPrefix, addr("2001:db8:1::2"))
			}
		}
		if n, ok := nats[h.name]; ok {
			// The LAN is a bridge, so its hosts reach each other directly
			// (not through the NAT, which does not hairpin); no multicast
			// snooping, so SSDP searches reach the gateway on the box.
			line("link add %s type bridge mcast_snooping 0", lanIfname)
			line("addr add %s dev %s", n.lan, lanIfname)
			line("link set %s up", lanIfname)
			for _, name := range n.clients {
				c := specByName(specs, name)
				line("link add %s type veth peer name %s netns %s", c.name, c.ifname, ns(c.name))
				line("link set %s master %s", c.name, lanIfname)
				line("link set %s up", c.name)
			}
		}
		for _, p := range append(append([]netip.Prefix{}, h.v4...), h.v6...) {
			line("addr add %s dev %s%s", p, h.ifname, nodad(p))
		}
		if h.ifname != "" {
			line("link set %s up", h.ifname)
		}
		if h.gw4.IsValid() {
			line("route add 0.0.0.0/0 via %s", h.gw4)
		}
		if h.gw6.IsValid() {
			line("route add ::/0 via %s", h.gw6)
		}
		out = append(out, nsScript{host: h.name, script: b.String()})
	}
	return out
}

// nsScript is an ip(8) batch script to run in one host's namespace.
type nsScript struct {
	host   string
	script string
}

func nodad(p netip.Prefix) string {
	if p.Addr().Is6() {
		return " nodad" // duplicate address detection would delay use by seconds
	}
	return ""
}

func specByName(specs []hostSpec, name string) hostSpec {
	for _, s := range specs {
		if s.name == name {
			return s
		}
	}
	panic("lab: no host " + name)
}

// sysctls returns the settings for one host's namespace, written before any
// interface exists so that new interfaces inherit the defaults.
func (h hostSpec) sysctls() map[string]string {
	s := map[string]string{
		// Addresses are usable at once: DAD would hold them tentative ~1 s.
		"net/ipv6/conf/all/accept_dad":     "0",
		"net/ipv6/conf/default/accept_dad": "0",
		// No host learns routes from stray router advertisements.
		"net/ipv6/conf/all/accept_ra":     "0",
		"net/ipv6/conf/default/accept_ra": "0",
	}
	if h.fwd4 {
		s["net/ipv4/ip_forward"] = "1"
	}
	if h.fwd6 {
		s["net/ipv6/conf/all/forwarding"] = "1"
	}
	for k, v := range h.sysctl {
		s[k] = v
	}
	return s
}

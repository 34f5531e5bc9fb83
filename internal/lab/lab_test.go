// SPDX-License-Identifier: MIT

package lab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseNATMode(t *testing.T) {
	cases := []struct {
		in   string
		want NATMode
		ok   bool
	}{
		{"full-cone", FullCone, true},
		{"cone", FullCone, true},
		{"Address-Restricted", AddressRestricted, true},
		{"restricted", AddressRestricted, true},
		{"port-restricted", PortRestricted, true},
		{"symmetric", Symmetric, true},
		{"symmetric-port-preserving", SymmetricPortPreserving, true},
		{"Symmetric-Sequential", SymmetricSequential, true},
		{"symmetric-upnp", SymmetricUPnP, true},
		{"open", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseNATMode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseNATMode(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, m := range NATModes() {
		if got, err := ParseNATMode(m.String()); err != nil || got != m {
			t.Errorf("round trip of %v: %v, %v", m, got, err)
		}
	}
}

// A UPnP box's ruleset carries its mappings, with the WAN address of the
// moment, so that a Rebind keeps them; mappingScript changes one at a time.
func TestUPnPMappingElements(t *testing.T) {
	lan, wan := netip.MustParsePrefix("10.0.0.1/24"), netip.MustParseAddr("198.51.100.3")
	maps := []PortMapping{{External: 40000, Internal: netip.MustParseAddrPort("10.0.0.2:40000")},
		{External: 3545, Internal: netip.MustParseAddrPort("10.0.0.3:5000")}}
	rs := natRuleset(SymmetricUPnP, lan, wan, maps)
	for _, s := range []string{
		"elements = { 40000 : 10.0.0.2 . 40000, 3545 : 10.0.0.3 . 5000 }",
		"elements = { 10.0.0.2 . 40000 : 198.51.100.3 . 40000, 10.0.0.3 . 5000 : 198.51.100.3 . 3545 }",
	} {
		if !strings.Contains(rs, s) {
			t.Errorf("ruleset lacks %q:\n%s", s, rs)
		}
	}
	if got, want := mappingScript(true, maps[0], wan), "add element ip labnat upnp_in { 40000 : 10.0.0.2 . 40000 }\n"+
		"add element ip labnat upnp_out { 10.0.0.2 . 40000 : 198.51.100.3 . 40000 }\n"; got != want {
		t.Errorf("add script:\n%s\nwant\n%s", got, want)
	}
	if got, want := mappingScript(false, maps[0], wan), "delete element ip labnat upnp_in { 40000 }\n"+
		"delete element ip labnat upnp_out { 10.0.0.2 . 40000 }\n"; got != want {
		t.Errorf("delete script:\n%s\nwant\n%s", got, want)
	}
}

func TestNATRuleset(t *testing.T) {
	lan, wan := netip.MustParsePrefix("10.0.0.1/24"), netip.MustParseAddr("198.51.100.2")
	cases := []struct {
		mode        NATMode
		has, hasNot []string
	}{
		{PortRestricted,
			[]string{"snat to 198.51.100.2\n", "ip saddr 10.0.0.0/24", "ct state new drop"},
			[]string{"map cone", "fully-random", "dnat"}},
		{FullCone,
			[]string{"map cone", "update @cone", "dnat ip to udp dport map @cone"},
			[]string{"@peers", "fully-random"}},
		{AddressRestricted,
			[]string{"map cone", "set peers", "update @peers", "udp dport . ip saddr @peers dnat"},
			[]string{"fully-random"}},
		{Symmetric,
			[]string{"snat to 198.51.100.2 fully-random"},
			[]string{"map cone", "dnat"}},
		{SymmetricPortPreserving,
			[]string{"set taken", "udp sport @taken snat to 198.51.100.2 fully-random", "ip saddr 10.0.0.0/24 snat to 198.51.100.2\n",
				"update @taken { udp sport }"},
			[]string{"map cone", "dnat"}},
		{SymmetricSequential,
			[]string{"meta l4proto udp snat to 198.51.100.2 : numgen inc mod 1024 map { 0 : 20000, 1 : 20001,", "1023 : 21023 }"},
			[]string{"map cone", "dnat", "fully-random"}},
		{SymmetricUPnP,
			[]string{"map upnp_in", "map upnp_out", "ip saddr . udp sport != @used snat ip to ip saddr . udp sport map @upnp_out",
				"snat to 198.51.100.2 fully-random", "update @used { ct original ip saddr . ct original proto-src }",
				"dnat ip to udp dport map @upnp_in"},
			[]string{"map cone", "elements"}},
	}
	for _, tc := range cases {
		t.Run(tc.mode.String(), func(t *testing.T) {
			rs := natRuleset(tc.mode, lan, wan, nil)
			if mode, w, err := parseRuleset(rs); err != nil || mode != tc.mode || w != wan {
				t.Errorf("parseRuleset = %v, %v, %v", mode, w, err)
			}
			if !strings.HasPrefix(rs, "table ip labnat\ndelete table ip labnat\n") {
				t.Errorf("ruleset does not replace the table atomically:\n%s", rs)
			}
			for _, s := range tc.has {
				if !strings.Contains(rs, s) {
					t.Errorf("ruleset lacks %q:\n%s", s, rs)
				}
			}
			for _, s := range tc.hasNot {
				if strings.Contains(rs, s) {
					t.Errorf("ruleset has %q:\n%s", s, rs)
				}
			}
		})
	}
}

// The traffic rule: documentation ranges on the "Internet", 10/8 only in a
// NATed LAN, 2001:db8::/32 for native IPv6.
func TestAddressPlanInDocumentationRanges(t *testing.T) {
	internet := []netip.Prefix{pfx("192.0.2.0/24"), pfx("198.51.100.0/24"), pfx("203.0.113.0/24"), pfx("2001:db8::/32")}
	lanHosts := map[string]bool{}
	for _, n := range natSpecs() {
		for _, c := range n.clients {
			lanHosts[c] = true
		}
		if !pfx("10.0.0.0/8").Contains(n.lan.Addr()) {
			t.Errorf("%s LAN %s outside 10/8", n.name, n.lan)
		}
		for _, w := range n.wans {
			if !inAny(internet, w) {
				t.Errorf("%s WAN %s outside documentation ranges", n.name, w)
			}
		}
	}
	for _, h := range fleetSpecs() {
		for _, p := range append(append([]netip.Prefix{}, h.v4...), h.v6...) {
			ok := inAny(internet, p.Addr()) || (lanHosts[h.name] && pfx("10.0.0.0/8").Contains(p.Addr()))
			if !ok {
				t.Errorf("%s address %s breaks the addressing rule", h.name, p)
			}
		}
	}
	for host, p := range routerLinks() {
		if !inAny(internet, p.Addr()) {
			t.Errorf("router link to %s: %s", host, p)
		}
	}
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func TestIPScripts(t *testing.T) {
	scripts := ipScripts(func(h string) string { return "x-" + h }, false)
	if len(scripts) != len(hostSpecs()) || scripts[0].host != Router {
		t.Fatalf("want one script per host, router first; got %d", len(scripts))
	}
	router := scripts[0].script
	for _, h := range hostSpecs() {
		if h.upstream == Router && !strings.Contains(router, "netns x-"+h.name+"\n") {
			t.Errorf("router script does not link %s:\n%s", h.name, router)
		}
	}
	if !strings.Contains(router, "route add 2001::/32 via 2001:db8:1::2 dev ix") {
		t.Errorf("router does not route the Teredo prefix to the relay:\n%s", router)
	}
	for _, sc := range scripts {
		for _, line := range strings.Split(sc.script, "\n") {
			if strings.Contains(line, "addr add 2001:") && !strings.HasSuffix(line, " nodad") {
				t.Errorf("%s: IPv6 address without nodad: %q", sc.host, line)
			}
		}
	}
}

// A fleet's router learns the Teredo prefix by BGP: no static route, and
// the fleet's hosts are wired to it.
func TestFleetIPScripts(t *testing.T) {
	scripts := ipScripts(func(h string) string { return "x-" + h }, true)
	if len(scripts) != len(fleetSpecs()) {
		t.Fatalf("want one script per host; got %d", len(scripts))
	}
	router := scripts[0].script
	if strings.Contains(router, "route add 2001::/32") {
		t.Errorf("fleet router has a static Teredo route:\n%s", router)
	}
	for _, h := range []string{Relay2, Server2, DNS} {
		if !strings.Contains(router, "netns x-"+h+"\n") {
			t.Errorf("router script does not link %s", h)
		}
	}
	if got := specByName(fleetSpecs(), Router).sysctls()["net/ipv6/fib_multipath_hash_policy"]; got != "3" {
		t.Errorf("fleet router hash policy %q", got)
	}
}

func TestPrefix(t *testing.T) {
	for _, p := range []string{"Lab", "a-b", "abcdefghijklm", "x y"} {
		if _, err := attach(Options{Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	p := testPrefix("TestX/sub")
	if !prefixRE.MatchString(p) || p != testPrefix("TestX/sub") || p == testPrefix("TestY") {
		t.Errorf("testPrefix gives %q: want a valid, stable, test-specific prefix", p)
	}
	l, err := attach(Options{Prefix: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Host(Client1).Netns; got != "demo-client1" {
		t.Errorf("client1 namespace %q", got)
	}
	if got := l.WAN(NAT2); got != addr("203.0.113.2") {
		t.Errorf("NAT2 WAN %s", got)
	}
}

func TestUDPTableHasPort(t *testing.T) {
	table := "  sl  local_address rem_address   st\n" +
		"  12: 0A0200C0:0DD8 00000000:0000 07\n" +
		"  13: 0B0200C0:1234 00000000:0000 07\n"
	for _, tc := range []struct {
		port uint16
		want bool
	}{{3544, true}, {0x1234, true}, {3545, false}, {0, false}} {
		if got := udpTableHasPort(table, tc.port); got != tc.want {
			t.Errorf("port %d: got %v", tc.port, got)
		}
	}
}

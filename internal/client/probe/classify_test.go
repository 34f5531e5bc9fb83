// SPDX-License-Identifier: MIT

package probe

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	local := netip.MustParseAddrPort("10.0.0.2:40000")
	ap := netip.MustParseAddrPort
	answered := func(m string) Exchange {
		return Exchange{Sent: 1, Answered: true, Mapping: ap(m), From: ap("192.0.2.11:3544")}
	}
	silent := Exchange{Sent: 2}
	for _, tc := range []struct {
		name                  string
		local                 netip.AddrPort
		primary, cone, second Exchange
		typ, mapping, filter  string
		pp                    bool
		evidence, cannotTell  string // substrings, when not empty
	}{
		{"no NAT", ap("192.0.2.30:40000"), answered("192.0.2.30:40000"), answered("192.0.2.30:40000"), answered("192.0.2.30:40000"),
			NATNone, Independent, Independent, true, "no translation", ""},
		{"no NAT, a firewall", ap("192.0.2.30:40000"), answered("192.0.2.30:40000"), silent, answered("192.0.2.30:40000"),
			NATNone, Independent, AddressOrPort, true, "firewall", ""},
		{"full cone", local, answered("198.51.100.2:40000"), answered("198.51.100.2:40000"), answered("198.51.100.2:40000"),
			NATCone, Independent, Independent, true, "anyone may reach", ""},
		{"restricted", local, answered("198.51.100.2:40000"), silent, answered("198.51.100.2:40000"),
			NATRestricted, Independent, AddressOrPort, true, "filtered", "address-restricted from port-restricted"},
		{"restricted, port changed", local, answered("198.51.100.2:1234"), silent, answered("198.51.100.2:1234"),
			NATRestricted, Independent, AddressOrPort, false, "took port 1234", ""},
		{"symmetric", local, answered("198.51.100.2:1234"), silent, answered("198.51.100.2:5678"),
			NATSymmetric, Dependent, AddressOrPort, false, "a new mapping per destination", "filtering of a symmetric NAT"},
		{"symmetric, port-preserving", local, answered("198.51.100.2:40000"), silent, answered("198.51.100.2:5678"),
			NATSymmetric, Dependent, AddressOrPort, true, "kept our local port", ""},
		{"symmetric, sequential", local, answered("198.51.100.2:20000"), silent, answered("198.51.100.2:20001"),
			NATSymmetric, Dependent, AddressOrPort, false, "in sequence", ""},
		{"symmetric, address pool", local, answered("198.51.100.2:20000"), silent, answered("198.51.100.3:20000"),
			NATSymmetric, Dependent, AddressOrPort, false, "pools addresses", ""},
		{"secondary silent, cone answered", local, answered("198.51.100.2:40000"), answered("198.51.100.2:40000"), Exchange{Sent: 3},
			NATCone, Unknown, Independent, true, "mapping behaviour is unknown", "whether the mapping is the same"},
		{"secondary silent, cone filtered", local, answered("198.51.100.2:40000"), silent, Exchange{Sent: 3},
			NATUnknown, Unknown, AddressOrPort, true, "did not answer", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := Classify(tc.local, tc.primary, tc.cone, tc.second)
			if n.Type != tc.typ || n.Mapping != tc.mapping || n.Filtering != tc.filter || n.PortPreserving == nil || *n.PortPreserving != tc.pp {
				t.Errorf("got %s, mapping %s, filtering %s, port-preserving %v; want %s, %s, %s, %v",
					n.Type, n.Mapping, n.Filtering, *n.PortPreserving, tc.typ, tc.mapping, tc.filter, tc.pp)
			}
			if ev := strings.Join(n.Evidence, "\n"); tc.evidence != "" && !strings.Contains(ev, tc.evidence) {
				t.Errorf("evidence lacks %q:\n%s", tc.evidence, ev)
			}
			if ct := strings.Join(n.CannotTell, "\n"); tc.cannotTell != "" && !strings.Contains(ct, tc.cannotTell) {
				t.Errorf("cannot-tell lacks %q: %s", tc.cannotTell, ct)
			}
		})
	}
}

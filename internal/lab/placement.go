// SPDX-License-Identifier: MIT

package lab

import (
	"context"
	"net/netip"
)

// Placement is where a Teredo client sits for a test: on pub with no NAT,
// or on client1 behind nat1 in one of its behaviours. Interop suites run
// every role against every placement.
type Placement struct {
	Name   string // "none", "full-cone", …: a subtest name
	Client string // host name: Pub or Client1
	NAT    string // "" or NAT1
	Mode   NATMode
}

// Placements lists no NAT and each NAT behaviour, in that order.
func Placements() []Placement {
	ps := []Placement{{Name: "none", Client: Pub}}
	for _, m := range []NATMode{FullCone, AddressRestricted, PortRestricted, Symmetric} {
		ps = append(ps, Placement{Name: m.String(), Client: Client1, NAT: NAT1, Mode: m})
	}
	return ps
}

// Place sets up p: it switches the NAT to p's behaviour (flushing its
// state) and returns the client host and the public IPv4 address the
// Internet will see it from.
func (l *Lab) Place(ctx context.Context, p Placement) (*Host, netip.Addr, error) {
	h := l.Host(p.Client)
	if p.NAT == "" {
		return h, h.IPv4(), nil
	}
	if err := l.SetNAT(ctx, p.NAT, p.Mode); err != nil {
		return nil, netip.Addr{}, err
	}
	return h, l.WAN(p.NAT), nil
}

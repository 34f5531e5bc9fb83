// SPDX-License-Identifier: MIT

package client

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestHopOf: only a route that positively has no next hop (on-link, local,
// not unicast) rules out a gateway; one with several next hops or none we
// can read leaves the question to the multicast search.
func TestHopOf(t *testing.T) {
	cases := []struct {
		name string
		r    netlink.Route
		kind hopKind
		addr string
	}{
		{"via gateway", netlink.Route{Type: unix.RTN_UNICAST, Gw: net.ParseIP("10.0.0.1")}, hopGateway, "10.0.0.1"},
		{"via gateway, type unset", netlink.Route{Gw: net.IPv4(10, 0, 0, 1)}, hopGateway, "10.0.0.1"},
		{"on-link", netlink.Route{Type: unix.RTN_UNICAST}, hopNone, ""},
		{"local", netlink.Route{Type: unix.RTN_LOCAL}, hopNone, ""},
		{"blackhole", netlink.Route{Type: unix.RTN_BLACKHOLE}, hopNone, ""},
		{"multipath", netlink.Route{Type: unix.RTN_UNICAST, MultiPath: []*netlink.NexthopInfo{
			{Gw: net.ParseIP("10.0.0.1")}, {Gw: net.ParseIP("10.0.0.254")}}}, hopUnknown, ""},
		{"IPv6 next hop", netlink.Route{Type: unix.RTN_UNICAST, Gw: net.ParseIP("fe80::1")}, hopUnknown, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := hopOf(tc.r, "route")
			if h.kind != tc.kind || (tc.addr != "" && h.addr != netip.MustParseAddr(tc.addr)) || (tc.addr == "" && h.addr.IsValid()) {
				t.Errorf("%+v, want %v %s", h, tc.kind, tc.addr)
			}
			if h.why == "" {
				t.Error("no reason for the log")
			}
		})
	}
}

// TestNextHopToLocal: a server on this host has no gateway between (a
// real netlink lookup, unprivileged).
func TestNextHopToLocal(t *testing.T) {
	if h := nextHopTo("127.0.0.1", netip.Addr{}); h.kind != hopNone {
		t.Errorf("%+v", h)
	}
}

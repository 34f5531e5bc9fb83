// SPDX-License-Identifier: MIT

package client

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hopKind is what the route to the server says about a UPnP gateway.
type hopKind int

const (
	// hopUnknown: the route could not be read (or has several next
	// hops); the multicast search alone decides.
	hopUnknown hopKind = iota
	// hopNone: the server is on our link, or unreachable: no gateway can
	// carry our traffic to it, so none can map our port.
	hopNone
	// hopGateway: our traffic leaves through a next hop, the only device
	// whose mapping the server would see.
	hopGateway
)

func (k hopKind) String() string {
	switch k {
	case hopNone:
		return "none"
	case hopGateway:
		return "gateway"
	default:
		return "unknown"
	}
}

// nextHop is the route to the server as far as the UPnP search cares.
type nextHop struct {
	kind hopKind
	addr netip.Addr // the gateway, for hopGateway
	why  string     // what the route was, for the log
}

// nextHopTo finds the next hop of our route to server with netlink (an
// RTM_GETROUTE needs no privilege, and reads no file a chroot would hide).
// A server given as an address is looked up as the kernel would route our
// datagrams to it (from bind when the socket is bound); a server name is
// not resolved yet when the search runs, so the main table's default route
// stands for the Internet it is on. Nothing here is ever taken for "no
// gateway" unless the route says so.
func nextHopTo(server string, bind netip.Addr) nextHop {
	if a, err := netip.ParseAddr(server); err == nil && a.Unmap().Is4() {
		opts := &netlink.RouteGetOptions{}
		if bind.IsValid() && !bind.IsUnspecified() {
			opts.SrcAddr = net.IP(bind.AsSlice())
		}
		routes, err := netlink.RouteGetWithOptions(net.IP(a.Unmap().AsSlice()), opts)
		if isUnreachable(err) {
			return nextHop{kind: hopNone, why: "no route: " + err.Error()}
		}
		if err != nil || len(routes) == 0 {
			return nextHop{kind: hopUnknown, why: "route lookup failed: " + errString(err)}
		}
		return hopOf(routes[0], "route to the server")
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nextHop{kind: hopUnknown, why: "route list failed: " + err.Error()}
	}
	var defaults []netlink.Route
	for _, r := range routes {
		if r.Dst == nil || (r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) {
			defaults = append(defaults, r)
		}
	}
	if len(defaults) == 0 {
		// The server's address, once resolved, may still be reached by a
		// narrower route.
		return nextHop{kind: hopUnknown, why: "no default route"}
	}
	best := slices.MinFunc(defaults, func(a, b netlink.Route) int { return a.Priority - b.Priority })
	return hopOf(best, "default route")
}

// hopOf reads one route.
func hopOf(r netlink.Route, what string) nextHop {
	switch {
	case r.Type == unix.RTN_LOCAL:
		return nextHop{kind: hopNone, why: what + " is local"}
	case r.Type != unix.RTN_UNICAST && r.Type != 0:
		return nextHop{kind: hopNone, why: what + " is not unicast"}
	case len(r.MultiPath) > 0:
		return nextHop{kind: hopUnknown, why: what + " has several next hops"}
	case r.Gw == nil:
		return nextHop{kind: hopNone, why: what + " is on-link"}
	}
	gw, ok := netip.AddrFromSlice(r.Gw)
	if !ok || !gw.Unmap().Is4() {
		return nextHop{kind: hopUnknown, why: what + " has no IPv4 next hop"}
	}
	return nextHop{kind: hopGateway, addr: gw.Unmap(), why: what}
}

// isUnreachable: the kernel has no route for the destination.
func isUnreachable(err error) bool {
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func errString(err error) string {
	if err == nil {
		return "no route returned"
	}
	return err.Error()
}

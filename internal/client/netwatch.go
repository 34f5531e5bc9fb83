// SPDX-License-Identifier: MIT

package client

import (
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netSettle is how long the client waits after a change of the host's
// IPv4 addresses or default route before soliciting its server: a move to
// another network is several changes (the new address, the route, the old
// address going), and one solicitation after the last is enough.
const netSettle = 300 * time.Millisecond

// watchNetwork reports changes of the host's IPv4 addresses and default
// route, which move the client's datagrams to another local address (a
// new DHCP lease, another network): the client then asks its server at
// once, as SIGHUP makes it, rather than learn at its next refresh that its
// mapping changed. The netlink subscriptions are made now (before the
// privilege drop, though they need none) and end when done is closed.
// Events are coalesced: the channel holds at most one.
func watchNetwork(done <-chan struct{}, log *slog.Logger) (<-chan struct{}, error) {
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	onErr := func(err error) { log.Debug("network watch", "err", err) }
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return nil, err
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return nil, err
	}
	out := make(chan struct{}, 1)
	changed := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case u, ok := <-addrs:
				if !ok {
					return
				}
				if u.LinkAddress.IP.To4() != nil {
					changed()
				}
			case u, ok := <-routes:
				if !ok {
					return
				}
				if u.Family == unix.AF_INET && (u.Dst == nil || u.Dst.IP.IsUnspecified()) {
					changed()
				}
			}
		}
	}()
	return out, nil
}

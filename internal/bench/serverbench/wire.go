// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/miredo-go/miredo/internal/lab"
)

// The lab's "wire" is veth pairs and the router's bridge. By default a veth
// delivers a datagram to its peer inside the sender's system call: the
// softirq that carries a reply across the bridge into the generator's
// socket runs in the server's sendmmsg, and is charged to the server as
// system time, though on real hardware the wire and the client would do
// that work. threadWire moves it into kernel threads: with GRO on, a veth
// receives through NAPI, and threaded NAPI polls in a napi/<dev> kthread.
// Both directions of the server's and the generator's links are served by
// the router-side ends, so the server and the generator then pay only for
// their own system calls: the UDP/IP send path down to the veth, and the
// copy out of their socket.
func threadWire(ctx context.Context, l *lab.Lab) error {
	router := l.Host(lab.Router)
	// The router-side end of a bridged host's link is named after the host.
	for _, dev := range []string{lab.Server, lab.Pub} {
		h := l.Host(dev)
		if err := h.SetOffload(h.Ifname, lab.TSO, false); err != nil {
			return fmt.Errorf("%s: TSO off on %s: %w", dev, h.Ifname, err)
		}
		if err := router.SetOffload(dev, lab.GRO, true); err != nil {
			return fmt.Errorf("router: GRO on %s: %w", dev, err)
		}
		// ip netns exec mounts the namespace's own sysfs.
		path := filepath.Join("/sys/class/net", dev, "threaded")
		if _, err := router.RunInput(ctx, "1\n", "tee", path); err != nil {
			return fmt.Errorf("router: threaded NAPI on %s: %w", dev, err)
		}
	}
	return nil
}

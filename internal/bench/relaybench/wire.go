// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/miredo-go/miredo/internal/lab"
)

// wire is a veth a daemon sends into: the relay host's uplink, whose far
// end is the router's bridge port named after it (the relay's datagrams
// to clients and its packets to native IPv6 both leave that way), and the
// client host's uplink, whose far end is nat1's LAN side.
type wire struct {
	host, dev         string // the daemon's end
	peerHost, peerDev string // the receiving end
}

var daemonWires = []wire{
	{lab.Relay, "eth0", lab.Router, lab.Relay},
	{clientHost, "eth0", lab.NAT1, "lan"},
}

// threadWire moves the lab's delivery of what the relay and the client
// send out of their system calls. By default a veth hands a packet to its
// peer's backlog and the sender's system call runs that softirq on the
// spot: the relay's sendmmsg or tunnel write carries the packet through
// the router, the NAT and into the receiver's socket, and is charged for
// all of it. With GRO on, a veth receives through NAPI, and threaded NAPI
// polls in a napi/<dev> kernel thread, so each daemon pays only for its own
// system calls down to its veth. The work is the same and the machine the
// same two cores; only the bill moves (and the delivery is pipelined).
//
// A veth takes the NAPI path only for packets it may hand over unmerged:
// with TSO on the sending end, a forwarded packet (the relay's, from its
// tunnel) still goes through the backlog. So TSO is turned off on the
// daemons' ends, which makes the kernel segment a forwarded TCP
// super-packet (the offload tunnel backends write them) in software at the
// relay's uplink, in the relay's system call: work a NIC would do.
func threadWire(ctx context.Context, l *lab.Lab) error {
	for _, w := range daemonWires {
		h, peer := l.Host(w.host), l.Host(w.peerHost)
		if err := h.SetOffload(w.dev, lab.TSO, false); err != nil {
			return fmt.Errorf("%s: TSO off on %s: %w", w.host, w.dev, err)
		}
		if err := peer.SetOffload(w.peerDev, lab.GRO, true); err != nil {
			return fmt.Errorf("%s: GRO on %s: %w", w.peerHost, w.peerDev, err)
		}
		// ip netns exec mounts the namespace's own sysfs.
		path := filepath.Join("/sys/class/net", w.peerDev, "threaded")
		if _, err := peer.RunInput(ctx, "1\n", "tee", path); err != nil {
			return fmt.Errorf("%s: threaded NAPI on %s: %w", w.peerHost, w.peerDev, err)
		}
	}
	return nil
}

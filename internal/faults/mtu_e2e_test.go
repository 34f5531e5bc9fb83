// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// pathMTU is the MTU of the link between the client's NAT and the router:
// below the 1280-byte tunnel MTU plus the 48 bytes of IPv4, UDP and Teredo
// headers a full-size datagram needs.
const pathMTU = 1300

// blockFragNeeded drops ICMP "fragmentation needed" on the router, as
// firewalls that break path MTU discovery do.
const blockFragNeeded = `table inet pmtu {
	chain filter {
		type filter hook forward priority filter; policy accept;
		icmp type destination-unreachable icmp code frag-needed drop
	}
}
`

// TestFaultPathMTU narrows the link between the client's NAT and the
// router to an MTU of 1300, with the router sending ICMP "fragmentation
// needed" and then with those dropped: 10 MB over TCP must cross the relay
// both ways in either case. Our datagrams leave without DF (udpio sets
// IP_PMTUDISC_DONT), so routers fragment them rather than drop them.
func TestFaultPathMTU(t *testing.T) {
	w := newWorld(t)
	router, nat := w.l.Host(lab.Router), w.l.Host(lab.NAT1)
	for _, set := range []struct {
		h      *lab.Host
		ifname string
	}{{router, lab.NAT1}, {nat, nat.Ifname}} {
		if out, err := set.h.Run(w.ctx, "ip", "link", "set", "dev", set.ifname, "mtu", fmt.Sprint(pathMTU)); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	var tb table
	for _, blocked := range []bool{false, true} {
		for _, who := range whos() {
			name := "icmp-" + who
			if blocked {
				name = "no-icmp-" + who
			}
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
				defer cancel()
				if blocked {
					if out, err := router.RunInput(ctx, blockFragNeeded, "nft", "-f", "-"); err != nil {
						t.Fatalf("%v: %s", err, out)
					}
					defer router.Run(context.Background(), "nft", "delete", "table", "inet", "pmtu")
				}
				h, _, err := w.l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
				if err != nil {
					t.Fatal(err)
				}
				c := w.startClient(t, ctx, who, h, name)
				defer c.stop(t)
				if err := h.Ping(ctx, w.native.IPv6()); err != nil {
					t.Fatal(err)
				}
				fragsBefore, err := router.SNMP(ctx, "Ip", "FragCreates")
				if err != nil {
					t.Fatal(err)
				}
				up, upTook, err := tcpTransfer(ctx, h, w.native, w.native.IPv6(), transferSize)
				if err != nil {
					t.Errorf("client -> native: %v", err)
				}
				down, downTook, err := tcpTransfer(ctx, w.native, h, c.addr, transferSize)
				if err != nil {
					t.Errorf("native -> client: %v", err)
				}
				frags, err := router.SNMP(ctx, "Ip", "FragCreates")
				if err != nil {
					t.Fatal(err)
				}
				// Without fragments the narrow link was never exercised,
				// and the test would prove nothing.
				if frags == fragsBefore {
					t.Errorf("the router created no fragments: nothing crossed the narrow link at full size")
				}
				tb.add("%-8s %-6s 10 MB up in %v (%.0f Mbit/s), down in %v (%.0f Mbit/s), %d fragments", map[bool]string{false: "ICMP", true: "no ICMP"}[blocked],
					who, upTook.Round(10*time.Millisecond), up/1e6, downTook.Round(10*time.Millisecond), down/1e6, frags-fragsBefore)
			})
		}
	}
	tb.log(t, fmt.Sprintf("path MTU %d between the client's NAT and the router", pathMTU))
}

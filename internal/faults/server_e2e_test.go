// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
)

// Server outage: how long the server is unreachable, and how soon after it
// is back our client must be qualified again.
const (
	outage      = 60 * time.Second
	outageBound = 5 * time.Second
)

// TestFaultServerOutage makes the server unreachable for a minute (its
// namespace drops UDP to port 3544) while clients are qualified: ours
// behind each NAT (each in a lab of its own, in parallel) and, beside it,
// Debian's Miredo behind nat2. Ours must report offline and keep its
// interface during the outage, and be qualified again within outageBound
// of the server's return.
func TestFaultServerOutage(t *testing.T) {
	var tb table
	t.Cleanup(func() { tb.log(t, "server unreachable for 60 s: time from its return to the client qualified again") })
	for _, pl := range lab.Placements() {
		t.Run(pl.Name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			h, _, err := w.l.Place(ctx, pl)
			if err != nil {
				t.Fatal(err)
			}
			ours := w.startClient(t, ctx, "ours", h, "ours")
			defer ours.stop(t)
			var theirs *client
			if *full && pl.Mode == lab.PortRestricted && pl.NAT != "" {
				theirs = w.startClient(t, ctx, "miredo", w.l.Host(lab.Client2), "miredo")
				defer theirs.stop(t)
			}
			if out, err := w.server.RunInput(ctx, dropServer, "nft", "-f", "-"); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			cut := time.Now()
			// Offline before the server is back; the interface stays.
			deadline := cut.Add(outage)
			for !strings.Contains(ours.p.Tail(200), "Lost Teredo connectivity") {
				if time.Now().After(deadline) {
					t.Fatalf("no loss reported during the outage:\n%s", ours.p.Tail(10))
				}
				time.Sleep(100 * time.Millisecond)
			}
			lost := time.Since(cut)
			time.Sleep(time.Until(deadline))
			addrs, err := h.Addrs(ours.ifname)
			if err != nil {
				t.Errorf("the tunnel interface went away while offline: %v", err)
			}
			for _, a := range addrs {
				if refmiredo.TeredoPrefix().Contains(a) {
					t.Errorf("Teredo address %v kept while offline", a)
				}
			}
			if out, err := w.server.Run(ctx, "nft", "delete", "table", "inet", "fault"); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			back := time.Now()
			wait := func(c *client, bound time.Duration) time.Duration {
				wctx, wcancel := context.WithTimeout(ctx, bound)
				defer wcancel()
				if _, err := c.h.WaitAddr(wctx, c.ifname, refmiredo.TeredoPrefix()); err != nil {
					return -1
				}
				return time.Since(back)
			}
			got := wait(ours, outageBound+5*time.Second)
			tb.add("%-18s ours   loss noticed %5v into the outage; qualified %v after the server's return", pl.Name,
				lost.Round(time.Second), fmtGap(got))
			if got < 0 || got > outageBound {
				t.Errorf("qualified again %v after the server's return, want within %v\n%s", got, outageBound, ours.p.Tail(15))
			}
			if theirs != nil {
				tb.add("%-18s miredo qualified %v after the server's return (behind nat2, port-restricted)", pl.Name,
					fmtGap(wait(theirs, 2*time.Minute)))
			}
		})
	}
}

// dropServer makes the server unreachable: its namespace drops every UDP
// datagram to port 3544.
const dropServer = `table inet fault {
	chain in {
		type filter hook input priority filter; policy accept;
		udp dport 3544 drop
	}
}
`

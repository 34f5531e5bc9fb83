// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// relayBound is how soon after a restarted relay is back traffic must flow
// again, both ways, without restarting the client.
const relayBound = 5 * time.Second

// TestFaultRelayRestart kills the relay (SIGKILL) while traffic flows one
// way through it — the client pings the native host every 0.2 s, or the
// native host pings the client — starts it again 2 s later (on a new port,
// with an empty table), and times how long after it is back replies come
// again, for a client behind each NAT. One direction at a time: traffic
// the other way would hand the client the new relay's mapping and hide
// whether it finds it alone.
func TestFaultRelayRestart(t *testing.T) {
	w := newWorld(t)
	var tb table
	for _, pl := range lab.Placements() {
		for _, who := range whos() {
			for _, dir := range []string{"client->native", "native->client"} {
				t.Run(pl.Name+"/"+who+"/"+dir, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
					defer cancel()
					h, _, err := w.l.Place(ctx, pl)
					if err != nil {
						t.Fatal(err)
					}
					c := w.startClient(t, ctx, who, h, "relayfault-"+pl.Name+"-"+who)
					defer c.stop(t)
					from, to := h, w.native.IPv6()
					if dir == "native->client" {
						from, to = w.native, c.addr
					}
					p, err := from.StartPinger(ctx, to, 200*time.Millisecond)
					if err != nil {
						t.Fatal(err)
					}
					defer p.Stop()
					if _, err := p.WaitReplyAfter(ctx, time.Now()); err != nil {
						t.Fatalf("before the fault: %v", err)
					}
					syscall.Kill(w.relayProc.Pid(), syscall.SIGKILL)
					<-w.relayProc.Done()
					time.Sleep(2 * time.Second) // the relay stays dead for 2 s
					w.startRelay(t, "relay-"+pl.Name+"-"+who)
					back := time.Now()
					rctx, rcancel := context.WithTimeout(ctx, relayBound+30*time.Second) // Miredo takes ~25 s
					defer rcancel()
					took := time.Duration(-1)
					if r, err := p.WaitReplyAfter(rctx, back); err == nil {
						took = r.Sub(back)
					}
					tb.add("%-18s %-6s %-15s %7v", pl.Name, who, dir, fmtGap(took))
					if who == "ours" && (took < 0 || took > relayBound) {
						t.Errorf("%s: replies again %v after the relay was back, want within %v\n%s", dir, took, relayBound, c.p.Tail(20))
					}
				})
			}
		}
	}
	tb.log(t, "relay killed, back after 2 s: time from its return to the first reply")
}

func fmtGap(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(10 * time.Millisecond).String()
}

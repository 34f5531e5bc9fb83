// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

// addrChangeBound is how soon after the host's address changed the client
// must have its new Teredo address.
const addrChangeBound = 5 * time.Second

// TestFaultAddressChange moves the client host to another IPv4 address (a
// new address on its interface, the default route through it, the old
// address removed), as a laptop does that joins another network or gets a
// new lease, in every placement (a lab each, in parallel). The client must
// have a new Teredo address, for its new mapping, within addrChangeBound,
// reach the native host with it, and tell its hook as Miredo does
// (STATE=up with the new ADDRESS, the old one in OLD_ADDRESS).
func TestFaultAddressChange(t *testing.T) {
	var tb table
	t.Cleanup(func() { tb.log(t, "host address changed: time to the new Teredo address") })
	for _, pl := range lab.Placements() {
		t.Run(pl.Name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			for _, who := range whos() {
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				h, _, err := w.l.Place(ctx, pl)
				if err != nil {
					t.Fatal(err)
				}
				record := filepath.Join(w.l.LogDir, who+".hook")
				hook := filepath.Join(w.l.LogDir, who+".sh")
				os.WriteFile(hook, []byte("#!/bin/sh\necho \"$STATE $ADDRESS $OLD_ADDRESS\" >> "+record+"\n"), 0o755)
				for _, d := range []string{filepath.Dir(w.l.LogDir), w.l.LogDir} {
					os.Chmod(d, 0o777)
				}
				var c *client
				if who == "ours" {
					c = w.startClient(t, ctx, who, h, "addr-"+who, "--hook", hook)
				} else {
					c = w.startClient(t, ctx, who, h, "addr-"+who)
				}
				old, moved := h.IPv4(), netip.MustParseAddr("10.0.0.9")
				gw := netip.MustParseAddr("10.0.0.1")
				if pl.NAT == "" {
					moved, gw = netip.MustParseAddr("192.0.2.31"), netip.MustParseAddr("192.0.2.1")
				}
				start := time.Now()
				// The old address goes (and the default route with it), the
				// new one comes, then the route, as a new lease does.
				for _, argv := range [][]string{
					{"ip", "addr", "del", old.String() + "/24", "dev", h.Ifname},
					{"ip", "addr", "add", moved.String() + "/24", "dev", h.Ifname},
					{"ip", "route", "replace", "default", "via", gw.String()},
				} {
					if out, err := h.Run(ctx, argv...); err != nil {
						t.Fatalf("%v: %v: %s", argv, err, out)
					}
				}
				wctx, wcancel := context.WithTimeout(ctx, addrChangeBound+40*time.Second)
				var now netip.Addr
				for now = c.addr; now == c.addr; {
					addrs, _ := h.Addrs(c.ifname)
					for _, a := range addrs {
						if refmiredo.TeredoPrefix().Contains(a) {
							now = a
						}
					}
					if wctx.Err() != nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				wcancel()
				took := time.Since(start)
				if now == c.addr {
					took = -1
				}
				tb.add("%-18s %-6s new Teredo address %v after the move", pl.Name, who, fmtGap(took))
				if who == "ours" {
					if took < 0 || took > addrChangeBound {
						t.Errorf("new Teredo address %v after the move, want within %v\n%s", took, addrChangeBound, c.p.Tail(15))
					} else {
						if a, _ := proto.ParseAddress(now); pl.NAT == "" && a.MappedAddr != moved {
							t.Errorf("new address %v maps %v, want the new %v", now, a.MappedAddr, moved)
						}
						if err := h.Ping(ctx, w.native.IPv6()); err != nil {
							t.Errorf("native IPv6 from the new address: %v", err)
						}
						want := "up " + now.String() + " " + c.addr.String()
						deadline := time.Now().Add(5 * time.Second)
						for b, _ := os.ReadFile(record); !strings.Contains(string(b), want); b, _ = os.ReadFile(record) {
							if time.Now().After(deadline) {
								t.Errorf("hook calls %q, want %q", b, want)
								break
							}
							time.Sleep(50 * time.Millisecond)
						}
					}
				}
				c.stop(t)
				// Back where it was, for the next client.
				for _, argv := range [][]string{
					{"ip", "addr", "del", moved.String() + "/24", "dev", h.Ifname},
					{"ip", "addr", "add", old.String() + "/24", "dev", h.Ifname},
					{"ip", "route", "replace", "default", "via", gw.String()},
				} {
					h.Run(ctx, argv...)
				}
			}
		})
	}
}

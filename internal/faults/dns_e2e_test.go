// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
)

// serverName is the Teredo server's name in the lab's DNS.
const serverName = "teredo.example.net"

// dnsBlackout is how long the resolver stays unreachable after the client
// starts.
const dnsBlackout = 15 * time.Second

// blockDNS drops DNS queries to the resolver on the router, counting them:
// a resolver that is not reachable yet, as at boot before the network is
// fully up (the queries time out rather than fail at once).
const blockDNS = `table inet dnsblock {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip daddr %[1]s udp dport 53 counter drop
		ip daddr %[1]s tcp dport 53 counter drop
	}
}
`

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// TestFaultBootBeforeDNS starts the client, configured with the server's
// name, while its resolver is unreachable for 15 s: it must keep its
// process, keep asking at a bounded pace (counted on the router), and be
// qualified within 5 s of the resolver answering.
func TestFaultBootBeforeDNS(t *testing.T) {
	w := newWorld(t)
	router, dns := w.l.Host(lab.Router), w.l.Host(lab.Inet1)
	dnsmasq, err := w.l.Start(w.ctx, dns, "dnsmasq", "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-queries",
		"--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address="+dns.IPv4().String(),
		"--address=/"+serverName+"/"+w.server.IPv4().String(), "--pid-file="+filepath.Join(w.l.LogDir, "dnsmasq.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dns.WaitUDP(w.ctx, 53); err != nil {
		t.Fatalf("%v\n%s", err, dnsmasq.Tail(10))
	}
	var tb table
	for _, who := range whos() {
		t.Run(who, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			h, _, err := w.l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := router.RunInput(ctx, fmt.Sprintf(blockDNS, dns.IPv4()), "nft", "-f", "-"); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			blocked := true
			defer func() {
				if blocked {
					router.Run(context.Background(), "nft", "delete", "table", "inet", "dnsblock")
				}
			}()

			name := "dns-" + who
			var argv []string
			ifname := ifname
			if who == "ours" {
				conf := filepath.Join(w.l.LogDir, name+".conf")
				if err := os.WriteFile(conf, []byte("InterfaceName "+ifname+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				argv = []string{lab.Binary(t, "miredo-client"), "-c", conf, "--server", serverName, "--control-socket", "", "--log-level", "debug"}
			} else {
				ifname = refmiredo.DefaultIfname
				conf := filepath.Join(w.l.LogDir, name+".conf")
				text := fmt.Sprintf("RelayType client\nInterfaceName %s\nServerAddress %s\n", ifname, serverName)
				if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				argv = []string{refmiredo.MiredoBinary, "-f", "-c", conf, "-p", filepath.Join(w.l.LogDir, name+".pid")}
			}
			argv, err = w.l.Resolving(dns.IPv4(), argv...)
			if err != nil {
				t.Fatal(err)
			}
			p, err := w.l.Start(ctx, h, name, argv...)
			if err != nil {
				t.Fatal(err)
			}
			c := &client{p: p, h: h, ifname: ifname}
			defer c.stop(t)

			// The blackout: no address can come, and the client must still
			// be running at its end.
			blackoutEnd := time.Now().Add(dnsBlackout)
			for time.Now().Before(blackoutEnd) {
				select {
				case <-p.Done():
					t.Fatalf("the client exited without DNS: %v\n%s", p.Err(), p.Tail(20))
				case <-time.After(100 * time.Millisecond):
				}
			}
			if addrs, _ := h.Addrs(ifname); len(addrs) > 0 {
				t.Fatalf("an address without a server: %v", addrs)
			}
			out, err := router.Run(ctx, "nft", "list", "table", "inet", "dnsblock")
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			var queries int
			for _, m := range counterRE.FindAllStringSubmatch(string(out), -1) {
				n, _ := strconv.Atoi(m[1])
				queries += n
			}
			if _, err := router.Run(ctx, "nft", "delete", "table", "inet", "dnsblock"); err != nil {
				t.Fatal(err)
			}
			blocked = false
			back := time.Now()
			c.addr, err = h.WaitAddr(ctx, ifname, refmiredo.TeredoPrefix())
			if err == nil {
				err = h.WaitDefaultRoute(ctx, ifname)
			}
			if err != nil {
				t.Fatalf("not qualified after DNS came back: %v\n%s", err, p.Tail(20))
			}
			took := time.Since(back)
			if err := h.Ping(ctx, w.native.IPv6()); err != nil {
				t.Errorf("ping through the relay: %v", err)
			}
			tb.add("%-6s %2d DNS queries in the %v blackout; qualified %v after DNS answered", who, queries,
				dnsBlackout, took.Round(10*time.Millisecond))
			if who != "ours" {
				return
			}
			// Kept trying: at least one query every 5 s, and a bounded
			// back-off: not more than a query every 0.25 s.
			if queries < int(dnsBlackout/(5*time.Second)) || queries > int(dnsBlackout/(250*time.Millisecond)) {
				t.Errorf("%d DNS queries in %v: want a retry at least every 5 s and at most every 0.25 s", queries, dnsBlackout)
			}
			if took > 5*time.Second {
				t.Errorf("qualified %v after DNS answered, want within 5 s", took)
			}
		})
	}
	tb.log(t, "boot before DNS (resolver unreachable for "+dnsBlackout.String()+")")
}

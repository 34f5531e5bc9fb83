// SPDX-License-Identifier: MIT

//go:build e2e

package client_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

// floodSize is the spoofed flood of the issue that found the unbounded
// table: 200,000 bubbles, each from its own source.
const floodSize = 200_000

// floodBound is the most our client's resident memory may grow under it.
const floodBound = 16 << 20

// TestSpoofedBubbleFlood sends a client with a public address 200,000
// bubbles, each from its own spoofed source and naming that source as its
// mapping (so each passes the checks a real peer's first bubble passes),
// while the client pings a native host through the relay. Our client's
// memory must grow by at most floodBound and its ping must keep working;
// Debian's Miredo client takes the same flood for comparison.
func TestSpoofedBubbleFlood(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	server, relay, pub, native, attacker := l.Host(lab.Server), l.Host(lab.Relay), l.Host(lab.Pub), l.Host(lab.Native), l.Host(lab.Inet1)
	if _, err := l.Start(ctx, server, "our-server", binary(t, "miredo-server"), "--primary", server.IPv4().String(), "--rate-limit", "0"); err != nil {
		t.Fatal(err)
	}
	if err := server.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Start(ctx, relay, "our-relay", binary(t, "miredo-relay"), "--cone", "-c", "/dev/null", "--interface", "teredo"); err != nil {
		t.Fatal(err)
	}
	if err := relay.WaitLink(ctx, "teredo"); err != nil {
		t.Fatal(err)
	}
	var report []string
	for _, who := range []string{"ours", "miredo"} {
		t.Run(who, func(t *testing.T) {
			var (
				p      *lab.Process
				ifname string
			)
			if who == "ours" {
				c := startClient(ctx, t, l, pub, "flood-ours", server.IPv4())
				p, ifname = c.p, "teredo"
			} else {
				var err error
				if p, err = refmiredo.StartClient(ctx, l, pub, "flood-miredo", server.IPv4()); err != nil {
					t.Fatal(err)
				}
				ifname = refmiredo.DefaultIfname
			}
			defer func() { p.Stop(); waitLinkGone(ctx, t, pub, ifname) }()
			addr, err := pub.WaitAddr(ctx, ifname, refmiredo.TeredoPrefix())
			if err == nil {
				err = pub.WaitDefaultRoute(ctx, ifname)
			}
			if err == nil {
				err = pub.Ping(ctx, native.IPv6())
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, p.Tail(20))
			}
			self, _ := proto.ParseAddress(addr)
			to := self.Mapping()
			flood := make([]lab.Spoofed, 0, floodSize)
			for i := range floodSize {
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i%240)}), uint16(1024+i/240))
				if i%2 == 1 {
					from = netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i%240)}), uint16(1024+i/240))
				}
				src := proto.Address{Prefix: proto.DefaultPrefix, Server: server.IPv4(), MappedPort: from.Port(), MappedAddr: from.Addr()}.Addr()
				flood = append(flood, lab.Spoofed{From: from, To: to, Payload: proto.AppendBubble(nil, src, addr, 0)})
			}
			before, err := p.RSS()
			if err != nil {
				t.Fatal(err)
			}
			// The client pings through the relay all along; ping prints its
			// summary when interrupted.
			ping := pub.Command(ctx, "ping", "-n", "-q", "-i", "0.2", "-W", "1", native.IPv6().String())
			var pingOut strings.Builder
			ping.Stdout = &pingOut
			if err := ping.Start(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := attacker.SendSpoofed(flood); err != nil {
				t.Fatal(err)
			}
			sent := time.Since(start)
			waitDrained(ctx, t, pub, to.Port())
			after, err := p.RSS()
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Ping(ctx, native.IPv6()); err != nil {
				t.Errorf("ping after the flood: %v", err)
			}
			ping.Process.Signal(os.Interrupt)
			ping.Wait()
			pings := strings.TrimSpace(pingOut.String())
			if i := strings.Index(pings, "packets transmitted"); i >= 0 {
				pings = pings[i:]
				if j := strings.IndexByte(pings, '\n'); j > 0 {
					pings = pings[:j]
				}
			}
			grew := int64(after) - int64(before)
			row := fmt.Sprintf("%-6s RSS %5.1f MiB -> %5.1f MiB (%+.1f MiB); flood sent in %v; ping during it: %s",
				who, mib(before), mib(after), float64(grew)/(1<<20), sent.Round(time.Millisecond), pings)
			t.Log(row)
			report = append(report, row)
			if who == "ours" {
				st, err := p.Statistics(ctx)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("our client: from_udp %d, peers created %d, drop_peer_limited %d, peers %d",
					st["engine.from_udp"], st["engine.created"], st["engine.drop_peer_limited"], st["engine.peers"])
				if st["engine.from_udp"] < floodSize/2 {
					t.Errorf("only %d datagrams reached the client", st["engine.from_udp"])
				}
			}
			if who == "ours" {
				if grew > floodBound {
					t.Errorf("memory grew by %.1f MiB under the flood, want at most %d MiB", float64(grew)/(1<<20), floodBound>>20)
				}
				if m := receivedRE.FindStringSubmatch(pings); m == nil || m[1] == "0" {
					t.Errorf("ping during the flood: %q", pings)
				}
			}
		})
	}
	t.Logf("%d spoofed bubbles at a client with a public address:\n%s", floodSize, strings.Join(report, "\n"))
}

var receivedRE = regexp.MustCompile(`(\d+) received`)

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// waitDrained waits until the UDP socket on port has nothing left to read:
// the client has taken in the whole flood.
func waitDrained(ctx context.Context, t *testing.T, h *lab.Host, port uint16) {
	t.Helper()
	local := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := h.Run(ctx, "cat", "/proc/net/udp")
		if err != nil {
			t.Fatal(err)
		}
		busy := false
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			// sl local_address rem_address st tx_queue:rx_queue ...
			if len(f) > 4 && strings.Contains(f[1]+" ", local) && !strings.HasSuffix(f[4], ":00000000") {
				busy = true
			}
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client's socket still holds datagrams after 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

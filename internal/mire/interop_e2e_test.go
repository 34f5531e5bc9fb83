// SPDX-License-Identifier: MIT

//go:build e2e

package mire

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestPingResponders: our client (behind nat1) and Debian's Miredo client
// (behind nat2), both qualified with our server, and the native IPv6 host
// through our relay ping our responder (inet1) and Debian's teredo-mire
// (inet2), both running as nobody. Ours counts the answers, and holds no
// privilege.
func TestPingResponders(t *testing.T) {
	needTools(t, teredoMire, "setpriv")
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	server, relay := l.Host(lab.Server), l.Host(lab.Relay)
	// No control socket: its default path is shared by every namespace, and
	// other tests' daemons run at the same time.
	srv, err := l.Start(ctx, server, "our-server", lab.Binary(t, "miredo-server"), "-c", "/dev/null", "--control-socket", "", server.IPv4().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := server.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatalf("our server: %v\n%s", err, srv.Tail(10))
	}
	relayConf := filepath.Join(l.LogDir, "our-relay.conf")
	if err := os.WriteFile(relayConf, []byte(refmiredo.RelayConfig(relay.IPv4(), refmiredo.DefaultIfname)), 0o644); err != nil {
		t.Fatal(err)
	}
	rp, err := l.Start(ctx, relay, "our-relay", lab.Binary(t, "miredo-relay"), "-c", relayConf, "--control-socket", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.WaitLink(ctx, refmiredo.DefaultIfname); err != nil {
		t.Fatalf("our relay: %v\n%s", err, rp.Tail(10))
	}

	ours := startResponder(ctx, t, l, l.Host(lab.Inet1), true)
	startResponder(ctx, t, l, l.Host(lab.Inet2), false)
	targets := []struct {
		name string
		addr netip.Addr
	}{
		{"teredo-mire", NewHandler(l.Host(lab.Inet2).IPv4()).Address()},
		{"our", NewHandler(l.Host(lab.Inet1).IPv4()).Address()},
	}

	c1 := l.Host(lab.Client1)
	clientConf := filepath.Join(l.LogDir, "our-client.conf")
	if err := os.WriteFile(clientConf, []byte("RelayType client\nInterfaceName "+refmiredo.DefaultIfname+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Start(ctx, c1, "our-client", lab.Binary(t, "miredo-client"), "-c", clientConf, "--control-socket", "",
		"--server", server.IPv4().String(), "-p", filepath.Join(l.LogDir, "our-client.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refmiredo.Qualified(ctx, c1); err != nil {
		t.Fatalf("our client: %v\n%s", err, cp.Tail(20))
	}
	c2 := l.Host(lab.Client2)
	mp, err := refmiredo.StartClient(ctx, l, c2, "miredo-client", server.IPv4())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refmiredo.Qualified(ctx, c2); err != nil {
		t.Fatalf("Miredo's client: %v\n%s", err, mp.Tail(20))
	}

	for _, from := range []struct {
		name string
		h    *lab.Host
	}{{"our client", c1}, {"Miredo's client", c2}, {"native IPv6 through our relay", l.Host(lab.Native)}} {
		for _, to := range targets {
			start := time.Now()
			if err := from.h.Ping(ctx, to.addr); err != nil {
				t.Errorf("%s -> %s responder %v: %v", from.name, to.name, to.addr, err)
				continue
			}
			t.Logf("%s -> %s responder %v: answered in %v", from.name, to.name, to.addr, time.Since(start).Round(time.Millisecond))
		}
	}

	st, err := ours.Statistics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("our responder: %v", st)
	if st["stats.echo_replies"] < 3 || st["stats.bubbles"] < 3 {
		t.Errorf("our responder answered %d echo requests and %d bubbles, want 3 of each at least", st["stats.echo_replies"], st["stats.bubbles"])
	}
	checkUnprivileged(t, ours)
}

// checkUnprivileged fails t unless p runs as nobody with no capability.
func checkUnprivileged(t *testing.T, p *lab.Process) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.Pid()), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 5 && f[0] == "Uid:" && (f[1] != "65534" || f[2] != "65534"):
			t.Errorf("responder runs as %s", line)
		case len(f) == 2 && (f[0] == "CapEff:" || f[0] == "CapPrm:") && f[1] != "0000000000000000":
			t.Errorf("responder holds capabilities: %s", line)
		}
	}
}

// TestRepliesBounded: echo requests and junk sent to our responder with
// --reply-rate 20 in bursts of 100, as fast as one socket can: it answers at
// most its burst plus 20 a second of what it counted, every answer counted
// reaches the sender, the rest is counted as limited, the junk as
// malformed.
func TestRepliesBounded(t *testing.T) {
	needTools(t, "setpriv")
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h, pub := l.Host(lab.Inet1), l.Host(lab.Pub)
	const rate, echoes, junk = 20, 400, 100
	ours := startResponder(ctx, t, l, h, true, "--reply-rate", strconv.Itoa(rate))
	self := NewHandler(h.IPv4()).Address()
	to := netip.AddrPortFrom(h.IPv4(), MappedPort)
	c, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	// Rounds of 100, each let in before the next, so the socket's
	// receive queue (the kernel's default size: the responder may not
	// raise it without privileges) never overflows.
	var st map[string]uint64
	start := time.Now()
	for i := range echoes + junk {
		b := []byte("junk")
		if i%5 != 4 {
			b = echoReq(native, self, "flood")
		}
		if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
		for sent := uint64(i + 1); sent%100 == 0 && st["stats.received"] < sent; {
			if st, err = ours.Statistics(ctx); err != nil {
				t.Fatalf("%v (counted so far: %v)", err, st)
			}
		}
	}
	took := time.Since(start)
	replies := st["stats.echo_replies"]
	if most := rate + uint64(rate*took.Seconds()) + 1; replies > most || replies == 0 {
		t.Errorf("%d replies in %v at %d/s, want 1 to %d", replies, took.Round(time.Millisecond), rate, most)
	}
	if replies+st["stats.drop_rate_limited"] != echoes || st["stats.drop_malformed"] != junk {
		t.Errorf("counters %v: want %d replies and limited, %d malformed", st, echoes, junk)
	}
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got := uint64(0); got < replies; got++ {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("%d of %d counted replies arrived: %v", got, replies, err)
		}
	}
	t.Logf("%d echo requests and %d junk datagrams in %v: %d replies, %d limited, %d malformed",
		echoes, junk, took.Round(time.Millisecond), replies, st["stats.drop_rate_limited"], st["stats.drop_malformed"])
}

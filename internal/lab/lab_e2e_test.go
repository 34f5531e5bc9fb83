//go:build e2e

package lab_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// rootState is what the lab must never change in the root namespace.
func rootState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"addr"},
		{"-4", "route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
	} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		b.Write(out)
	}
	// Lifetimes of dynamic addresses count down by themselves.
	return regexp.MustCompile(`(?m)^\s*valid_lft.*\n`).ReplaceAllString(b.String(), "")
}

func TestReachability(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	before := rootState(t)
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	type route struct {
		from, to string
		dst      netip.Addr
	}
	h := l.Host
	routes := []route{
		{lab.Client1, lab.Inet1, h(lab.Inet1).IPv4()},
		{lab.Client1, lab.Server, h(lab.Server).IPv4s()[1]},
		{lab.Client1, lab.Relay, h(lab.Relay).IPv4()},
		{lab.Client1, lab.Pub, h(lab.Pub).IPv4()},
		{lab.Client2, lab.Inet2, h(lab.Inet2).IPv4s()[1]},
		{lab.Client2, lab.Server, h(lab.Server).IPv4()},
		{lab.Pub, lab.Inet1, h(lab.Inet1).IPv4()},
		{lab.Pub, "nat1 WAN", l.WAN(lab.NAT1)},
		{lab.Native, lab.Relay, h(lab.Relay).IPv6()},
		{lab.Native, lab.Server, h(lab.Server).IPv6()},
		{lab.Server, lab.Native, h(lab.Native).IPv6()},
	}
	for _, r := range routes {
		if err := h(r.from).Ping(ctx, r.dst); err != nil {
			t.Errorf("%s cannot reach %s (%s): %v", r.from, r.to, r.dst, err)
		}
	}
	// Private LANs are not routed on the Internet.
	short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
	if err := h(lab.Pub).Ping(short, h(lab.Client1).IPv4()); err == nil {
		t.Errorf("pub reached client1's private address %s", h(lab.Client1).IPv4())
	}
	cancelShort()

	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	for _, host := range l.Hosts() {
		if _, err := os.Stat(host.NetnsPath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still there after Close (%v)", host.Netns, err)
		}
	}
	if after := rootState(t); after != before {
		t.Errorf("root namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A stale lab with the same prefix is replaced, and two labs coexist.
func TestStaleAndConcurrent(t *testing.T) {
	a := lab.New(t, lab.Options{Prefix: "stale1"})
	_ = a // left open: the next New with the same prefix must remove it
	b := lab.New(t, lab.Options{Prefix: "stale1"})
	c := lab.New(t, lab.Options{Prefix: "other1"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, l := range []*lab.Lab{b, c} {
		if err := l.Host(lab.Client1).Ping(ctx, l.Host(lab.Server).IPv4()); err != nil {
			t.Errorf("lab %s: %v", l.Prefix, err)
		}
	}
}

// probe is what a NAT lets through, seen from a UDP socket on a client.
type probe struct {
	mapped1, mapped2 netip.AddrPort // as inet1 and inet2 saw the client
	local            netip.AddrPort // the client socket's own address
	fromSame         bool           // inet1 answering from the endpoint contacted
	fromOtherPort    bool           // inet1 from another port
	fromOtherAddr    bool           // an address the client never sent to
}

// runProbe sends from one client socket to inet1 and inet2, then has inet1's
// mapping reached from the contacted endpoint, from another port of the same
// address and from an address never contacted. The contacted endpoint
// answers last: once its packet is in, the others had every chance to
// arrive (they took the same path earlier), and a short grace covers CPU
// reordering.
func runProbe(t *testing.T, l *lab.Lab, client string) probe {
	t.Helper()
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	listen := func(h string, a netip.AddrPort) *net.UDPConn {
		c, err := l.Host(h).ListenUDP(a)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	inet1, inet2 := l.Host(lab.Inet1), l.Host(lab.Inet2)
	a := listen(lab.Inet1, netip.AddrPortFrom(inet1.IPv4(), 4000))
	a2 := listen(lab.Inet1, netip.AddrPortFrom(inet1.IPv4(), 4001))
	b := listen(lab.Inet2, netip.AddrPortFrom(inet2.IPv4s()[0], 4000))
	x := listen(lab.Inet2, netip.AddrPortFrom(inet2.IPv4s()[1], 4000))
	c := listen(client, netip.AddrPortFrom(l.Host(client).IPv4(), 0))

	var p probe
	p.local = c.LocalAddr().(*net.UDPAddr).AddrPort()
	recv := func(conn *net.UDPConn, wait time.Duration) (string, netip.AddrPort, bool) {
		buf := make([]byte, 64)
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return "", netip.AddrPort{}, false
		}
		return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), true
	}
	send := func(conn *net.UDPConn, msg string, to netip.AddrPort) {
		if _, err := conn.WriteToUDPAddrPort([]byte(msg), to); err != nil {
			t.Fatalf("send %s to %s: %v", msg, to, err)
		}
	}
	var ok bool
	send(c, "out", a.LocalAddr().(*net.UDPAddr).AddrPort())
	if _, p.mapped1, ok = recv(a, 2*time.Second); !ok {
		t.Fatal("inet1 got nothing from the client")
	}
	send(c, "out", b.LocalAddr().(*net.UDPAddr).AddrPort())
	if _, p.mapped2, ok = recv(b, 2*time.Second); !ok {
		t.Fatal("inet2 got nothing from the client")
	}
	send(x, "other-addr", p.mapped1)
	send(a2, "other-port", p.mapped1)
	send(a, "same", p.mapped1)
	wait := 2 * time.Second
	for range 3 {
		msg, _, ok := recv(c, wait)
		if !ok {
			break
		}
		switch msg {
		case "same":
			p.fromSame = true
			wait = 200 * time.Millisecond // the grace for stragglers
		case "other-port":
			p.fromOtherPort = true
		case "other-addr":
			p.fromOtherAddr = true
		}
	}
	return p
}

func TestNATModes(t *testing.T) {
	l := lab.New(t, lab.Options{})
	type want struct {
		independent                            bool // same mapping towards both hosts
		fromSame, fromOtherPort, fromOtherAddr bool
	}
	cases := []struct {
		name   string
		client string
		nat    string // "" for no NAT
		mode   lab.NATMode
		want   want
	}{
		{"none", lab.Pub, "", 0, want{true, true, true, true}},
		{"nat1/full-cone", lab.Client1, lab.NAT1, lab.FullCone, want{true, true, true, true}},
		{"nat1/address-restricted", lab.Client1, lab.NAT1, lab.AddressRestricted, want{true, true, true, false}},
		{"nat1/port-restricted", lab.Client1, lab.NAT1, lab.PortRestricted, want{true, true, false, false}},
		{"nat1/symmetric", lab.Client1, lab.NAT1, lab.Symmetric, want{false, true, false, false}},
		{"nat2/full-cone", lab.Client2, lab.NAT2, lab.FullCone, want{true, true, true, true}},
		{"nat2/address-restricted", lab.Client2, lab.NAT2, lab.AddressRestricted, want{true, true, true, false}},
		{"nat2/port-restricted", lab.Client2, lab.NAT2, lab.PortRestricted, want{true, true, false, false}},
		{"nat2/symmetric", lab.Client2, lab.NAT2, lab.Symmetric, want{false, true, false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			public := l.Host(tc.client).IPv4()
			if tc.nat != "" {
				if err := l.SetNAT(t.Context(), tc.nat, tc.mode); err != nil {
					t.Fatal(err)
				}
				public = l.WAN(tc.nat)
				if got := l.NATMode(tc.nat); got != tc.mode {
					t.Errorf("NATMode = %v, want %v", got, tc.mode)
				}
			}
			p := runProbe(t, l, tc.client)
			t.Logf("local %s, seen as %s by inet1 and %s by inet2; from same %v, other port %v, other address %v",
				p.local, p.mapped1, p.mapped2, p.fromSame, p.fromOtherPort, p.fromOtherAddr)
			if p.mapped1.Addr() != public || p.mapped2.Addr() != public {
				t.Errorf("mapped addresses %s, %s; want %s", p.mapped1, p.mapped2, public)
			}
			got := want{p.mapped1 == p.mapped2, p.fromSame, p.fromOtherPort, p.fromOtherAddr}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if tc.want.independent && p.mapped1.Port() != p.local.Port() {
				t.Errorf("port not preserved: %d became %d", p.local.Port(), p.mapped1.Port())
			}
		})
	}

	t.Run("rebind", func(t *testing.T) {
		if err := l.SetNAT(t.Context(), lab.NAT1, lab.PortRestricted); err != nil {
			t.Fatal(err)
		}
		before := runProbe(t, l, lab.Client1).mapped1
		if err := l.Rebind(t.Context(), lab.NAT1); err != nil {
			t.Fatal(err)
		}
		after := runProbe(t, l, lab.Client1).mapped1
		if after.Addr() == before.Addr() || after.Addr() != l.WAN(lab.NAT1) {
			t.Errorf("after rebind mapped to %s (before %s, WAN now %s)", after, before, l.WAN(lab.NAT1))
		}
		if err := l.Rebind(t.Context(), lab.NAT1); err != nil {
			t.Fatal(err)
		}
		if again := runProbe(t, l, lab.Client1).mapped1; again.Addr() != before.Addr() {
			t.Errorf("second rebind mapped to %s, want back to %s", again, before.Addr())
		}
	})
}

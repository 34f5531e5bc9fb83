// SPDX-License-Identifier: MIT

//go:build e2e

package lab_test

import (
	"context"
	"errors"
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

func probe(t *testing.T, l *lab.Lab, host string) lab.NATProbe {
	t.Helper()
	p, err := l.ProbeNAT(t.Context(), host)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNATModes(t *testing.T) {
	l := lab.New(t, lab.Options{})
	type want struct {
		independent                            bool // same mapping towards all three destinations
		fromSame, fromOtherPort, fromOtherAddr bool
	}
	cone := want{true, true, true, true}
	addrRestricted := want{true, true, true, false}
	portRestricted := want{true, true, false, false}
	symmetric := want{false, true, false, false}
	type tcase struct {
		name   string
		client string
		nat    string // "" for no NAT
		mode   lab.NATMode
		want   want
	}
	cases := []tcase{{"none", lab.Pub, "", 0, cone}}
	wants := map[lab.NATMode]want{lab.FullCone: cone, lab.AddressRestricted: addrRestricted, lab.PortRestricted: portRestricted,
		lab.Symmetric: symmetric, lab.SymmetricPortPreserving: symmetric, lab.SymmetricSequential: symmetric, lab.SymmetricUPnP: symmetric}
	for _, nc := range []struct{ nat, client string }{{lab.NAT1, lab.Client1}, {lab.NAT2, lab.Client2}, {lab.NAT1, lab.Client3}} {
		for _, m := range lab.NATModes() {
			cases = append(cases, tcase{nc.nat + "/" + nc.client + "/" + m.String(), nc.client, nc.nat, m, wants[m]})
		}
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
			p := probe(t, l, tc.client)
			t.Logf("local %s, seen as %s by inet1, %s and %s by inet2; from same %v, other port %v, other address %v",
				p.Local, p.Mapped1, p.Mapped2, p.Mapped3, p.FromSame, p.FromOtherPort, p.FromOtherAddr)
			for _, m := range []netip.AddrPort{p.Mapped1, p.Mapped2, p.Mapped3} {
				if m.Addr() != public {
					t.Errorf("mapped address %s; want %s", m, public)
				}
			}
			got := want{p.EndpointIndependent(), p.FromSame, p.FromOtherPort, p.FromOtherAddr}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			// A UPnP gateway does not change what an unmapped socket sees.
			wantMode := tc.mode.String()
			switch {
			case tc.nat == "":
				wantMode = "none"
			case tc.mode == lab.SymmetricUPnP:
				wantMode = lab.Symmetric.String()
			}
			if p.Mode() != wantMode {
				t.Errorf("probe classifies the NAT as %s, want %s", p.Mode(), wantMode)
			}
			if tc.want.independent && p.Mapped1.Port() != p.Local.Port() {
				t.Errorf("port not preserved: %d became %d", p.Local.Port(), p.Mapped1.Port())
			}
			switch tc.mode {
			case lab.SymmetricPortPreserving:
				// The first destination sees the local port, the others not:
				// it is taken.
				if p.Mapped1.Port() != p.Local.Port() || p.Mapped2.Port() == p.Local.Port() || p.Mapped3.Port() == p.Local.Port() {
					t.Errorf("port-preserving: local port %d mapped to %d, %d, %d", p.Local.Port(), p.Mapped1.Port(), p.Mapped2.Port(), p.Mapped3.Port())
				}
			case lab.SymmetricSequential:
				// A fresh rule counts from the first port: this probe's flows
				// are the box's first three.
				if p.Mapped1.Port() != 20000 || !p.Sequential() {
					t.Errorf("sequential: mapped to ports %d, %d, %d; want 20000, 20001, 20002", p.Mapped1.Port(), p.Mapped2.Port(), p.Mapped3.Port())
				}
			}
		})
	}

	t.Run("rebind", func(t *testing.T) {
		if err := l.SetNAT(t.Context(), lab.NAT1, lab.PortRestricted); err != nil {
			t.Fatal(err)
		}
		before := probe(t, l, lab.Client1).Mapped1
		if err := l.Rebind(t.Context(), lab.NAT1); err != nil {
			t.Fatal(err)
		}
		after := probe(t, l, lab.Client1).Mapped1
		if after.Addr() == before.Addr() || after.Addr() != l.WAN(lab.NAT1) {
			t.Errorf("after rebind mapped to %s (before %s, WAN now %s)", after, before, l.WAN(lab.NAT1))
		}
		if err := l.Rebind(t.Context(), lab.NAT1); err != nil {
			t.Fatal(err)
		}
		if again := probe(t, l, lab.Client1).Mapped1; again.Addr() != before.Addr() {
			t.Errorf("second rebind mapped to %s, want back to %s", again, before.Addr())
		}
		// A flush forgets flows but not the rules: same address again.
		if err := l.FlushConntrack(lab.NAT1); err != nil {
			t.Fatal(err)
		}
		if again := probe(t, l, lab.Client1).Mapped1; again.Addr() != before.Addr() {
			t.Errorf("after a conntrack flush mapped to %s, want %s", again, before.Addr())
		}
	})
}

// Two clients behind one NAT (client1 and client3 behind nat1) reach each
// other's LAN address but not each other's mapping, in every mode: the lab's
// NATs do not hairpin (RFC 4380 §8.3, the case of RFC 6081 §3.5).
func TestSharedNATDoesNotHairpin(t *testing.T) {
	l := lab.New(t, lab.Options{})
	for _, m := range lab.NATModes() {
		t.Run(m.String(), func(t *testing.T) {
			if err := l.SetNAT(t.Context(), lab.NAT1, m); err != nil {
				t.Fatal(err)
			}
			p, err := l.ProbeHairpin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("client1 mapped to %s, client3 to %s; hairpin %v, LAN %v", p.Mapped1, p.Mapped3, p.Hairpin, p.Local)
			if p.Mapped1.Addr() != l.WAN(lab.NAT1) || p.Mapped3.Addr() != l.WAN(lab.NAT1) || p.Mapped1 == p.Mapped3 {
				t.Errorf("want two mappings on %s, got %s and %s", l.WAN(lab.NAT1), p.Mapped1, p.Mapped3)
			}
			if p.Hairpin || !p.Local {
				t.Errorf("hairpin %v, LAN %v; want no hairpin and the LAN both ways", p.Hairpin, p.Local)
			}
		})
	}
}

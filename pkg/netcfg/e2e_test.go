// SPDX-License-Identifier: MIT

//go:build e2e

package netcfg_test

// End-to-end tests of the netlink configuration: each makes its own network
// namespace, leaves a TUN interface in it as 'ip tuntap add' or a crashed
// daemon would, holds it open where a running daemon would, and configures
// it. The device package tundev has its own tests of packets through the
// interface. Nothing is attached to the root namespace. Needs root
// (CAP_NET_ADMIN, CAP_SYS_ADMIN).

import (
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/internal/nstest"
)

func TestE2EConfigure(t *testing.T) {
	ns, h, nsName := nstest.NewNetNS(t)
	nstest.HoldTUN(t, ns, netcfg.DefaultName)
	l, err := netcfg.NewLink(h, netcfg.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	nstest.Configure(t, h, l)

	nl, err := h.LinkByName(netcfg.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if mtu := nl.Attrs().MTU; mtu != 1280 {
		t.Errorf("MTU %d; want 1280", mtu)
	}
	if err := l.SetMTU(1279); !errors.Is(err, netcfg.ErrInvalidMTU) {
		t.Errorf("SetMTU(1279) = %v", err)
	}

	// Addresses: present, flagged NODAD, never tentative.
	addrs, err := l.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []netip.Prefix{netip.PrefixFrom(nstest.TunAddr, 128), nstest.LLAddr} {
		if !slices.Contains(addrs, want) {
			t.Errorf("Addrs() = %v, missing %v", addrs, want)
		}
	}
	raw, err := h.AddrList(nl, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range raw {
		if a.IP.Equal(nstest.TunAddr.AsSlice()) && (a.Flags&unix.IFA_F_NODAD == 0 || a.Flags&unix.IFA_F_TENTATIVE != 0) {
			t.Errorf("%v flags %#x: want nodad, not tentative", a.IPNet, a.Flags)
		}
	}

	routes, err := l.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []netcfg.Route{nstest.DefRoute, nstest.TeredoNet} {
		if !slices.Contains(routes, want) {
			t.Errorf("Routes() = %v, missing %v", routes, want)
		}
	}

	// The same, as iproute2 sees it.
	if ip, err := exec.LookPath("ip"); err == nil {
		out, err := exec.Command(ip, "-n", nsName, "-6", "addr", "show", "dev", l.Name()).CombinedOutput()
		if err != nil {
			t.Errorf("ip -6 addr: %v\n%s", err, out)
		}
		// Ours must be there and usable at once; the kernel's own
		// link-local may still be tentative.
		for _, want := range []string{nstest.TunAddr.String() + "/128", nstest.LLAddr.String()} {
			i := strings.Index(string(out), "inet6 "+want+" ")
			line, _, _ := strings.Cut(string(out[max(i, 0):]), "\n")
			if i < 0 || !strings.Contains(line, "nodad") || strings.Contains(line, "tentative") {
				t.Errorf("ip -6 addr: want %s, nodad, not tentative:\n%s", want, out)
			}
		}
		out, err = exec.Command(ip, "-n", nsName, "-6", "route", "show", "dev", l.Name()).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "default metric 1029") || !strings.Contains(string(out), "2001::/32 metric 1024") {
			t.Errorf("ip -6 route: %v\n%s", err, out)
		}
	}
}

// A crashed run leaves a persistent interface behind with its addresses and
// routes; the next start attaches to it and cleans it.
func TestE2ECleanStart(t *testing.T) {
	ns, h, _ := nstest.NewNetNS(t)
	nstest.MakePersistentTUN(t, ns, "teredo")
	l, err := netcfg.NewLink(h, "teredo")
	if err != nil {
		t.Fatal(err)
	}
	nstest.Configure(t, h, l) // the "crashed run"

	nstest.HoldTUN(t, ns, "teredo") // the next start attaches to the leftover
	cleaned, err := l.CleanStart()
	if err != nil {
		t.Fatalf("CleanStart: %v", err)
	}
	for _, want := range []netip.Prefix{netip.PrefixFrom(nstest.TunAddr, 128), nstest.LLAddr} {
		if !slices.Contains(cleaned.Addrs, want) {
			t.Errorf("Cleaned.Addrs = %v, missing %v", cleaned.Addrs, want)
		}
	}
	for _, want := range []netcfg.Route{nstest.DefRoute, nstest.TeredoNet} {
		if !slices.Contains(cleaned.Routes, want) {
			t.Errorf("Cleaned.Routes = %v, missing %v", cleaned.Routes, want)
		}
	}
	if addrs, err := l.Addrs(); err != nil || len(addrs) != 0 {
		t.Errorf("after CleanStart Addrs() = %v, %v; want none", addrs, err)
	}
	routes, err := l.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r == nstest.DefRoute || r == nstest.TeredoNet {
			t.Errorf("route %v survived CleanStart (all: %v)", r, routes)
		}
	}
	// The interface is usable again from a clean state.
	nstest.Configure(t, h, l)
}

func TestE2EDeleteStaleLink(t *testing.T) {
	ns, h, _ := nstest.NewNetNS(t)
	if gone, err := netcfg.DeleteStaleLink(ns, "teredo"); err != nil || gone {
		t.Fatalf("no interface: DeleteStaleLink = %v, %v", gone, err)
	}
	nstest.MakePersistentTUN(t, ns, "teredo")
	if gone, err := netcfg.DeleteStaleLink(ns, "teredo"); err != nil || !gone {
		t.Fatalf("stale TUN: DeleteStaleLink = %v, %v", gone, err)
	}
	nstest.WaitLinkGone(t, h, "teredo")

	nstest.HoldTUN(t, ns, "teredo")
	if gone, err := netcfg.DeleteStaleLink(ns, "teredo"); !errors.Is(err, netcfg.ErrNameTaken) || gone {
		t.Errorf("held TUN: DeleteStaleLink = %v, %v; want ErrNameTaken", gone, err)
	}
	if _, err := h.LinkByName("teredo"); err != nil {
		t.Errorf("held TUN damaged: %v", err)
	}
}

func TestE2EDeleteStaleLinkSparesOtherKinds(t *testing.T) {
	ns, h, _ := nstest.NewNetNS(t)
	if !nstest.AddNonTUN(t, h, "teredo2") {
		t.Skip("no interface of another kind to refuse")
	}
	if gone, err := netcfg.DeleteStaleLink(ns, "teredo2"); !errors.Is(err, netcfg.ErrNameTaken) || gone {
		t.Errorf("DeleteStaleLink(dummy) = %v, %v; want ErrNameTaken", gone, err)
	}
}

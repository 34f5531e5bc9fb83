// SPDX-License-Identifier: MIT

// Package nstest holds what the end-to-end tests of netcfg and of its
// device package tundev share: a private network namespace per test, TUN
// interfaces left behind or held open as a crashed or running daemon would
// leave them, and Miredo's client configuration with the addresses it
// uses. Nothing here touches the root namespace.
package nstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
)

// Addresses and routes of Miredo's client configuration (Configure).
var (
	TunAddr   = netip.MustParseAddr("2001:0:c000:201:8000:f227:3fff:fdfe") // a Teredo address (server 192.0.2.1)
	LLAddr    = netip.MustParsePrefix("fe80::ffff:ffff:ffff/64")           // Miredo's link-local
	Native    = netip.MustParseAddr("2001:db8::1")                         // a native IPv6 host
	Peer      = netip.MustParseAddr("2001:0:c000:201:0:f227:3fff:fd01")    // another Teredo client
	DefRoute  = netcfg.Route{Prefix: netip.MustParsePrefix("::/0"), Metric: 1029}
	TeredoNet = netcfg.Route{Prefix: netip.MustParsePrefix("2001::/32"), Metric: 1024}
)

// SkipUnlessRoot skips a test that cannot make namespaces or TUN devices.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and TUN devices: run 'sudo go test -tags e2e ./pkg/netcfg/...' (or make check)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun (%v): run 'modprobe tun'", err)
	}
}

// NewNetNS creates a named network namespace for the test and a netlink
// handle into it, and returns both with the namespace's name; all go away
// at cleanup.
func NewNetNS(t testing.TB) (netns.NsHandle, *netlink.Handle, string) {
	t.Helper()
	SkipUnlessRoot(t)
	name := fmt.Sprintf("netcfg-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	type result struct {
		ns  netns.NsHandle
		err error
	}
	resc := make(chan result, 1)
	go func() {
		// netns.NewNamed switches the thread into the new namespace; switch
		// back, or leave the thread locked so the runtime discards it.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if rerr := netns.Set(orig); rerr != nil {
			resc <- result{ns, errors.Join(err, rerr)}
			return
		}
		runtime.UnlockOSThread()
		resc <- result{ns, err}
	}()
	res := <-resc
	if res.ns.IsOpen() {
		t.Cleanup(func() {
			res.ns.Close()
			if err := netns.DeleteNamed(name); err != nil {
				t.Errorf("delete netns %s: %v", name, err)
			}
		})
	}
	if res.err != nil {
		t.Fatalf("create netns %s: %v", name, res.err)
	}
	h, err := netlink.NewHandleAt(res.ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	return res.ns, h, name
}

// Configure gives the link Miredo's client configuration.
func Configure(t testing.TB, h *netlink.Handle, l *netcfg.Link) {
	t.Helper()
	steps := []struct {
		what string
		do   func() error
	}{
		{"SetMTU", func() error { return l.SetMTU(1280) }},
		{"AddAddr", func() error { return l.AddAddr(netip.PrefixFrom(TunAddr, 128)) }},
		{"AddAddr ll", func() error { return l.AddAddr(LLAddr) }},
		{"SetUp", l.SetUp},
		{"AddRoute 2001::/32", func() error { return l.AddRoute(TeredoNet) }},
		{"AddRoute default", func() error { return l.AddRoute(DefRoute) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
	waitLocal(t, h, TunAddr)
}

// waitLocal waits until the kernel delivers packets for a to
// us. An IPv6 address can be bound as soon as it is added, but its local
// route is inserted afterwards, from the kernel's address work queue: a
// packet that arrives in between is taken for one to forward and dropped
// (Ip6InAddrErrors), which failed TestE2EDataPath about once in 30 runs.
func waitLocal(t testing.TB, h *netlink.Handle, a netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs, err := h.RouteGet(net.IP(a.AsSlice()))
		if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no local route for %v after 5 s: %v %v", a, rs, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// MakePersistentTUN leaves a persistent TUN in ns, as 'ip tuntap add' or a
// crashed daemon with persist set would.
func MakePersistentTUN(t testing.TB, ns netns.NsHandle, name string) {
	t.Helper()
	err := netcfg.RunInNetNS(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		return h.LinkAdd(&netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: name},
			Mode:      netlink.TUNTAP_MODE_TUN,
			Flags:     netlink.TUNTAP_NO_PI,
		})
	})
	if err != nil {
		t.Fatalf("persistent TUN %s: %v", name, err)
	}
}

// HoldTUN attaches to the TUN called name in ns (creating it if there is
// none) and keeps it open until cleanup, as a running daemon holds its
// interface; the interface has a carrier while held. It leaves the persist
// flag alone.
func HoldTUN(t testing.TB, ns netns.NsHandle, name string) {
	t.Helper()
	var fd int
	err := netcfg.RunInNetNS(ns, func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
		}
		return err
	})
	if err != nil {
		t.Fatalf("hold TUN %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
}

// AddNonTUN puts an interface of another kind under name: a dummy, or a
// veth where the dummy driver is missing. It reports false, and logs why,
// when neither can be made here.
func AddNonTUN(t testing.TB, h *netlink.Handle, name string) bool {
	t.Helper()
	err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
	if err == nil {
		return true
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "-peer"}
	if err2 := h.LinkAdd(veth); err2 != nil {
		t.Logf("no dummy (%v) or veth (%v) interfaces here", err, err2)
		return false
	}
	return true
}

// WaitLinkGone fails the test unless the interface called name disappears
// within 5 s.
func WaitLinkGone(t testing.TB, h *netlink.Handle, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := h.LinkByName(name); err != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s still present 5s after Close", name)
}

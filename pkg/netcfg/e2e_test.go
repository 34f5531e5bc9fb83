// SPDX-License-Identifier: MIT

//go:build e2e

package netcfg

// End-to-end tests: each makes its own network namespace, creates the TUN in
// it, configures it through netlink and moves packets through it. Nothing is
// attached to the root namespace. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	tunAddr   = netip.MustParseAddr("2001:0:c000:201:8000:f227:3fff:fdfe") // a Teredo address (server 192.0.2.1)
	llAddr    = netip.MustParsePrefix("fe80::ffff:ffff:ffff/64")           // Miredo's link-local
	native    = netip.MustParseAddr("2001:db8::1")                         // a native IPv6 host
	peer      = netip.MustParseAddr("2001:0:c000:201:0:f227:3fff:fd01")    // another Teredo client
	defRoute  = Route{netip.MustParsePrefix("::/0"), 1029}
	teredoNet = Route{netip.MustParsePrefix("2001::/32"), 1024}
)

func skipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and TUN devices: run 'sudo go test -tags e2e ./pkg/netcfg/' (or make check)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun (%v): run 'modprobe tun'", err)
	}
}

// newNetNS creates a named network namespace for the test and a netlink
// handle into it; both go away at cleanup.
func newNetNS(t testing.TB) (netns.NsHandle, *netlink.Handle, string) {
	t.Helper()
	skipUnlessRoot(t)
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

func createTUN(t *testing.T, ns netns.NsHandle, name string) Device {
	t.Helper()
	dev, err := CreateTUNInNetNS(ns, name)
	if err != nil {
		t.Fatalf("CreateTUNInNetNS(%q): %v", name, err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// configure gives the link Miredo's client configuration.
func configure(t testing.TB, l *Link) {
	t.Helper()
	steps := []struct {
		what string
		do   func() error
	}{
		{"SetMTU", func() error { return l.SetMTU(1280) }},
		{"AddAddr", func() error { return l.AddAddr(netip.PrefixFrom(tunAddr, 128)) }},
		{"AddAddr ll", func() error { return l.AddAddr(llAddr) }},
		{"SetUp", l.SetUp},
		{"AddRoute 2001::/32", func() error { return l.AddRoute(teredoNet) }},
		{"AddRoute default", func() error { return l.AddRoute(defRoute) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
}

func TestE2EConfigureAndDataPath(t *testing.T) {
	ns, h, nsName := newNetNS(t)
	dev := createTUN(t, ns, "")
	if dev.Name() != DefaultName || dev.BatchSize() != 1 {
		t.Fatalf("Name %q BatchSize %d", dev.Name(), dev.BatchSize())
	}
	l, err := NewLink(h, dev.Name())
	if err != nil {
		t.Fatal(err)
	}
	configure(t, l)

	if mtu, err := dev.MTU(); err != nil || mtu != 1280 {
		t.Errorf("MTU() = %d, %v; want 1280", mtu, err)
	}
	if err := l.SetMTU(1279); !errors.Is(err, ErrInvalidMTU) {
		t.Errorf("SetMTU(1279) = %v", err)
	}

	// Addresses: present, flagged NODAD, never tentative.
	addrs, err := l.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []netip.Prefix{netip.PrefixFrom(tunAddr, 128), llAddr} {
		if !slices.Contains(addrs, want) {
			t.Errorf("Addrs() = %v, missing %v", addrs, want)
		}
	}
	nl, _ := h.LinkByName(dev.Name())
	raw, err := h.AddrList(nl, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range raw {
		if a.IP.Equal(tunAddr.AsSlice()) && (a.Flags&unix.IFA_F_NODAD == 0 || a.Flags&unix.IFA_F_TENTATIVE != 0) {
			t.Errorf("%v flags %#x: want nodad, not tentative", a.IPNet, a.Flags)
		}
	}

	routes, err := l.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []Route{defRoute, teredoNet} {
		if !slices.Contains(routes, want) {
			t.Errorf("Routes() = %v, missing %v", routes, want)
		}
	}

	// The same, as iproute2 sees it.
	if ip, err := exec.LookPath("ip"); err == nil {
		out, err := exec.Command(ip, "-n", nsName, "-6", "addr", "show", "dev", dev.Name()).CombinedOutput()
		if err != nil {
			t.Errorf("ip -6 addr: %v\n%s", err, out)
		}
		// Ours must be there and usable at once; the kernel's own
		// link-local may still be tentative.
		for _, want := range []string{tunAddr.String() + "/128", llAddr.String()} {
			i := strings.Index(string(out), "inet6 "+want+" ")
			line, _, _ := strings.Cut(string(out[max(i, 0):]), "\n")
			if i < 0 || !strings.Contains(line, "nodad") || strings.Contains(line, "tentative") {
				t.Errorf("ip -6 addr: want %s, nodad, not tentative:\n%s", want, out)
			}
		}
		out, err = exec.Command(ip, "-n", nsName, "-6", "route", "show", "dev", dev.Name()).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "default metric 1029") || !strings.Contains(string(out), "2001::/32 metric 1024") {
			t.Errorf("ip -6 route: %v\n%s", err, out)
		}
	}

	// A socket inside the namespace, bound to the tunnel address.
	var conn *net.UDPConn
	err = RunInNetNS(ns, func() error {
		var err error
		conn, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tunAddr, 40000)))
		return err
	})
	if err != nil {
		t.Fatalf("listen in netns: %v", err)
	}
	t.Cleanup(func() { conn.Close() })

	// Outbound: the kernel routes both packets into the TUN, the native one
	// by the default route and the Teredo one by 2001::/32.
	for _, dst := range []netip.Addr{native, peer} {
		to := netip.AddrPortFrom(dst, 3544)
		payload := []byte("to " + dst.String())
		if _, err := conn.WriteToUDPAddrPort(payload, to); err != nil {
			t.Fatalf("send to %v: %v", to, err)
		}
		got := readUDP(t, dev, to)
		if got.src != netip.AddrPortFrom(tunAddr, 40000) || !bytes.Equal(got.payload, payload) {
			t.Errorf("read %v -> %v %q, want from %v %q", got.src, got.dst, got.payload, tunAddr, payload)
		}
	}

	// Inbound: a packet written into the TUN (with headroom in front)
	// reaches the socket.
	const offset = 16
	from := netip.AddrPortFrom(native, 3544)
	pkt := buildUDP6(from, netip.AddrPortFrom(tunAddr, 40000), []byte("pong"))
	buf := append(make([]byte, offset), pkt...)
	if n, err := dev.Write([][]byte{buf}, offset); err != nil || n != 1 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rb := make([]byte, 1500)
	n, src, err := conn.ReadFromUDPAddrPort(rb)
	if err != nil {
		t.Fatalf("receive on socket: %v", err)
	}
	if src != from || string(rb[:n]) != "pong" {
		t.Errorf("socket got %q from %v, want \"pong\" from %v", rb[:n], src, from)
	}
}

type udpPacket struct {
	src, dst netip.AddrPort
	payload  []byte
}

// readUDP reads from the TUN until a UDP packet to dst arrives, skipping the
// router solicitations and MLD reports the kernel sends on its own; bounded
// in packets and time. On timeout the device is closed to end the read.
func readUDP(t *testing.T, dev Device, dst netip.AddrPort) udpPacket {
	t.Helper()
	found := make(chan udpPacket, 1)
	failed := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 2000)}
		sizes := make([]int, 1)
		const offset = 8
		for range 100 {
			n, err := dev.Read(bufs, sizes, offset)
			if err != nil {
				failed <- err
				return
			}
			if n != 1 {
				failed <- fmt.Errorf("Read returned %d packets", n)
				return
			}
			if p, ok := parseUDP6(bufs[0][offset : offset+sizes[0]]); ok && p.dst == dst {
				found <- p
				return
			}
		}
		failed <- errors.New("100 packets without the expected one")
	}()
	select {
	case p := <-found:
		return p
	case err := <-failed:
		t.Fatalf("reading TUN for %v: %v", dst, err)
	case <-time.After(5 * time.Second):
		dev.Close()
		t.Fatalf("no packet for %v on the TUN within 5s", dst)
	}
	return udpPacket{}
}

func parseUDP6(b []byte) (udpPacket, bool) {
	if len(b) < 48 || b[0]>>4 != 6 || b[6] != unix.IPPROTO_UDP {
		return udpPacket{}, false
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	udp := b[40:]
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return udpPacket{}, false
	}
	return udpPacket{
		src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:2])),
		dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:4])),
		payload: udp[8:ulen],
	}, true
}

// buildUDP6 builds an IPv6/UDP packet with a correct checksum.
func buildUDP6(src, dst netip.AddrPort, payload []byte) []byte {
	ulen := 8 + len(payload)
	b := make([]byte, 40+ulen)
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:6], uint16(ulen))
	b[6] = unix.IPPROTO_UDP
	b[7] = 64
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	u := b[40:]
	binary.BigEndian.PutUint16(u[0:2], src.Port())
	binary.BigEndian.PutUint16(u[2:4], dst.Port())
	binary.BigEndian.PutUint16(u[4:6], uint16(ulen))
	copy(u[8:], payload)

	var sum uint32
	add := func(p []byte) {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(p[i:]))
		}
		if len(p)%2 == 1 {
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	add(b[8:40]) // pseudo-header addresses
	sum += uint32(ulen) + unix.IPPROTO_UDP
	add(u)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	cs := ^uint16(sum)
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], cs)
	return b
}

func TestE2ECloseUnblocksRead(t *testing.T) {
	for _, backend := range Backends() {
		t.Run(string(backend), func(t *testing.T) {
			ns, _, _ := newNetNS(t)
			devs, err := OpenInNetNS(ns, "teredo", Options{Backend: backend})
			if err != nil {
				t.Fatal(err)
			}
			dev := devs[0]
			t.Cleanup(func() { dev.Close() })
			errc := make(chan error, 1)
			go func() {
				_, err := dev.Read([][]byte{make([]byte, 1500)}, make([]int, 1), 0)
				errc <- err
			}()
			if err := dev.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Read after Close = %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Read still blocked 5s after Close")
			}
			if err := dev.Close(); err != nil {
				t.Errorf("second Close = %v", err)
			}
			if _, err := dev.Write([][]byte{make([]byte, 40)}, 0); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write after Close = %v", err)
			}
			if _, err := dev.MTU(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("MTU after Close = %v", err)
			}
		})
	}
}

// A crashed run leaves a persistent interface behind with its addresses and
// routes; the next start attaches to it and cleans it.
func TestE2ECleanStart(t *testing.T) {
	ns, h, _ := newNetNS(t)
	makePersistentTUN(t, ns, "teredo")
	l, err := NewLink(h, "teredo")
	if err != nil {
		t.Fatal(err)
	}
	configure(t, l) // the "crashed run"

	dev := createTUN(t, ns, "teredo") // attaches to the leftover
	cleaned, err := l.CleanStart()
	if err != nil {
		t.Fatalf("CleanStart: %v", err)
	}
	for _, want := range []netip.Prefix{netip.PrefixFrom(tunAddr, 128), llAddr} {
		if !slices.Contains(cleaned.Addrs, want) {
			t.Errorf("Cleaned.Addrs = %v, missing %v", cleaned.Addrs, want)
		}
	}
	for _, want := range []Route{defRoute, teredoNet} {
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
		if r == defRoute || r == teredoNet {
			t.Errorf("route %v survived CleanStart (all: %v)", r, routes)
		}
	}
	// The interface is usable again from a clean state.
	configure(t, l)
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	// water cleared the persist flag on attach: closing removed it.
	waitLinkGone(t, h, "teredo")
}

func TestE2EDeleteStaleLink(t *testing.T) {
	ns, h, _ := newNetNS(t)
	if gone, err := DeleteStaleLink(ns, "teredo"); err != nil || gone {
		t.Fatalf("no interface: DeleteStaleLink = %v, %v", gone, err)
	}
	makePersistentTUN(t, ns, "teredo")
	if gone, err := DeleteStaleLink(ns, "teredo"); err != nil || !gone {
		t.Fatalf("stale TUN: DeleteStaleLink = %v, %v", gone, err)
	}
	waitLinkGone(t, h, "teredo")

	dev := createTUN(t, ns, "teredo")
	if gone, err := DeleteStaleLink(ns, "teredo"); !errors.Is(err, ErrNameTaken) || gone {
		t.Errorf("held TUN: DeleteStaleLink = %v, %v; want ErrNameTaken", gone, err)
	}
	if _, err := dev.MTU(); err != nil {
		t.Errorf("held TUN damaged: %v", err)
	}
}

func TestE2ENameTaken(t *testing.T) {
	ns, h, _ := newNetNS(t)
	createTUN(t, ns, "teredo")
	_, err := CreateTUNInNetNS(ns, "teredo")
	if !errors.Is(err, ErrNameTaken) || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("second CreateTUN = %v, want ErrNameTaken wrapping EBUSY", err)
	}

	// A device of another kind under the name: a dummy, or a veth where
	// the dummy driver is missing.
	if err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "teredo2"}}); err != nil {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "teredo2"}, PeerName: "teredo2-peer"}
		if err2 := h.LinkAdd(veth); err2 != nil {
			t.Logf("no dummy (%v) or veth (%v) interfaces here: skipping the non-TUN case", err, err2)
			return
		}
	}
	_, err = CreateTUNInNetNS(ns, "teredo2")
	if !errors.Is(err, ErrNameTaken) {
		t.Errorf("CreateTUN over a dummy = %v, want ErrNameTaken", err)
	}
	if gone, err := DeleteStaleLink(ns, "teredo2"); !errors.Is(err, ErrNameTaken) || gone {
		t.Errorf("DeleteStaleLink(dummy) = %v, %v; want ErrNameTaken", gone, err)
	}
}

// makePersistentTUN leaves a persistent TUN in ns, as 'ip tuntap add' or a
// crashed daemon with persist set would.
func makePersistentTUN(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	err := RunInNetNS(ns, func() error {
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

func waitLinkGone(t *testing.T, h *netlink.Handle, name string) {
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

// SPDX-License-Identifier: MIT

//go:build e2e && linux

package xdpio

// End-to-end tests in the namespace lab (internal/lab): the steering program
// on the server host's veth, Conns echoing what they read, and plain kernel
// sockets on the other hosts as peers. pub is on the server's network (next
// hop: the peer itself); client1 is behind nat1, reached through the router
// (next hop: the gateway).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"golang.org/x/sys/unix"
)

// attachServer attaches a Group to the lab server's uplink, on both of its
// addresses, and closes it when the test ends.
func attachServer(t testing.TB, l *lab.Lab, cfg Config) *Group {
	t.Helper()
	srv := l.Host(lab.Server)
	cfg.Interface = srv.Ifname
	if cfg.Addrs == nil {
		cfg.Addrs = srv.IPv4s()
	}
	var g *Group
	err := srv.Do(func() error {
		var err error
		g, err = Attach(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// echo runs one loop per Conn that sends every datagram back to where it
// came from, from the address it was sent to, until the Conn closes.
func echo(t testing.TB, g *Group, bufSize int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range g.Conns() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveEcho(c, bufSize); !errors.Is(err, net.ErrClosed) {
				t.Errorf("echo: %v", err)
			}
		}()
	}
	t.Cleanup(func() {
		g.Close()
		wg.Wait()
	})
}

// serveEcho echoes what c reads until an error, which it returns.
func serveEcho(c *Conn, bufSize int) error {
	msgs := make([]Message, MaxBatch)
	for i := range msgs {
		msgs[i].Buf = make([]byte, bufSize)
	}
	for {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			return err
		}
		if _, err := c.WriteBatch(msgs[:n]); errors.Is(err, net.ErrClosed) {
			return err
		}
	}
}

// exchange sends count datagrams of size bytes from c to each of dsts,
// resending the unanswered ones every 200 ms, until each has come back
// intact from the address it was sent to, or 10 s pass.
func exchange(t *testing.T, c *net.UDPConn, dsts []netip.AddrPort, count, size int) {
	t.Helper()
	type key struct {
		dst netip.AddrPort
		seq int
	}
	payload := func(k key) []byte {
		b := bytes.Repeat([]byte{byte(k.seq)}, size)
		copy(b, fmt.Sprintf("%v#%d#", k.dst, k.seq))
		return b
	}
	want := map[key]bool{}
	for _, d := range dsts {
		for i := range count {
			want[key{d, i}] = true
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 65536)
	for len(want) > 0 && time.Now().Before(deadline) {
		for k := range want {
			if _, err := c.WriteToUDPAddrPort(payload(k), k.dst); err != nil {
				t.Fatalf("send to %v: %v", k.dst, err)
			}
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			var k key
			var dst string
			fields := strings.SplitN(string(buf[:min(n, 64)]), "#", 3)
			if len(fields) < 3 {
				t.Fatalf("reply from %v: unexpected payload %q", from, buf[:min(n, 64)])
			}
			dst = fields[0]
			fmt.Sscan(fields[1], &k.seq)
			k.dst = netip.MustParseAddrPort(dst)
			if from != k.dst {
				t.Fatalf("reply to a datagram for %v came from %v", k.dst, from)
			}
			if !bytes.Equal(buf[:n], payload(k)) {
				t.Fatalf("reply from %v: %d bytes, payload differs from the %d sent", from, n, size)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Fatalf("%d of %d datagrams never came back", len(want), count*len(dsts))
	}
}

func serverDsts(l *lab.Lab) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range l.Host(lab.Server).IPv4s() {
		out = append(out, netip.AddrPortFrom(a, DefaultPort))
	}
	return out
}

func sumStats(g *Group) Stats {
	var s Stats
	for _, c := range g.Conns() {
		st := c.Stats()
		s.ReadDatagrams += st.ReadDatagrams
		s.KernelReads += st.KernelReads
		s.TXFrames += st.TXFrames
		s.KernelSendsNoHop += st.KernelSendsNoHop
		s.KernelSendsTooLong += st.KernelSendsTooLong
		s.KernelSendsRingFull += st.KernelSendsRingFull
		s.WriteErrors += st.WriteErrors
		for i := range s.RXDropped {
			s.RXDropped[i] += st.RXDropped[i]
		}
		s.ZeroCopy = s.ZeroCopy || st.ZeroCopy
	}
	return s
}

// TestEcho: datagrams to port 3544 on both server addresses, from a peer on
// the link and from one behind a NAT and a router, come back intact from the
// address they were sent to; once the next hops are known they go out
// through the TX ring, not the kernel.
func TestEcho(t *testing.T) {
	l := lab.New(t, lab.Options{})
	g := attachServer(t, l, Config{})
	if g.Mode() != ModeDriver {
		t.Errorf("veth attached in %v mode, want driver", g.Mode())
	}
	echo(t, g, 2048)
	for _, name := range []string{lab.Pub, lab.Client1} {
		t.Run(name, func(t *testing.T) {
			c, err := l.Host(name).ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The first round may go through the kernel while the next
			// hop is resolved; the second must use the ring.
			exchange(t, c, serverDsts(l), 50, 100)
			before := sumStats(g)
			exchange(t, c, serverDsts(l), 100, 200)
			after := sumStats(g)
			if got := after.TXFrames - before.TXFrames; got < 200 {
				t.Errorf("second round: %d frames through the TX ring, want ≥ 200 (stats %+v)", got, after)
			}
			if after.KernelSendsNoHop != before.KernelSendsNoHop {
				t.Errorf("second round: %d datagrams through the kernel for want of a next hop",
					after.KernelSendsNoHop-before.KernelSendsNoHop)
			}
		})
	}
	st := sumStats(g)
	t.Logf("stats: read %d (kernel %d), ring TX %d, kernel TX no-hop %d, drops %v, zero-copy %v",
		st.ReadDatagrams, st.KernelReads, st.TXFrames, st.KernelSendsNoHop, st.RXDropped, st.ZeroCopy)
}

// TestKernelStillWorks: with the program attached, everything that is not
// UDP to port 3544 on a steered address still reaches the kernel: ARP,
// ICMP, another UDP port; and a 3544 datagram the program does not steer
// (fragmented, IP options) reaches the Conn through the kernel socket.
func TestKernelStillWorks(t *testing.T) {
	l := lab.New(t, lab.Options{})
	g := attachServer(t, l, Config{})
	echo(t, g, 4096)
	srv, pub := l.Host(lab.Server), l.Host(lab.Pub)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("arp_and_ping", func(t *testing.T) {
		for _, a := range srv.IPv4s() {
			if out, err := pub.Run(ctx, "ip", "-4", "neigh", "flush", "all"); err != nil {
				t.Fatalf("flush neighbours: %v: %s", err, out)
			}
			if err := pub.Ping(ctx, a); err != nil {
				t.Fatal(err)
			}
			// The ping needed ARP, which the program passed.
			out, err := pub.Run(ctx, "ip", "-4", "neigh", "show", a.String())
			if err != nil || !strings.Contains(string(out), "lladdr") {
				t.Fatalf("pub has no ARP entry for %v: %v: %s", a, err, out)
			}
		}
	})

	t.Run("other_udp_port", func(t *testing.T) {
		other, err := srv.ListenUDP(netip.AddrPortFrom(srv.IPv4(), 4000))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := other.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				other.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
		c, err := pub.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		exchange(t, c, []netip.AddrPort{netip.AddrPortFrom(srv.IPv4(), 4000)}, 10, 100)
	})

	t.Run("fragments", func(t *testing.T) {
		c, err := pub.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before := sumStats(g)
		exchange(t, c, serverDsts(l), 3, 3000)
		after := sumStats(g)
		if after.KernelReads-before.KernelReads < 6 || after.KernelSendsTooLong-before.KernelSendsTooLong < 6 {
			t.Errorf("3000-byte datagrams: %d read and %d sent through the kernel, want ≥ 6 each",
				after.KernelReads-before.KernelReads, after.KernelSendsTooLong-before.KernelSendsTooLong)
		}
	})

	t.Run("ip_options", func(t *testing.T) {
		c, err := pub.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		// Four no-operation options: a 24-byte IPv4 header.
		var serr error
		rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x01")
		})
		if serr != nil {
			t.Fatalf("IP_OPTIONS: %v", serr)
		}
		before := sumStats(g)
		exchange(t, c, serverDsts(l), 5, 100)
		if got := sumStats(g).KernelReads - before.KernelReads; got < 10 {
			t.Errorf("datagrams with IP options: %d read through the kernel, want ≥ 10", got)
		}
	})
}

// xdpAttached reports whether ip-link(8) shows an XDP program on the
// server's uplink.
func xdpAttached(t *testing.T, l *lab.Lab) string {
	t.Helper()
	srv := l.Host(lab.Server)
	out, err := srv.Run(context.Background(), "ip", "-d", "link", "show", "dev", srv.Ifname)
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	if strings.Contains(string(out), "xdp") {
		return string(out)
	}
	return ""
}

// TestCloseDetaches: the program shows on the link while a Group is open
// and is gone after Close; a second Group can then attach.
func TestCloseDetaches(t *testing.T) {
	l := lab.New(t, lab.Options{})
	for range 2 {
		g := attachServer(t, l, Config{})
		if xdpAttached(t, l) == "" {
			t.Fatal("ip link shows no XDP program while the Group is open")
		}
		if err := g.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if out := xdpAttached(t, l); out != "" {
			t.Fatalf("XDP program still attached after Close:\n%s", out)
		}
	}
}

// TestAllocs: once a peer's next hop is known, reading a batch and echoing
// it through the rings allocates nothing.
func TestAllocs(t *testing.T) {
	l := lab.New(t, lab.Options{})
	g := attachServer(t, l, Config{HopTTL: time.Minute})
	c := g.Conns()[0]
	pub, err := l.Host(lab.Pub).ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		payload := make([]byte, 100)
		dsts := serverDsts(l)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pub.WriteToUDPAddrPort(payload, dsts[i%2])
			if i%16 == 15 {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	defer func() { close(stop); <-sent }()
	msgs := make([]Message, MaxBatch)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	echoOnce := func() {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteBatch(msgs[:n]); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().TXFrames < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("no echo through the TX ring: %+v", c.Stats())
		}
		echoOnce()
	}
	if allocs := testing.AllocsPerRun(200, echoOnce); allocs != 0 {
		t.Errorf("ReadBatch + WriteBatch: %v allocations per batch, want 0", allocs)
	}
}

// TestAttachErrors: Attach fails with a reason the server can log in one
// line, and leaves nothing behind; a Group already attached keeps working.
func TestAttachErrors(t *testing.T) {
	l := lab.New(t, lab.Options{})
	srv := l.Host(lab.Server)
	try := func(cfg Config) error {
		var err error
		if e := srv.Do(func() error {
			g, err := Attach(cfg)
			if err == nil {
				g.Close()
			}
			return err
		}); e != nil {
			err = e
		}
		return err
	}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no such interface", Config{Interface: "nope0", Addrs: srv.IPv4s()}, `interface "nope0"`},
		{"address not on the interface", Config{Interface: srv.Ifname, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.99")}}, "is not an address of"},
		{"IPv6 address", Config{Interface: srv.Ifname, Addrs: []netip.Addr{srv.IPv6()}}, ErrNotIPv4.Error()},
		{"frames not a power of two", Config{Interface: srv.Ifname, Addrs: srv.IPv4s(), Frames: 1000}, "power of two"},
	}
	for _, tc := range cases {
		err := try(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Attach error %v, want one with %q", tc.name, err, tc.want)
		}
	}
	if out := xdpAttached(t, l); out != "" {
		t.Fatalf("failed Attach left a program:\n%s", out)
	}

	g := attachServer(t, l, Config{})
	echo(t, g, 2048)
	err := try(Config{Interface: srv.Ifname, Addrs: srv.IPv4s()})
	if err == nil || !strings.Contains(err.Error(), "attach XDP program") {
		t.Fatalf("second Attach on the same interface: %v, want an attach error", err)
	}
	t.Logf("second Attach: %v", err)
	c, err := l.Host(lab.Pub).ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(t, c, serverDsts(l), 20, 100)
}

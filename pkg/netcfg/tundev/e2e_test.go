// SPDX-License-Identifier: MIT

//go:build e2e

package tundev

// End-to-end tests: each makes its own network namespace, creates the TUN in
// it, configures it through netcfg's netlink calls and moves packets through
// it. Nothing is attached to the root namespace. Needs root (CAP_NET_ADMIN,
// CAP_SYS_ADMIN).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/internal/nstest"
)

func createTUN(t *testing.T, ns netns.NsHandle, name string) Device {
	t.Helper()
	dev, err := CreateTUNInNetNS(ns, name)
	if err != nil {
		t.Fatalf("CreateTUNInNetNS(%q): %v", name, err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// The kernel routes packets from a socket into the configured TUN, and
// packets written into it reach the socket.
func TestE2EDataPath(t *testing.T) {
	ns, h, _ := nstest.NewNetNS(t)
	dev := createTUN(t, ns, "")
	if dev.Name() != netcfg.DefaultName || dev.BatchSize() != 1 {
		t.Fatalf("Name %q BatchSize %d", dev.Name(), dev.BatchSize())
	}
	l, err := netcfg.NewLink(h, dev.Name())
	if err != nil {
		t.Fatal(err)
	}
	nstest.Configure(t, h, l)

	if mtu, err := dev.MTU(); err != nil || mtu != 1280 {
		t.Errorf("MTU() = %d, %v; want 1280", mtu, err)
	}

	// A socket inside the namespace, bound to the tunnel address.
	var conn *net.UDPConn
	err = netcfg.RunInNetNS(ns, func() error {
		var err error
		conn, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nstest.TunAddr, 40000)))
		return err
	})
	if err != nil {
		t.Fatalf("listen in netns: %v", err)
	}
	t.Cleanup(func() { conn.Close() })

	// Outbound: the kernel routes both packets into the TUN, the native one
	// by the default route and the Teredo one by 2001::/32.
	for _, dst := range []netip.Addr{nstest.Native, nstest.Peer} {
		to := netip.AddrPortFrom(dst, 3544)
		payload := []byte("to " + dst.String())
		if _, err := conn.WriteToUDPAddrPort(payload, to); err != nil {
			t.Fatalf("send to %v: %v", to, err)
		}
		got := readUDP(t, dev, to)
		if got.src != netip.AddrPortFrom(nstest.TunAddr, 40000) || !bytes.Equal(got.payload, payload) {
			t.Errorf("read %v -> %v %q, want from %v %q", got.src, got.dst, got.payload, nstest.TunAddr, payload)
		}
	}

	// Inbound: a packet written into the TUN (with headroom in front)
	// reaches the socket.
	const offset = 16
	from := netip.AddrPortFrom(nstest.Native, 3544)
	pkt := buildUDP6(from, netip.AddrPortFrom(nstest.TunAddr, 40000), []byte("pong"))
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
			ns, _, _ := nstest.NewNetNS(t)
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

func TestE2ENameTaken(t *testing.T) {
	ns, h, _ := nstest.NewNetNS(t)
	createTUN(t, ns, "teredo")
	_, err := CreateTUNInNetNS(ns, "teredo")
	if !errors.Is(err, netcfg.ErrNameTaken) || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("second CreateTUN = %v, want ErrNameTaken wrapping EBUSY", err)
	}

	if !nstest.AddNonTUN(t, h, "teredo2") {
		t.Log("skipping the non-TUN case")
		return
	}
	_, err = CreateTUNInNetNS(ns, "teredo2")
	if !errors.Is(err, netcfg.ErrNameTaken) {
		t.Errorf("CreateTUN over a dummy = %v, want ErrNameTaken", err)
	}
}

// A crashed run leaves a persistent interface behind (made without a
// virtio-net header); every backend attaches to it and clears its persist
// flag, so closing removes it.
func TestE2EAttachesToLeftover(t *testing.T) {
	for _, backend := range Backends() {
		t.Run(string(backend), func(t *testing.T) {
			ns, h, _ := nstest.NewNetNS(t)
			nstest.MakePersistentTUN(t, ns, "teredo")
			devs, err := OpenInNetNS(ns, "teredo", Options{Backend: backend})
			if err != nil {
				t.Fatalf("Open over a persistent TUN: %v", err)
			}
			if mtu, err := devs[0].MTU(); err != nil || mtu == 0 {
				t.Errorf("MTU = %d, %v", mtu, err)
			}
			devs[0].Close()
			nstest.WaitLinkGone(t, h, "teredo")
		})
	}
}

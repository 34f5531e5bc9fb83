// SPDX-License-Identifier: MIT

//go:build e2e

package tundev

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/internal/nstest"
)

// TestE2EWriteMergesUDP writes runs of UDP datagrams from a host behind
// the tunnel to a socket on the tunnel address, in one Write batch, and
// checks that with USO they went to the kernel merged and that the socket
// got every datagram, byte for byte, in order.
func TestE2EWriteMergesUDP(t *testing.T) {
	nsh, nlh, nsName := nstest.NewNetNS(t)
	devs, err := OpenInNetNS(nsh, "", Options{Backend: BackendOffload})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	dev := devs[0]
	t.Cleanup(func() { dev.Close() })
	td, ok := dev.(*tunDevice)
	if !ok {
		t.Fatalf("offload backend gave a %T", dev)
	}
	if !td.uso {
		t.Skip("the kernel did not take UDP segmentation offload on the TUN (Linux 6.2 or later)")
	}
	l, err := netcfg.NewLink(nlh, dev.Name())
	if err != nil {
		t.Fatal(err)
	}
	nstest.Configure(t, nlh, l)

	var conn *net.UDPConn
	err = netcfg.RunInNetNS(nsh, func() error {
		var err error
		conn, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(nstest.TunAddr, 0)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { // root: past rmem_max, so no datagram is dropped
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	})
	port := conn.LocalAddr().(*net.UDPAddr).Port

	from := func(sport uint16) func(int, *udpSpec) {
		return func(_ int, s *udpSpec) {
			s.src, s.dst, s.sport, s.dport = nstest.Native, nstest.TunAddr, sport, uint16(port)
		}
	}
	runs := [][][]byte{
		udpFlow(64, 1200, 0, from(5000)),
		udpFlow(20, 1200, 777, from(5000)),
		udpFlow(1, 300, 0, from(5001)),
		udpFlow(30, 1000, 999, from(5002)),
		udpFlow(2, 1, 0, from(5003)),
	}
	// Wait until the namespace delivers to the socket at all: one plain
	// datagram from a port of its own, repeated until it arrives.
	const offset = 16
	buf := make([]byte, 2048)
	probe := withHeadroom(udpFlow(1, 10, 0, from(4999)), offset)
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatal("no datagram written into the TUN reached the socket in 5 s")
		}
		if _, err := dev.Write(probe, offset); err != nil {
			t.Fatalf("Write probe: %v", err)
		}
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := conn.ReadFromUDPAddrPort(buf); err == nil {
			break
		}
	}

	var batch [][]byte
	for _, r := range runs {
		batch = append(batch, r...)
	}
	if n, err := dev.Write(withHeadroom(batch, offset), offset); err != nil || n != len(batch) {
		t.Fatalf("Write = %d of %d, %v", n, len(batch), err)
	}
	if st := td.OffloadStats(); st.UDPRunsWritten != 4 || st.UDPCoalesced != uint64(len(batch)-1) {
		t.Errorf("stats %+v: want 4 UDP runs of %d datagrams", st, len(batch)-1)
	}

	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, p := range batch {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		for err == nil && src.Port() == 4999 { // a late probe
			n, src, err = conn.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				out, _ := exec.Command("ip", "netns", "exec", nsName, "nstat", "-az").CombinedOutput()
				t.Fatalf("datagram %d of %d never came\n%s", i, len(batch), out)
			}
			t.Fatal(err)
		}
		want := p[ipv6HdrLen+udpHdrLen:]
		wantSrc := netip.AddrPortFrom(nstest.Native, uint16(p[40])<<8|uint16(p[41]))
		if src != wantSrc || !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d: %d bytes from %v, want %d from %v", i, n, src, len(want), wantSrc)
		}
	}
}

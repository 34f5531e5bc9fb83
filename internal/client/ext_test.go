// SPDX-License-Identifier: MIT

package client

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// TestSelfFor: what the Engine is told about our NAT, for each NAT type,
// and where a UPnP mapping goes (RFC 6081 §5.3.3, §5.6.3).
func TestSelfFor(t *testing.T) {
	c, conn, _ := newTestClient(t)
	conn.Local = netip.MustParseAddrPort("10.0.0.2:40000")
	mapping := netip.MustParseAddrPort("198.51.100.2:40000")
	base := Status{Phase: PhaseQualified, Addr: selfTeredo(mapping), Mapping: mapping,
		Server: netip.MustParseAddr("192.0.2.10"), Server2: netip.MustParseAddr("192.0.2.11")}
	cases := []struct {
		name string
		nat  NATType
		upnp netip.AddrPort
		want tunnel.Self
	}{
		{"cone", NATCone, netip.AddrPort{}, tunnel.Self{Cone: true}},
		{"restricted", NATRestricted, netip.AddrPort{}, tunnel.Self{}},
		{"symmetric", NATSymmetric, netip.AddrPort{}, tunnel.Self{Symmetric: true}},
		{"port-preserving", NATSymmetricPortPreserving, netip.AddrPort{}, tunnel.Self{Symmetric: true, PortPreserving: true}},
		{"sequential", NATSymmetricSequential, netip.AddrPort{}, tunnel.Self{Symmetric: true}},
		{"UPnP, one NAT", NATSymmetricUPnP, mapping, tunnel.Self{Symmetric: true, UPnP: true}},
		{"UPnP, nested NATs", NATSymmetric, netip.MustParseAddrPort("10.1.0.2:40000"),
			tunnel.Self{Symmetric: true, UPnPMapping: netip.MustParseAddrPort("10.1.0.2:40000")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := base
			st.NAT, st.UPnP = tc.nat, tc.upnp
			want := tc.want
			want.Addr, want.Local = st.Addr, conn.Local
			want.Server = netip.AddrPortFrom(st.Server, proto.Port)
			want.Server2 = netip.AddrPortFrom(st.Server2, proto.Port)
			if got := c.selfFor(st); got != want {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
	// Bound to any address: the local address is the route's source.
	conn.Local = netip.MustParseAddrPort("0.0.0.0:40000")
	if got := c.localEndpoint(netip.MustParseAddr("127.0.0.1")); got != netip.MustParseAddrPort("127.0.0.1:40000") {
		t.Errorf("local endpoint %v", got)
	}
}

func selfTeredo(m netip.AddrPort) netip.Addr {
	return proto.Address{Prefix: proto.DefaultPrefix, Server: netip.MustParseAddr("192.0.2.10"), MappedPort: m.Port(), MappedAddr: m.Addr()}.Addr()
}

// TestRandomSockets: a port opened for the Engine receives for it, sends
// what it asks, refuses datagrams for closed ports, and closes with
// everything else.
func TestRandomSockets(t *testing.T) {
	r := newRandomSockets(netip.MustParseAddr("127.0.0.1"))
	got := make(chan netip.AddrPort, 4)
	r.receive = func(b []byte, from netip.AddrPort, port uint16, out *tunnel.Out) error {
		got <- netip.AddrPortFrom(from.Addr(), port)
		return nil
	}
	port, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if failed := r.send([]tunnel.ViaMessage{{Port: port, Message: udpio.Message{Buf: []byte("hi"), N: 2, Addr: peerAddr}}}); failed != 0 {
		t.Fatalf("%d not sent", failed)
	}
	buf := make([]byte, 16)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hi" || from.Port() != port {
		t.Fatalf("peer got %q from %v (%v), want from port %d", buf[:n], from, err, port)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("back"), from); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.Port() != port {
			t.Errorf("received on %v", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received on the random port")
	}
	r.Close(port)
	if failed := r.send([]tunnel.ViaMessage{{Port: port, Message: udpio.Message{Buf: []byte("x"), N: 1, Addr: peerAddr}}}); failed != 1 {
		t.Errorf("sent from a closed port")
	}
	if _, err := r.Open(); err != nil {
		t.Fatal(err)
	}
	r.closeAll()
	if _, err := r.Open(); err == nil {
		t.Error("opened after closeAll")
	}
}

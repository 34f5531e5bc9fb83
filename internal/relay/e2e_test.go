// SPDX-License-Identifier: MIT

//go:build e2e

package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

// binary returns one of our daemons, built once per run.
func binary(t *testing.T, name string) string { return lab.Binary(t, name) }

// relayPort is where our relay listens, so hostile senders can find it.
const relayPort = 3545

// startRelay runs our relay in the lab's relay host from a miredo.conf as
// Miredo's relay reads it, and waits for its tunnel.
func startRelay(ctx context.Context, t *testing.T, l *lab.Lab, flags ...string) *lab.Process {
	t.Helper()
	h := l.Host(lab.Relay)
	conf := filepath.Join(l.LogDir, "our-relay.conf")
	text := refmiredo.RelayConfig(h.IPv4(), refmiredo.DefaultIfname) + fmt.Sprintf("BindPort %d\n", relayPort)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{binary(t, "miredo-relay"), "-c", conf, "-p", filepath.Join(l.LogDir, "our-relay.pid")}, flags...)
	p, err := l.Start(ctx, h, "our-relay"+strings.Join(flags, ""), argv...)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitLink(ctx, refmiredo.DefaultIfname); err != nil {
		t.Fatalf("our relay's tunnel: %v\n%s", err, p.Tail(20))
	}
	if err := h.WaitUDP(ctx, relayPort); err != nil {
		t.Fatalf("our relay does not listen: %v\n%s", err, p.Tail(20))
	}
	return p
}

// startOurServer runs our server on the lab's server host.
func startOurServer(ctx context.Context, t *testing.T, l *lab.Lab) *lab.Process {
	t.Helper()
	h := l.Host(lab.Server)
	conf := filepath.Join(l.LogDir, "our-server.conf")
	if err := os.WriteFile(conf, []byte(refmiredo.ServerConfig(h.IPv4())), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := l.Start(ctx, h, "our-server", binary(t, "miredo-server"), "-c", conf,
		"-p", filepath.Join(l.LogDir, "our-server.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatalf("our server does not listen: %v\n%s", err, p.Tail(20))
	}
	return p
}

// stats asks our relay for its counters (SIGUSR1) and returns each named
// counter of the newest statistics record ("stats.from_udp").
func stats(ctx context.Context, t *testing.T, p *lab.Process) map[string]uint64 {
	t.Helper()
	m, err := p.Statistics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// $MIREDO_RELAY_TCP_BYTES for a throughput run.
func tcpBytes(t *testing.T) int {
	if s := os.Getenv("MIREDO_RELAY_TCP_BYTES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("MIREDO_RELAY_TCP_BYTES=%q", s)
		}
		return n
	}
	return 1 << 20
}

// tcpEcho sends n random bytes from client to an echo server on native over
// TCP and checks they come back.
func tcpEcho(ctx context.Context, client, native *lab.Host, n int) error {
	var ln net.Listener
	if err := native.Do(func() (err error) {
		ln, err = net.Listen("tcp6", net.JoinHostPort(native.IPv6().String(), "0"))
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.Copy(c, c)
	}()
	var c net.Conn
	if err := client.Do(func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err = d.DialContext(ctx, "tcp6", ln.Addr().String())
		return err
	}); err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, n)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", len(got), err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("echo: %d bytes back of %d, or different", len(got), n)
	}
	return nil
}

// TestOurRelay runs Debian's Miredo 1.2.6 client behind every NAT
// behaviour, qualified with Debian's server and then with ours, and checks
// it reaches the native IPv6 host through our relay and back (ping both
// ways, 1 MB over TCP each way), then throws hostile datagrams at the relay
// and checks that none reaches the native side.
func TestOurRelay(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	relay := startRelay(ctx, t, l)
	server := l.Host(lab.Server)
	native := l.Host(lab.Native)

	type natCase struct {
		name   string
		client string
		nat    string
		mode   lab.NATMode
	}
	nats := []natCase{
		{"none", lab.Pub, "", 0},
		{"full-cone", lab.Client1, lab.NAT1, lab.FullCone},
		{"address-restricted", lab.Client1, lab.NAT1, lab.AddressRestricted},
		{"port-restricted", lab.Client1, lab.NAT1, lab.PortRestricted},
		{"symmetric", lab.Client1, lab.NAT1, lab.Symmetric},
	}
	runClient := func(t *testing.T, tc natCase, tag string, tcp bool) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		client := l.Host(tc.client)
		if tc.nat != "" {
			if err := l.SetNAT(ctx, tc.nat, tc.mode); err != nil {
				t.Fatal(err)
			}
		}
		p, err := refmiredo.StartClient(ctx, l, client, "miredo-client-"+tag+"-"+tc.name, server.IPv4())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		addr, err := refmiredo.Qualified(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("qualified: %s", refmiredo.Summary(addr))
		start := time.Now()
		if err := client.Ping(ctx, native.IPv6()); err != nil {
			t.Fatalf("client -> native: %v", err)
		}
		if err := native.Ping(ctx, addr); err != nil {
			t.Fatalf("native -> client: %v", err)
		}
		t.Logf("ping both ways in %v", time.Since(start).Round(time.Millisecond))
		if tcp {
			n := tcpBytes(t)
			start = time.Now()
			if err := tcpEcho(ctx, client, native, n); err != nil {
				t.Fatalf("TCP: %v", err)
			}
			d := time.Since(start)
			t.Logf("%d KiB each way over TCP in %v (%.0f Mbit/s each way)", n>>10, d.Round(time.Millisecond), float64(n)*8/d.Seconds()/1e6)
		}
	}

	t.Run("SIGHUP", func(t *testing.T) {
		// A reload (Debian's ExecReload, its if-up hook) must not kill the
		// relay: it reads its file again (or says why it could not) and
		// keeps relaying, which the subtests below then show.
		if err := syscall.Kill(relay.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for !strings.Contains(relay.Tail(50), `msg="SIGHUP: configuration`) {
			select {
			case <-relay.Done():
				t.Fatalf("the relay exited on SIGHUP: %v\n%s", relay.Err(), relay.Tail(10))
			case <-ctx.Done():
				t.Fatalf("no SIGHUP message:\n%s", relay.Tail(10))
			case <-time.After(20 * time.Millisecond):
			}
		}
	})

	t.Run("miredo server", func(t *testing.T) {
		srv, err := refmiredo.StartServer(ctx, l, server)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Stop()
		for _, tc := range nats {
			t.Run(tc.name, func(t *testing.T) { runClient(t, tc, "mir", true) })
		}
	})
	t.Run("our server", func(t *testing.T) {
		srv := startOurServer(ctx, t, l)
		defer srv.Stop()
		for _, tc := range nats {
			t.Run(tc.name, func(t *testing.T) { runClient(t, tc, "our", tc.mode == lab.Symmetric) })
		}
	})
	t.Run("tunnel offloads", func(t *testing.T) {
		// The TCP runs above went through the default (offload) backend:
		// the native host's TSO reached the relay's tunnel whole, and the
		// clients' segments were merged on the way back.
		st := stats(ctx, t, relay)
		t.Logf("tunnel: %d super-segments read, cut into %d packets; %d packets written as %d super-segments; %d dropped",
			st["tun.super_read"], st["tun.split_out"], st["tun.coalesced"], st["tun.runs_written"], st["tun.dropped"])
		if st["tun.super_read"] == 0 || st["tun.runs_written"] == 0 {
			t.Errorf("offloads unused: %v", st)
		}
	})
	t.Run("hostile input", func(t *testing.T) {
		hostile(ctx, t, l, relay)
	})
	t.Run("our client under a flood", func(t *testing.T) {
		ourClientUnderFlood(ctx, t, l)
	})
	t.Run("restricted relay", func(t *testing.T) {
		relay.Stop()
		relay := startRelay(ctx, t, l, "--restricted")
		srv := startOurServer(ctx, t, l)
		defer srv.Stop()
		runClient(t, nats[4], "restricted", false)
		if n := stats(ctx, t, relay)["stats.direct_bubbles"]; n == 0 {
			t.Error("the restricted relay sent no direct bubble")
		}
	})
}

// hostile sends the relay spoofed, multicast, misrouted and malformed
// datagrams from a host with a public address, all carrying echo requests
// for the native host, and checks the native host got none of them.
func hostile(ctx context.Context, t *testing.T, l *lab.Lab, relay *lab.Process) {
	pub, native := l.Host(lab.Pub), l.Host(lab.Native)
	conn, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := netip.MustParseAddrPort(conn.LocalAddr().String())
	to := netip.AddrPortFrom(l.Host(lab.Relay).IPv4(), relayPort)
	srv := l.Host(lab.Server).IPv4()
	teredo := func(m netip.AddrPort) netip.Addr {
		return proto.Address{Prefix: proto.DefaultPrefix, Server: srv, MappedPort: m.Port(), MappedAddr: m.Addr()}.Addr()
	}
	ours := teredo(local)                                            // matches the sender: still unknown to the relay
	spoofed := teredo(netip.MustParseAddrPort("198.51.100.2:40000")) // someone else's mapping
	echo := func(src, dst netip.Addr) []byte {
		return proto.AppendEchoRequest(nil, proto.EchoFields{Src: src, Dst: dst, HopLimit: 64, ID: 9, Seq: 9, Data: make([]byte, 16)})
	}
	badLen := echo(ours, native.IPv6())
	badLen[5] = 200
	var pkts [][]byte
	pkts = append(pkts,
		echo(ours, native.IPv6()),                                                // unknown peer
		echo(spoofed, native.IPv6()),                                             // mapping mismatch
		echo(native.IPv6(), native.IPv6()),                                       // native source
		echo(netip.MustParseAddr("fe80::1"), native.IPv6()),                      // link-local source
		echo(ours, netip.MustParseAddr("ff02::1")),                               // multicast
		echo(ours, teredo(netip.MustParseAddrPort("192.0.2.40:9"))),              // Teredo to Teredo
		proto.AppendBubble(nil, spoofed, netip.MustParseAddr("fe80::8000:1"), 0), // forged bubble
		append(proto.AppendOrigin(nil, local), echo(ours, native.IPv6())...),     // origin indication
		badLen, []byte{}, []byte{0x60}, []byte("GET / HTTP/1.1\r\n\r\n"),
	)
	for i := range 500 {
		b := make([]byte, 1+i%200)
		rand.Read(b)
		pkts = append(pkts, b)
	}
	before := stats(ctx, t, relay)
	echoes := icmp6InEchos(ctx, t, native)
	for _, b := range pkts {
		if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the relay has read them all, then look at the native host.
	var after map[string]uint64
	for {
		after = stats(ctx, t, relay)
		if after["stats.from_udp"] >= before["stats.from_udp"]+uint64(len(pkts)) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("relay read %d of %d hostile datagrams", after["stats.from_udp"]-before["stats.from_udp"], len(pkts))
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := icmp6InEchos(ctx, t, native); got != echoes {
		t.Errorf("native host received %d echo requests from hostile datagrams", got-echoes)
	}
	if d := after["stats.delivered"] - before["stats.delivered"]; d != 0 {
		t.Errorf("relay delivered %d hostile packets", d)
	}
	for _, k := range []string{"drop_unknown_peer", "drop_mapping_mismatch", "drop_not_teredo_src", "drop_link_local_src", "drop_multicast_dst", "drop_bad_dst", "drop_malformed"} {
		if after["stats."+k] <= before["stats."+k] {
			t.Errorf("no %s drop counted", k)
		}
	}
	t.Logf("relay after the hostile run: %v", after)

	// From the native side: Teredo destinations whose embedded server or
	// client address is not global make the relay send nothing, not even
	// a bubble to the (global) server named in them.
	inet1 := l.Host(lab.Inet1)
	victim, err := inet1.ListenUDP(netip.AddrPortFrom(inet1.IPv4(), proto.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	var nc *net.UDPConn
	if err := native.Do(func() (err error) {
		nc, err = net.ListenUDP("udp6", &net.UDPAddr{IP: native.IPv6().AsSlice()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bogus := []netip.Addr{
		proto.Address{Prefix: proto.DefaultPrefix, Server: inet1.IPv4(), MappedPort: 99, MappedAddr: netip.MustParseAddr("10.0.0.5")}.Addr(),
		proto.Address{Prefix: proto.DefaultPrefix, Server: netip.MustParseAddr("127.0.0.1"), MappedPort: proto.Port, MappedAddr: inet1.IPv4()}.Addr(),
		proto.Address{Prefix: proto.DefaultPrefix, Server: inet1.IPv4(), MappedPort: 99, MappedAddr: netip.MustParseAddr("224.0.0.1")}.Addr(),
	}
	for _, a := range bogus {
		if _, err := nc.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(a, 9)); err != nil {
			t.Fatal(err)
		}
	}
	for {
		st := stats(ctx, t, relay)
		if st["stats.drop_nonglobal_ipv4"] >= after["stats.drop_nonglobal_ipv4"]+uint64(len(bogus)) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("relay did not drop the bogus destinations: %v", st)
		case <-time.After(50 * time.Millisecond):
		}
	}
	victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 2048)
	if n, from, err := victim.ReadFromUDPAddrPort(buf); err == nil {
		t.Errorf("inet1 received %x from %v", buf[:n], from)
	}
}

// icmp6InEchos reads how many echo requests host h has received.
func icmp6InEchos(ctx context.Context, t *testing.T, h *lab.Host) uint64 {
	t.Helper()
	n, err := h.SNMP6(ctx, "Icmp6InEchos")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ourClientUnderFlood runs our own client, server and relay together (the
// README's demo network) and checks the client's ping through the relay
// stays intact while a flood of spoofed and malformed datagrams hits the
// relay's port.
func ourClientUnderFlood(ctx context.Context, t *testing.T, l *lab.Lab) {
	srv := startOurServer(ctx, t, l)
	defer srv.Stop()
	server, native := l.Host(lab.Server), l.Host(lab.Native)
	client, _, err := l.Place(ctx, lab.Placement{Name: "port-restricted", Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(l.LogDir, "our-client.conf")
	if err := os.WriteFile(conf, []byte(refmiredo.ClientConfig(server.IPv4(), refmiredo.DefaultIfname)), 0o644); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Start(ctx, client, "our-client", binary(t, "miredo-client"), "-c", conf, "-p", filepath.Join(l.LogDir, "our-client.pid"))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	addr, err := refmiredo.Qualified(ctx, client)
	if err != nil {
		t.Fatalf("our client: %v\n%s", err, cp.Tail(20))
	}
	if err := client.Ping(ctx, native.IPv6()); err != nil {
		t.Fatal(err)
	}
	if err := native.Ping(ctx, addr); err != nil {
		t.Fatal(err)
	}

	// The flood: random bytes and spoofed Teredo packets from pub, bounded
	// in count and time, until the pings are done.
	pub := l.Host(lab.Pub)
	conn, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := netip.AddrPortFrom(l.Host(lab.Relay).IPv4(), relayPort)
	victim, _ := proto.ParseAddress(addr)
	stop := make(chan struct{})
	flooded := make(chan int, 1)
	go func() {
		n := 0
		deadline := time.Now().Add(20 * time.Second)
		buf := make([]byte, 0, 256)
		for ; n < 200000 && time.Now().Before(deadline); n++ {
			select {
			case <-stop:
				flooded <- n
				return
			default:
			}
			switch n % 3 {
			case 0: // our client's address from the wrong mapping
				buf = proto.AppendEchoRequest(buf[:0], proto.EchoFields{Src: addr, Dst: native.IPv6(), HopLimit: 64, Data: make([]byte, 16)})
			case 1: // a forged bubble claiming to be our client
				buf = proto.AppendBubble(buf[:0], victim.Addr(), netip.MustParseAddr("fe80::8000:1"), 0)
			default:
				buf = buf[:1+n%200]
				rand.Read(buf)
			}
			conn.WriteToUDPAddrPort(buf, to)
		}
		flooded <- n
	}()
	out, err := client.Run(ctx, "ping", "-n", "-q", "-c", "20", "-i", "0.05", "-W", "1", native.IPv6().String())
	close(stop)
	n := <-flooded
	m := regexp.MustCompile(`(\d+) received`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping during the flood: %v\n%s", err, out)
	}
	got, _ := strconv.Atoi(string(m[1]))
	t.Logf("%d of 20 pings answered while %d hostile datagrams hit the relay", got, n)
	if got < 18 {
		t.Errorf("only %d of 20 pings answered during the flood", got)
	}
	if n < 100 {
		t.Errorf("the flood sent only %d datagrams", n)
	}
}

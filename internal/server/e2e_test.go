// SPDX-License-Identifier: MIT

//go:build e2e

package server_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/internal/wirecheck"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

// startServer runs our server in the lab's server host from a
// miredo-server.conf as Miredo would read it, with extra flags, and waits
// until it listens.
func startServer(ctx context.Context, t *testing.T, l *lab.Lab, extra ...string) *lab.Process {
	t.Helper()
	h := l.Host(lab.Server)
	conf := filepath.Join(l.LogDir, "our-server.conf")
	if err := os.WriteFile(conf, []byte(refmiredo.ServerConfig(h.IPv4())), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{lab.Binary(t, "miredo-server"), "-f", "-c", conf,
		"-p", filepath.Join(l.LogDir, "our-server.pid"), "--log-level", "debug"}, extra...)
	p, err := l.Start(ctx, h, "our-server", argv...)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatalf("our server does not listen: %v\n%s", err, p.Tail(20))
	}
	return p
}

// ioPaths are the server's two I/O paths, which pass the same suite: UDP
// sockets, and AF_XDP on the server host's interface.
var ioPaths = []struct {
	name string
	args func(server *lab.Host) []string
}{
	{"sockets", func(*lab.Host) []string { return nil }},
	{"xdp", func(h *lab.Host) []string { return []string{"--xdp", h.Ifname} }},
}

// stats asks the server for its counters (SIGUSR1) and returns counter
// name ("to_ipv6", "drop_loop"), 0 when absent.
func stats(ctx context.Context, t *testing.T, p *lab.Process, name string) uint64 {
	t.Helper()
	m, err := p.Statistics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m["stats."+name]
}

// TestOurServer runs Debian's Miredo 1.2.6 client and relay against our
// server in a namespace lab, on each I/O path: qualification behind every
// NAT behaviour, native IPv6 both ways, our RA on the wire as tshark reads
// it, and a hostile-input run that gets nothing forwarded while a real
// client keeps being served.
func TestOurServer(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	for _, path := range ioPaths {
		t.Run(path.name, func(t *testing.T) { testOurServer(t, path.name, path.args) })
	}
}

func testOurServer(t *testing.T, path string, args func(*lab.Host) []string) {
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	server := l.Host(lab.Server)
	udpBefore := udpInDatagrams(ctx, t, server)
	srv := startServer(ctx, t, l, args(server)...)
	// The port is bound before the server is done starting (xdpio opens
	// its kernel sockets before it attaches): wait for the start line.
	for !strings.Contains(srv.Tail(50), "Teredo server started") {
		select {
		case <-srv.Done():
			t.Fatalf("our server exited: %v\n%s", srv.Err(), srv.Tail(20))
		case <-ctx.Done():
			t.Fatalf("our server did not start:\n%s", srv.Tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Once started, the server runs without root and without any
	// capability, on either path.
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.Pid())); err != nil {
		t.Fatal(err)
	} else {
		for _, line := range strings.Split(string(status), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "Uid:":
				if f[1] == "0" {
					t.Errorf("server runs as root: %s", line)
				}
			case "CapPrm:", "CapEff:", "CapAmb:":
				if strings.Trim(f[1], "0") != "" {
					t.Errorf("server keeps capabilities: %s", line)
				}
			}
		}
	}
	if path == "xdp" {
		// The path must really be AF_XDP, not the fallback to sockets.
		if tail := srv.Tail(50); !strings.Contains(tail, "AF_XDP attached") {
			t.Fatalf("AF_XDP not attached:\n%s", tail)
		}
	}
	if _, err := refmiredo.StartRelay(ctx, l, l.Host(lab.Relay)); err != nil {
		t.Fatal(err)
	}
	native := l.Host(lab.Native)

	t.Run("miredo clients", func(t *testing.T) {
		for _, pl := range lab.Placements() {
			t.Run(pl.Name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				client, public, err := l.Place(ctx, pl)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				p, err := refmiredo.StartClient(ctx, l, client, "miredo-client-"+pl.Name, server.IPv4())
				if err != nil {
					t.Fatal(err)
				}
				defer p.Stop()
				addr, err := refmiredo.Qualified(ctx, client)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("qualified in %v: %s", time.Since(start).Round(time.Millisecond), refmiredo.Summary(addr))
				a, _ := proto.ParseAddress(addr)
				if a.Server != server.IPv4() || a.MappedAddr != public {
					t.Errorf("address %v: server %v mapped %v; want server %v mapped %v", addr, a.Server, a.MappedAddr, server.IPv4(), public)
				}
				if err := client.Ping(ctx, native.IPv6()); err != nil {
					t.Errorf("client -> native: %v", err)
				}
				if err := native.Ping(ctx, addr); err != nil {
					t.Errorf("native -> client: %v", err)
				}
			})
		}
		// Every client ran its connectivity test through us.
		if n := stats(ctx, t, srv, "to_ipv6"); n == 0 {
			t.Error("no connectivity test went through our server")
		}
	})

	pub := l.Host(lab.Pub)
	conn, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := netip.MustParseAddrPort(conn.LocalAddr().String())
	primary := netip.AddrPortFrom(server.IPv4(), proto.Port)
	secondary := netip.AddrPortFrom(server.IPv4s()[1], proto.Port)

	exchange := func(t *testing.T, payload []byte) (netip.AddrPort, []byte) {
		t.Helper()
		if _, err := conn.WriteToUDPAddrPort(payload, primary); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no answer from the server: %v", err)
		}
		return from, buf[:n]
	}

	t.Run("RA on the wire", func(t *testing.T) {
		var nonce [proto.NonceLen]byte
		rand.Read(nonce[:])
		from, ra := exchange(t, proto.AppendRouterSolicitation(nil, nonce, false))
		if from != primary {
			t.Errorf("RA from %v, want %v", from, primary)
		}
		res, err := wirecheck.Decode(t.TempDir(), []wirecheck.Datagram{{Src: from, Dst: local, Payload: ra}}, nil,
			[]string{"teredo.auth.nonce", "teredo.orig.port", "teredo.orig.addr", "ipv6.src", "ipv6.dst", "ipv6.hlim",
				"icmpv6.type", "icmpv6.checksum.status", "icmpv6.opt.prefix", "icmpv6.opt.mtu", "icmpv6.nd.ra.retrans_timer"})
		if err == wirecheck.ErrNoTshark {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"teredo.auth.nonce": fmt.Sprintf("%x", nonce), "teredo.orig.port": strconv.Itoa(int(local.Port())),
			"teredo.orig.addr": local.Addr().String(), "ipv6.src": "fe80::8000:f227:3fff:fdf5", "ipv6.dst": "fe80::ffff:ffff:ffff",
			"ipv6.hlim": "255", "icmpv6.type": "134", "icmpv6.checksum.status": "1", "icmpv6.opt.prefix": "2001:0:c000:20a::",
			"icmpv6.opt.mtu": "1280", "icmpv6.nd.ra.retrans_timer": "2000",
		}
		if p := wirecheck.Problems(res[0]); p != "" {
			t.Errorf("tshark: %s", p)
		}
		for k, v := range want {
			if res[0][k] != v {
				t.Errorf("%s = %q, want %q", k, res[0][k], v)
			}
		}
		// A cone solicitation is answered from the other address (§5.3.2).
		from, _ = exchange(t, proto.AppendRouterSolicitation(nil, nonce, true))
		if from != secondary {
			t.Errorf("cone RA from %v, want %v", from, secondary)
		}
	})

	t.Run("SIGHUP", func(t *testing.T) {
		// A reload (or Debian's if-up hook) must not kill the server: it
		// says a new configuration needs a restart and keeps serving.
		if err := syscall.Kill(srv.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for !strings.Contains(srv.Tail(50), "SIGHUP: configuration not reloaded") {
			select {
			case <-srv.Done():
				t.Fatalf("the server exited on SIGHUP: %v\n%s", srv.Err(), srv.Tail(10))
			case <-ctx.Done():
				t.Fatalf("no SIGHUP message:\n%s", srv.Tail(10))
			case <-time.After(20 * time.Millisecond):
			}
		}
		var nonce [proto.NonceLen]byte
		rand.Read(nonce[:])
		if from, ra := exchange(t, proto.AppendRouterSolicitation(nil, nonce, false)); from != primary || len(ra) == 0 {
			t.Errorf("after SIGHUP: answer of %d bytes from %v", len(ra), from)
		}
		select {
		case <-srv.Done():
			t.Fatalf("the server exited after SIGHUP: %v", srv.Err())
		default:
		}
	})

	t.Run("hostile input", func(t *testing.T) {
		// A victim on inet1 that a forwarded packet would reach, and the
		// native host's echo counter, which a forwarded test would bump.
		inet1 := l.Host(lab.Inet1)
		victim, err := inet1.ListenUDP(netip.AddrPortFrom(inet1.IPv4(), 9999))
		if err != nil {
			t.Fatal(err)
		}
		defer victim.Close()
		victimTeredo := proto.Address{Prefix: proto.DefaultPrefix, Server: server.IPv4(), MappedPort: 9999, MappedAddr: inet1.IPv4()}.Addr()
		foreign := proto.Address{Prefix: proto.DefaultPrefix, Server: netip.MustParseAddr("203.0.113.77"), MappedPort: 9999, MappedAddr: inet1.IPv4()}.Addr()
		ours := proto.Address{Prefix: proto.DefaultPrefix, Server: server.IPv4(), MappedPort: local.Port(), MappedAddr: local.Addr()}.Addr()
		spoofed := proto.Address{Prefix: proto.DefaultPrefix, Server: server.IPv4(), MappedPort: 1234, MappedAddr: netip.MustParseAddr("198.51.100.9")}.Addr()
		ll := netip.MustParseAddr("fe80::1")
		echoTo := func(src, dst netip.Addr, n int) []byte {
			return proto.AppendEchoRequest(nil, proto.EchoFields{Src: src, Dst: dst, HopLimit: 64, ID: 7, Seq: 7, Data: make([]byte, n)})
		}
		rs := proto.AppendRouterSolicitation(nil, [proto.NonceLen]byte{1}, false)
		badLen := append([]byte(nil), rs...)
		badLen[proto.AuthHeaderMinLen+5] = 200 // payload length past the datagram
		shortRS := append([]byte(nil), rs[:len(rs)-4]...)
		shortRS[proto.AuthHeaderMinLen+5] = 4
		hostile := [][]byte{
			nil, {0}, {0, 1}, {0, 0, 1}, []byte("\x00\x01\xff\xff garbage"), []byte("GET / HTTP/1.1\r\n\r\n"),
			append(proto.AppendOrigin(nil, local), proto.AppendOrigin(nil, local)...),
			badLen, shortRS,
			proto.AppendBubble(nil, spoofed, victimTeredo, 0),                                         // spoofed Teredo source
			proto.AppendBubble(nil, ll, foreign, 0),                                                   // to another server's client
			proto.AppendBubble(nil, ours, foreign, 0),                                                 // the same from a valid source
			echoTo(spoofed, native.IPv6(), 8),                                                         // connectivity test, spoofed
			echoTo(ours, native.IPv6(), 200),                                                          // oversized ICMPv6
			echoTo(ours, netip.MustParseAddr("ff0e::1"), 8),                                           // multicast
			echoTo(ll, native.IPv6(), 8),                                                              // native to native
			proto.AppendEchoReply(nil, proto.EchoFields{Src: ours, Dst: native.IPv6(), HopLimit: 64}), // reply to native
		}
		for i := range 2000 { // and a burst of random junk
			b := make([]byte, 1+i%300)
			rand.Read(b)
			hostile = append(hostile, b)
		}
		echoesBefore := icmp6InEchos(ctx, t, native)
		for _, b := range hostile {
			if _, err := conn.WriteToUDPAddrPort(b, primary); err != nil {
				t.Fatal(err)
			}
		}
		// Bubbles to "clients" mapped at the server's own addresses: the
		// server forwards them to itself, and the loop guard must stop them
		// there (MTFL-SA-0603). (Spoofing our addresses from outside cannot
		// test it: Linux drops packets arriving with a local source.)
		for _, self := range []netip.AddrPort{primary, secondary} {
			loop := proto.Address{Prefix: proto.DefaultPrefix, Server: server.IPv4(), MappedPort: self.Port(), MappedAddr: self.Addr()}.Addr()
			if _, err := conn.WriteToUDPAddrPort(proto.AppendBubble(nil, ll, loop, 0), primary); err != nil {
				t.Fatal(err)
			}
		}

		// Controls, sent last: a real indirect bubble and a real
		// connectivity test. They must arrive, and nothing else may.
		if _, err := conn.WriteToUDPAddrPort(proto.AppendBubble(nil, ll, victimTeredo, 0), primary); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteToUDPAddrPort(echoTo(ours, native.IPv6(), 8), primary); err != nil {
			t.Fatal(err)
		}
		victim.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2048)
		n, from, err := victim.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("the control bubble did not arrive: %v", err)
		}
		var e proto.Envelope
		if err := proto.ParseEnvelope(buf[:n], &e); err != nil || !e.IPv6.IsBubble() || e.IPv6.Src() != ll || from != primary {
			t.Fatalf("first datagram at the victim is not the control bubble: %x from %v (%v)", buf[:n], from, err)
		}
		for {
			if got := icmp6InEchos(ctx, t, native); got == echoesBefore+1 {
				break
			} else if got > echoesBefore+1 {
				t.Fatalf("native host received %d echo requests, want 1", got-echoesBefore)
			}
			select {
			case <-ctx.Done():
				t.Fatal("the control connectivity test did not arrive")
			case <-time.After(20 * time.Millisecond):
			}
		}
		victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := victim.ReadFromUDPAddrPort(buf); err == nil {
			t.Errorf("victim received a second datagram: %x", buf[:n])
		}
		if n := stats(ctx, t, srv, "drop_loop"); n != 2 {
			t.Errorf("loop guard dropped %d, want 2", n)
		}

		// The server still serves: a fresh solicitation is answered, and a
		// real Miredo client qualifies and reaches native IPv6.
		if _, ra := exchange(t, rs); len(ra) == 0 {
			t.Error("empty RA")
		}
		client := l.Host(lab.Client1)
		if err := l.SetNAT(ctx, lab.NAT1, lab.PortRestricted); err != nil {
			t.Fatal(err)
		}
		p, err := refmiredo.StartClient(ctx, l, client, "miredo-client-after", server.IPv4())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		if _, err := refmiredo.Qualified(ctx, client); err != nil {
			t.Fatal(err)
		}
		if err := client.Ping(ctx, native.IPv6()); err != nil {
			t.Error(err)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		// A burst of solicitations "from" one /24 (as a spoofed flood aimed
		// at a victim network would be) gets at most the per-/24 budget
		// answered; the rest is dropped and counted, and the budget refills.
		flood, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer flood.Close()
		before := stats(ctx, t, srv, "drop_rate_limited")
		rs := proto.AppendRouterSolicitation(nil, [proto.NonceLen]byte{7}, false)
		const n = 30000
		for range n {
			if _, err := flood.WriteToUDPAddrPort(rs, primary); err != nil {
				t.Fatal(err)
			}
		}
		var limited uint64
		for {
			if limited = stats(ctx, t, srv, "drop_rate_limited") - before; limited > 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no solicitation of %d was rate limited", n)
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.Logf("%d of %d solicitations from one /24 dropped by the rate limit", limited, n)
		// The budget refills: a fresh solicitation is answered again.
		buf := make([]byte, 2048)
		for {
			conn.WriteToUDPAddrPort(rs, primary)
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatal("solicitations stay unanswered after the burst")
			default:
			}
		}
	})

	if path == "xdp" {
		// Steered datagrams never reach the kernel's UDP stack: of the
		// tens of thousands the server received, only the few the
		// program passes on (its own bubbles to itself) may show in the
		// namespace's UDP counters.
		got, in := stats(ctx, t, srv, "received"), udpInDatagrams(ctx, t, server)-udpBefore
		t.Logf("received %d datagrams, %d of them through the kernel's UDP stack", got, in)
		if got < 1000 || in > got/10 {
			t.Errorf("server received %d datagrams, the kernel's UDP stack %d: want most through AF_XDP", got, in)
		}
	}
}

// TestXDPFallback: --xdp on an interface where XDP cannot attach (here one
// that does not exist) leaves the server on UDP sockets, serving, with one
// warning that says why.
func TestXDPFallback(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv := startServer(ctx, t, l, "--xdp", "nosuch0")
	pub := l.Host(lab.Pub)
	conn, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	primary := netip.AddrPortFrom(l.Host(lab.Server).IPv4(), proto.Port)
	buf := make([]byte, 2048)
	for {
		conn.WriteToUDPAddrPort(proto.AppendRouterSolicitation(nil, [proto.NonceLen]byte{3}, false), primary)
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, from, err := conn.ReadFromUDPAddrPort(buf); err == nil && from == primary {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no answer on the fallback path:\n%s", srv.Tail(20))
		}
	}
	tail := srv.Tail(50)
	if n := strings.Count(tail, "AF_XDP unavailable"); n != 1 || !strings.Contains(tail, "nosuch0") || strings.Contains(tail, "AF_XDP attached") {
		t.Errorf("want one warning naming the interface and why, no attach:\n%s", tail)
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

// udpInDatagrams reads the UDP datagrams host h's kernel has delivered to
// sockets (Udp InDatagrams in /proc/net/snmp).
func udpInDatagrams(ctx context.Context, t *testing.T, h *lab.Host) uint64 {
	t.Helper()
	out, err := h.Run(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InDatagrams" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Udp InDatagrams in /proc/net/snmp of %s", h.Name)
	return 0
}

// SPDX-License-Identifier: MIT

//go:build e2e

package mire

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/pcapfile"
	"github.com/miredo-go/miredo/pkg/proto"
)

var update = flag.Bool("update", false, "rewrite "+captureFile+" from a fresh capture of teredo-mire")

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

// teredoMire is Debian's responder (package miredo).
const teredoMire = "/usr/bin/teredo-mire"

// nobody runs argv as nobody:nogroup with no supplementary groups, so a
// responder shows it needs no privilege.
func nobody(argv ...string) []string {
	return append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)
}

// needTools skips the test without root, the lab's tools or the ones
// named.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install miredo tcpdump util-linux)", tool)
		}
	}
}

// startResponder runs Debian's teredo-mire (ours false) or ours as nobody
// in host h and waits until it listens on both ports.
func startResponder(ctx context.Context, t *testing.T, l *lab.Lab, h *lab.Host, ours bool, extra ...string) *lab.Process {
	t.Helper()
	argv, name := nobody(teredoMire), "teredo-mire-"+h.Name
	if ours {
		argv = nobody(append(append([]string{lab.Binary(t, "miredo-server"), "mire"}, extra...), h.IPv4().String())...)
		name = "our-mire-" + h.Name
	}
	p, err := l.Start(ctx, h, name, argv...)
	if err != nil {
		t.Fatal(err)
	}
	// Waiting ends early if the responder exits.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	for _, port := range []uint16{proto.Port, MappedPort} {
		if err := h.WaitUDP(wctx, port); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, p.Tail(10))
		}
	}
	// Ours catches SIGUSR1 (Statistics) once it says it started.
	for ours && !strings.Contains(p.Tail(20), "Teredo test responder started") {
		select {
		case <-wctx.Done():
			t.Fatalf("%s did not start:\n%s", name, p.Tail(10))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

// request is one datagram of the catalogue: to port, from the catalogue's
// socket or, when spoof is set, with that forged source.
type request struct {
	name    string
	port    uint16
	payload []byte
	spoof   netip.AddrPort
}

// catalogue lists what is sent to a responder on addr: datagrams both
// teredo-mire and we answer, datagrams neither answers, and datagrams only
// teredo-mire answers (see diverges).
func catalogue(addr netip.Addr) []request {
	self := teredo(proto.DefaultPrefix, addr, 0, netip.AddrPortFrom(addr, MappedPort))
	other := netip.MustParseAddr("192.0.2.99")
	mcast, ll := netip.MustParseAddr("ff02::1"), netip.MustParseAddr("fe80::483b:bdbc:45b0:e661")
	good := echoReq(peer, self, "hello")
	auth := proto.AppendNonceAuth(nil, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	origin := proto.AppendOrigin(nil, netip.MustParseAddrPort("203.0.113.7:9999"))
	bubble := proto.AppendBubble(nil, peer, self, 0)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	udp6 := withNext(peer, self, 17, 8)
	on := func(port uint16, name string, b []byte) request { return request{name: name, port: port, payload: b} }
	spoofed := func(from string, port uint16, name string, b []byte) request {
		return request{name: name, port: port, payload: b, spoof: netip.MustParseAddrPort(from)}
	}
	return []request{
		// Answered alike.
		on(MappedPort, "echo", good),
		on(MappedPort, "echo behind auth and origin", cat(auth, origin, good)),
		on(MappedPort, "echo behind an auth header with id and value", cat([]byte{0, 1, 2, 3, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 1, 2, 3, 4, 5, 6, 7, 8, 0}, good)),
		on(MappedPort, "echo with a trailer", cat(good, []byte{1, 2, 3, 4, 5, 6, 7, 8})),
		on(MappedPort, "echo, code 1", edit(good, func(b []byte) { b[41] = 1; b[43]-- })),
		on(MappedPort, "echo, hop limit 0", edit(good, func(b []byte) { b[7] = 0 })),
		on(MappedPort, "echo with class and flow", edit(good, func(b []byte) { copy(b, []byte{0x6a, 0xbc, 0xde, 0xf1}) })),
		on(MappedPort, "echo from native IPv6", echoReq(native, self, "x")),
		on(MappedPort, "echo, other prefix and flags", echoReq(peer, teredo(0x3ffe831f, addr, 0xffff, netip.AddrPortFrom(addr, MappedPort)), "x")),
		on(MappedPort, "echo header only", icmp(peer, self, proto.ICMPv6EchoRequest, 4)),
		on(MappedPort, "echo of 1400 bytes", echoReq(peer, self, strings.Repeat("z", 1400))),
		on(MappedPort, "echo whose reply checksum is 0", zeroSumEcho(self)),
		on(proto.Port, "bubble", bubble),
		on(proto.Port, "Miredo's bubble from a link-local source", proto.AppendBubble(nil, ll, self, 0)),
		on(proto.Port, "bubble with hop limit, class and trailer", cat(edit(bubble, func(b []byte) { b[7] = 9; b[1] = 0x0f }), []byte{9, 9, 9, 9})),
		on(proto.Port, "bubble behind an origin indication", cat(origin, bubble)),
		on(proto.Port, "bubble behind an auth header", cat(auth, bubble)),
		on(proto.Port, "bubble from native IPv6", proto.AppendBubble(nil, native, self, 0)),
		on(MappedPort, "UDP in IPv6", udp6),
		on(MappedPort, "UDP header only", withNext(peer, self, 17, 0)),
		on(MappedPort, "TCP in IPv6", withNext(peer, self, 6, 20)),
		on(MappedPort, "echo after a hop-by-hop header", hopByHop(good)),
		on(MappedPort, "fragment header", withNext(peer, self, 44, 16)),
		on(MappedPort, "UDP of 1400 bytes", withNext(peer, self, 17, 1400)),
		on(MappedPort, "UDP with a trailer", cat(udp6, []byte{7, 7, 7, 7})),
		on(MappedPort, "UDP with class and flow", edit(udp6, func(b []byte) { copy(b, []byte{0x6a, 0xbc, 0xde, 0xf1}) })),
		on(MappedPort, "UDP behind an origin indication", cat(origin, udp6)),
		// Answered by neither.
		on(proto.Port, "echo on 3544", good),
		on(proto.Port, "UDP on 3544", udp6),
		on(MappedPort, "echo reply", icmp(peer, self, proto.ICMPv6EchoReply, 8)),
		on(MappedPort, "destination unreachable", icmp(peer, self, proto.ICMPv6DstUnreachable, 44)),
		on(MappedPort, "router solicitation to us", icmp(peer, self, proto.ICMPv6RouterSolicit, 4)),
		on(MappedPort, "neighbor solicitation", icmp(peer, self, 135, 20)),
		on(MappedPort, "unknown informational ICMPv6", icmp(peer, self, 200, 4)),
		on(MappedPort, "unknown ICMPv6 error", icmp(peer, self, 100, 4)),
		on(MappedPort, "ICMPv6 of 5 bytes", icmp(peer, self, proto.ICMPv6EchoRequest, 1)),
		on(MappedPort, "empty ICMPv6", withNext(peer, self, proto.ProtoICMPv6, 0)),
		on(MappedPort, "bubble on 3545", bubble),
		on(MappedPort, "Miredo's bubble on 3545", proto.AppendBubble(nil, ll, self, 0)),
		on(proto.Port, "no next header with data on 3544", withNext(peer, self, proto.ProtoNoNext, 8)),
		on(MappedPort, "no next header with data on 3545", withNext(peer, self, proto.ProtoNoNext, 8)),
		on(proto.Port, "router solicitation on 3544", proto.AppendRouterSolicitation(nil, [8]byte{9, 9, 9, 9, 9, 9, 9, 9}, false)),
		on(MappedPort, "router solicitation on 3545", proto.AppendRouterSolicitation(nil, [8]byte{9, 9, 9, 9, 9, 9, 9, 9}, true)),
		on(MappedPort, "text", []byte("hello world")),
		on(MappedPort, "empty datagram", nil),
		on(MappedPort, "IPv4 header", []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}),
		on(MappedPort, "payload length beyond the datagram", good[:len(good)-2]),
		on(MappedPort, "IP version 5", edit(good, func(b []byte) { b[0] = 0x50 })),
		on(proto.Port, "two origin indications", cat(origin, origin, bubble)),
		on(MappedPort, "truncated auth header", []byte{0, 1, 0, 0, 1, 2}),
		spoofed("10.1.2.3:1002", proto.Port, "bubble from 10/8", bubble),
		// Answered by teredo-mire only.
		on(MappedPort, "echo with a bad checksum", edit(good, func(b []byte) { b[42] ^= 1 })),
		on(MappedPort, "echo to another server's client", echoReq(peer, teredo(proto.DefaultPrefix, other, 0, netip.AddrPortFrom(addr, MappedPort)), "x")),
		on(MappedPort, "echo to another mapped address", echoReq(peer, teredo(proto.DefaultPrefix, addr, 0, netip.AddrPortFrom(other, MappedPort)), "x")),
		on(MappedPort, "echo to another mapped port", echoReq(peer, teredo(proto.DefaultPrefix, addr, 0, netip.AddrPortFrom(addr, proto.Port)), "x")),
		on(MappedPort, "echo to native IPv6", echoReq(peer, native, "x")),
		on(MappedPort, "echo to ff02::1", echoReq(peer, mcast, "x")),
		on(MappedPort, "echo between link-local addresses", echoReq(netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::2"), "x")),
		on(MappedPort, "echo from ff02::1", echoReq(mcast, self, "x")),
		on(MappedPort, "echo from ::", echoReq(netip.IPv6Unspecified(), self, "x")),
		on(MappedPort, "echo from ::1", echoReq(netip.IPv6Loopback(), self, "x")),
		on(MappedPort, "UDP to another server's client", withNext(peer, teredo(proto.DefaultPrefix, other, 0, netip.AddrPortFrom(addr, MappedPort)), 17, 0)),
		on(MappedPort, "UDP from ff02::1", withNext(mcast, self, 17, 0)),
		on(MappedPort, "UDP to ff02::1", withNext(peer, mcast, 17, 0)),
		on(MappedPort, "UDP from ::", withNext(netip.IPv6Unspecified(), self, 17, 0)),
		on(proto.Port, "bubble to another server's client", proto.AppendBubble(nil, peer, teredo(proto.DefaultPrefix, other, 0, netip.AddrPortFrom(addr, MappedPort)), 0)),
		on(proto.Port, "bubble to native IPv6", proto.AppendBubble(nil, peer, native, 0)),
		on(proto.Port, "bubble from ff02::1", proto.AppendBubble(nil, mcast, self, 0)),
		spoofed("10.1.2.3:1000", MappedPort, "echo from 10/8", echoReq(native, self, "spoof")),
		spoofed("192.168.1.1:1001", MappedPort, "echo from 192.168/16", echoReq(native, self, "spoof")),
		spoofed("192.88.99.1:1007", proto.Port, "bubble from 192.88.99/24", bubble),
		spoofed("240.0.0.1:1010", proto.Port, "bubble from 240/4", bubble),
	}
}

// zeroSumEcho returns an echo request to self whose reply carries the
// checksum 0x0000 (the sum 0xffff), an edge of ones'-complement arithmetic
// where a checksum updated in place and one computed afresh could differ.
func zeroSumEcho(self netip.Addr) []byte {
	for seq := range 1 << 16 {
		f := proto.EchoFields{Src: self, Dst: peer, HopLimit: 255, ID: 0x4242, Seq: uint16(seq), Data: []byte("zero")}
		if r := proto.AppendEchoReply(nil, f); r[42] == 0 && r[43] == 0 {
			f.Src, f.Dst, f.HopLimit = peer, self, 64
			return proto.AppendEchoRequest(nil, f)
		}
	}
	panic("no echo reply with a zero checksum")
}

// hopByHop puts an empty hop-by-hop options header in front of an IPv6
// packet's payload.
func hopByHop(p []byte) []byte {
	b := append([]byte(nil), p[:proto.IPv6HeaderLen]...)
	nh := b[6]
	b[6] = 0
	proto.IPv6(b).SetPayloadLength(proto.IPv6(p).PayloadLength() + 8)
	b = append(b, nh, 0, 1, 4, 0, 0, 0, 0) // PadN over the rest of the 8 bytes
	return append(b, p[proto.IPv6HeaderLen:]...)
}

// sendCatalogue sends each request from host pub to the responder on addr,
// then, on the same port from a second socket, a sentinel that both
// responders answer; once the sentinel's answer is back, the request has
// been handled (each responder port handles its datagrams in order). It
// returns the answer to the last sentinel, the last datagram of the
// exchange.
func sendCatalogue(t *testing.T, l *lab.Lab, addr netip.Addr) (last []byte) {
	t.Helper()
	pub := l.Host(lab.Pub)
	a, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := pub.ListenUDP(netip.AddrPortFrom(pub.IPv4(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	self := teredo(proto.DefaultPrefix, addr, 0, netip.AddrPortFrom(addr, MappedPort))
	buf := make([]byte, 2048)
	for i, r := range catalogue(addr) {
		to := netip.AddrPortFrom(addr, r.port)
		if r.spoof.IsValid() {
			if err := pub.SendSpoofed([]lab.Spoofed{{From: r.spoof, To: to, Payload: r.payload}}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := a.WriteToUDPAddrPort(r.payload, to); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		// The sentinel: an echo on 3545, a bubble on 3544, each told
		// apart by its sequence number or source.
		src := teredo(proto.DefaultPrefix, netip.MustParseAddr("192.0.2.10"), uint16(i), netip.AddrPortFrom(pub.IPv4(), 1))
		var s []byte
		if r.port == MappedPort {
			s = proto.AppendEchoRequest(nil, proto.EchoFields{Src: src, Dst: self, HopLimit: 64, ID: 1, Seq: uint16(i), Data: []byte("sentinel")})
			last = proto.AppendEchoReply(nil, proto.EchoFields{Src: self, Dst: src, HopLimit: 255, ID: 1, Seq: uint16(i), Data: []byte("sentinel")})
		} else {
			s = proto.AppendBubble(nil, src, self, 0)
			last = proto.AppendBubble(nil, self, src, 0)
		}
		if _, err := b.WriteToUDPAddrPort(s, to); err != nil {
			t.Fatal(err)
		}
		_ = b.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			n, _, err := b.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("after %q: no answer to the sentinel: %v", r.name, err)
			}
			if string(buf[:n]) == string(last) {
				break
			}
		}
	}
	return last
}

// capture runs tcpdump on host h's uplink into file (UDP to and from addr)
// for the duration of fn, and returns the datagrams once the capture holds
// the datagram last, which fn's traffic ends with.
func capture(ctx context.Context, t *testing.T, l *lab.Lab, h *lab.Host, addr netip.Addr, file string, fn func() []byte) []pcapfile.Datagram {
	t.Helper()
	p, err := l.Start(ctx, h, "tcpdump-"+filepath.Base(file), "tcpdump", "-i", h.Ifname, "-n", "-U", "-s", "0", "-w", file,
		"udp and host "+addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	for !strings.Contains(p.Tail(5), "listening on") {
		select {
		case <-ctx.Done():
			t.Fatalf("tcpdump did not start:\n%s", p.Tail(10))
		case <-p.Done():
			t.Fatalf("tcpdump ended:\n%s", p.Tail(10))
		case <-time.After(20 * time.Millisecond):
		}
	}
	last := fn()
	for {
		// Until tcpdump has written a whole last record, the file does
		// not parse.
		if ds, err := pcapfile.ReadUDP4File(file); err == nil && len(ds) > 0 && string(ds[len(ds)-1].Payload) == string(last) {
			return ds
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the capture lacks the last answer:\n%s", p.Tail(10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestTeredoMireCapture sends the catalogue to Debian's teredo-mire in the
// lab, captures what it answers, and compares it with what our handler
// answers to the same datagrams (as TestReplayTeredoMireCapture does with
// the checked-in capture; -update replaces that capture with this one).
// Then it sends the same catalogue to our responder, `miredo-server mire`
// running as nobody on the same host, and checks that it answers exactly
// what the handler says, through real sockets.
func TestTeredoMireCapture(t *testing.T) {
	needTools(t, teredoMire, "tcpdump", "setpriv")
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h := l.Host(lab.Inet1)
	addr := h.IPv4()
	if addr != captureAddr {
		t.Fatalf("inet1 is %v; the checked-in capture was made on %v", addr, captureAddr)
	}

	theirs := startResponder(ctx, t, l, h, false)
	file := filepath.Join(l.LogDir, "teredo-mire.pcap")
	xs, err := pairCapture(capture(ctx, t, l, h, addr, file, func() []byte { return sendCatalogue(t, l, addr) }), addr)
	if err != nil {
		t.Fatal(err)
	}
	c := compareAnswers(xs, addr)
	for _, m := range c.mismatches {
		t.Error(m)
	}
	t.Logf("teredo-mire, live, %d requests:\n%v", len(xs), c)
	if *update && !t.Failed() {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(captureFile, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", captureFile, len(b))
	}
	theirs.Stop()

	ours := startResponder(ctx, t, l, h, true)
	file = filepath.Join(l.LogDir, "our-mire.pcap")
	xs, err = pairCapture(capture(ctx, t, l, h, addr, file, func() []byte { return sendCatalogue(t, l, addr) }), addr)
	if err != nil {
		t.Fatal(err)
	}
	c = compareAnswers(xs, addr)
	for _, m := range c.mismatches {
		t.Error(m)
	}
	if len(c.diverged) != 0 {
		t.Errorf("our responder answers what its handler drops: %v", c)
	}
	t.Logf("ours, live, %d requests: %d answered as the handler says, %d left unanswered", len(xs), c.same, c.silent)
	st, err := ours.Statistics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var dropped uint64
	for k, v := range st {
		if strings.HasPrefix(k, "stats.drop_") {
			dropped += v
		}
	}
	replies := st["stats.echo_replies"] + st["stats.bubbles"] + st["stats.param_problems"]
	// The forged requests from 10/8 and the like count as received too.
	if st["stats.received"] != uint64(len(xs)) || replies != uint64(c.same) || dropped != uint64(c.silent) {
		t.Errorf("counters %v: want %d received, %d answered, %d dropped", st, len(xs), c.same, c.silent)
	}
	if st["stats.drop_malformed"] == 0 || st["stats.drop_not_ours"] == 0 {
		t.Errorf("malformed and misdirected datagrams not counted: %v", st)
	}
}

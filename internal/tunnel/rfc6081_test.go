// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// The rules of RFC 6081's extensions, one at a time, on a fake clock. The
// whole handshakes, NAT against NAT, run in TestSimTable.

var (
	selfLocal  = netip.MustParseAddrPort("10.0.0.2:40000") // our socket behind our NAT
	peerLocal  = netip.MustParseAddrPort("10.0.0.3:40003") // a peer behind the same NAT
	peerSrv2   = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.11"), proto.Port)
	symSelf    = Self{Addr: selfAddr, Server: server, Server2: peerSrv2, Local: selfLocal, Symmetric: true}
	restricted = Self{Addr: selfAddr, Server: server, Server2: peerSrv2, Local: selfLocal}
)

// fakePorts is a PortOpener that hands out ports in turn.
type fakePorts struct {
	next   uint16
	open   []uint16
	opened int
	fail   bool
}

func (f *fakePorts) Open() (uint16, error) {
	if f.fail {
		return 0, errTest
	}
	f.next++
	p := 50000 + f.next
	f.open = append(f.open, p)
	f.opened++
	return p, nil
}

func (f *fakePorts) Close(p uint16) {
	f.open = slices.DeleteFunc(f.open, func(q uint16) bool { return q == p })
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("no port")

// extEnv is a client engine with self s and fake random ports.
func extEnv(t *testing.T, s Self, tweak ...func(*Config)) (*env, *fakePorts) {
	ports := &fakePorts{}
	en := newEnv(t, Client, append([]func(*Config){func(c *Config) { c.Ports = ports }}, tweak...)...)
	en.e.SetSelf(s)
	return en, ports
}

// sent is one datagram of out, parsed.
type sentBubble struct {
	to       netip.AddrPort
	via      uint16
	src, dst netip.Addr
	tr       proto.Trailers
	bubble   bool
	rs       bool // a router solicitation
	auth     [proto.NonceLen]byte
}

// sentAll parses everything in out, from the Teredo port and the random
// ports.
func (en *env) sentAll() []sentBubble {
	en.t.Helper()
	var r []sentBubble
	add := func(b []byte, to netip.AddrPort, via uint16) {
		var e proto.Envelope
		if err := proto.ParseEnvelope(b, &e); err != nil {
			en.t.Fatalf("sent a malformed datagram to %v: %v", to, err)
		}
		s := sentBubble{to: to, via: via, src: e.IPv6.Src(), dst: e.IPv6.Dst(), bubble: e.IPv6.IsBubble(), auth: e.Auth.Nonce}
		if _, err := proto.ParseRouterSolicitation(e.IPv6); err == nil {
			s.rs = true
		}
		if err := proto.ParseTrailers(e.Trailer, &s.tr); err != nil {
			en.t.Fatalf("sent bad trailers to %v: %v", to, err)
		}
		r = append(r, s)
	}
	for _, m := range en.out.UDP {
		add(m.Buf[:m.N], m.Addr, 0)
	}
	for _, m := range en.out.Via {
		add(m.Buf[:m.N], m.Addr, m.Port)
	}
	return r
}

// trBubble builds a bubble with RFC 6081 trailers.
func trBubble(src, dst netip.Addr, tr trailers) []byte {
	var o Out
	return append([]byte(nil), o.bubble(src, dst, tr)...)
}

func nonce(b byte) *[proto.TrailerNonceLen]byte { return &[proto.TrailerNonceLen]byte{b, b, b, b} }

// sentNonce is the nonce of our last indirect bubble to a.
func (en *env) sentNonce(a netip.Addr) *[proto.TrailerNonceLen]byte {
	n := en.ext(a).nonceSent
	return &n
}

func viaServer(origin netip.AddrPort, b []byte) []byte {
	return append(proto.AppendOrigin(nil, origin), b...)
}

// TestIndirectBubble: a round to an untrusted peer sends an indirect
// bubble from our Teredo address with a fresh nonce (§5.2.4.1) and our
// local address (§5.6.4.1), and a direct bubble with no nonce (§5.2.4.2);
// from the second round, a client whose NAT is not symmetric adds
// Miredo's kind of indirect bubble, unless the peer has shown it reads
// trailers.
func TestIndirectBubble(t *testing.T) {
	en, _ := extEnv(t, restricted)
	en.tun(pkt(selfAddr, peerAddr, 8))
	got := en.sentAll()
	if len(got) != 2 {
		t.Fatalf("sent %+v", got)
	}
	dir, ind := got[0], got[1] // direct first, as Miredo sends them
	p, _ := en.peer(peerAddr)
	x := en.ext(peerAddr)
	if ind.to != server || ind.src != selfAddr || ind.dst != peerAddr || !ind.tr.HasNonce || ind.tr.Nonce != x.nonceSent ||
		ind.tr.AltAddrs.Len() != 1 || ind.tr.AltAddrs.At(0) != selfLocal || ind.tr.RandomPort != 0 {
		t.Errorf("indirect bubble %+v (peer %+v, nonce %x)", ind, p, x.nonceSent)
	}
	if dir.to != peerMap || dir.src != selfAddr || dir.tr.HasNonce {
		t.Errorf("direct bubble %+v", dir)
	}
	first := x.nonceSent
	en.clk.advance(2 * time.Second)
	en.tick()
	got = en.sentAll()
	if len(got) != 3 || got[0].to != peerMap || got[1].to != server || got[2].to != server ||
		!got[2].src.IsLinkLocalUnicast() || got[2].tr.HasNonce {
		t.Fatalf("second round %+v: want direct, ours, Miredo's", got)
	}
	if x := en.ext(peerAddr); x.nonceSent == first || x.noncePrev != first {
		t.Errorf("nonce not renewed: %x, previous %x", x.nonceSent, x.noncePrev)
	}

	// A symmetric client sends no Miredo-style bubble (its answer could
	// not come through), nor does anyone to a peer that sent trailers.
	for _, tc := range []struct {
		name  string
		self  Self
		setup func(en *env)
	}{
		{"symmetric", symSelf, nil},
		{"peer reads trailers", restricted, func(en *env) {
			en.udp(viaServer(peerMap, trBubble(peerAddr, selfAddr, trailers{nonce: nonce(9)})), server)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			en, _ := extEnv(t, tc.self, func(c *Config) { c.Disable = ExtSequential })
			if tc.setup != nil {
				tc.setup(en)
			}
			en.tun(pkt(selfAddr, peerAddr, 8))
			en.clk.advance(2 * time.Second)
			en.tick()
			for _, s := range en.sentAll() {
				if s.src.IsLinkLocalUnicast() {
					t.Errorf("Miredo-style bubble sent: %+v", s)
				}
			}
		})
	}
}

// ext returns a copy of peer a's RFC 6081 state.
func (en *env) ext(a netip.Addr) extState {
	k := a.As16()
	s := en.e.table.shardOf(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.lookup(&k)
	if !ok || s.extIf(i) == nil {
		en.t.Fatalf("no RFC 6081 state for %v", a)
	}
	return *s.ext[i]
}

// TestNonceVerification: a direct bubble from another mapping than the
// peer's address names is accepted when it echoes a nonce we sent in the
// last 30 s (§5.2.4.4): the peer is then reached at that mapping, and gets
// a bubble back at once.
func TestNonceVerification(t *testing.T) {
	probed := func(en *env) { en.tun(pkt(selfAddr, peerAddr, 8)) }
	cases := []struct {
		name    string
		setup   func(en *env)
		nonce   func(x extState) *[proto.TrailerNonceLen]byte
		want    verdict
		mapping netip.AddrPort
	}{
		{"our nonce", probed, func(x extState) *[4]byte { return &x.nonceSent }, consumed, peerMap2},
		{"our previous nonce", func(en *env) {
			probed(en)
			en.clk.advance(2 * time.Second)
			en.tick()
		}, func(x extState) *[4]byte { return &x.noncePrev }, consumed, peerMap2},
		{"another nonce", probed, func(extState) *[4]byte { return nonce(7) }, drop(DropMismatch), peerMap},
		{"no nonce", probed, func(extState) *[4]byte { return nil }, drop(DropMismatch), peerMap},
		{"our nonce, 31 s old", func(en *env) {
			probed(en)
			en.clk.advance(31 * time.Second)
		}, func(x extState) *[4]byte { return &x.nonceSent }, drop(DropMismatch), peerMap},
		{"trusted peer heard now keeps its mapping", func(en *env) {
			probed(en)
			en.trust(peerAddr, peerMap)
		}, func(x extState) *[4]byte { return &x.nonceSent }, drop(DropMismatch), peerMap},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en, _ := extEnv(t, restricted)
			tc.setup(en)
			b := bubble(peerAddr, selfAddr)
			if n := tc.nonce(en.ext(peerAddr)); n != nil {
				b = trBubble(peerAddr, selfAddr, trailers{nonce: n})
			}
			v := en.udp(b, peerMap2)
			if v != tc.want {
				t.Errorf("verdict %+v (%v), want %+v (%v)", v, v.reason, tc.want, tc.want.reason)
			}
			p, _ := en.peer(peerAddr)
			if p.mapping() != tc.mapping {
				t.Errorf("peer at %v, want %v", p.mapping(), tc.mapping)
			}
			if v == consumed {
				// The queued packet and a bubble back, to the new mapping.
				if got := en.sentTo(); len(got) != 2 || got[0] != peerMap2 || got[1] != peerMap2 {
					t.Errorf("sent to %v", got)
				}
				if en.e.Stats().NonceVerified != 1 {
					t.Errorf("not counted: %+v", en.e.Stats())
				}
			}
		})
	}
}

// TestIndirectFromPeer: a peer's indirect bubble (via our server, with its
// origin) is answered with a direct bubble to the origin echoing its nonce,
// one to each alternate address (§5.6.4.2), and, while the path is not up,
// an indirect bubble of our own (§3.1); once it is up, with one direct
// bubble down it (§6.5).
func TestIndirectFromPeer(t *testing.T) {
	en, _ := extEnv(t, restricted)
	in := viaServer(peerMap, trBubble(peerAddr, selfAddr, trailers{nonce: nonce(5), alts: []netip.AddrPort{peerLocal}}))
	if v := en.udp(in, server); v != consumed {
		t.Fatalf("verdict %+v", v)
	}
	got := en.sentAll()
	byTo := map[netip.AddrPort]sentBubble{}
	for _, s := range got {
		byTo[s.to] = s
	}
	if len(got) != 3 || byTo[server].dst != peerAddr || !byTo[server].tr.HasNonce ||
		byTo[peerMap].tr.Nonce != *nonce(5) || byTo[peerLocal].tr.Nonce != *nonce(5) {
		t.Fatalf("sent %+v: want our indirect bubble, and the nonce back to the origin and the alternate", got)
	}
	if x := en.ext(peerAddr); x.nonceRecv != *nonce(5) || x.nalts != 1 || x.alts[0] != peerLocal || x.bits&xSpeaks == 0 {
		t.Errorf("state %+v", x)
	}
	// Its answer to our bubble, from the mapping in its address, makes it
	// trusted; its next indirect bubble gets one bubble, to that mapping.
	en.udp(trBubble(peerAddr, selfAddr, trailers{nonce: en.sentNonce(peerAddr)}), peerMap)
	en.clk.advance(3 * time.Second)
	en.udp(viaServer(peerMap, trBubble(peerAddr, selfAddr, trailers{nonce: nonce(6)})), server)
	if got := en.sentAll(); len(got) != 1 || got[0].to != peerMap || got[0].tr.Nonce != *nonce(6) {
		t.Errorf("to a trusted peer: %+v", got)
	}
	// A bubble without a nonce clears the one received (§5.2.4.3).
	en.udp(viaServer(peerMap, bubble(peerAddr, selfAddr)), server)
	if x := en.ext(peerAddr); x.bits&xRecv != 0 {
		t.Errorf("nonce kept: %+v", x)
	}
}

// TestIndirectBubbleBudget: whoever forges our server's address may send
// indirect bubbles from any number of Teredo addresses; what we send back
// stays within the reply budget (10 at once, then 10 a second) and the
// budget of our own indirect bubbles (the same).
func TestIndirectBubbleBudget(t *testing.T) {
	en, _ := extEnv(t, restricted)
	sent := 0
	for i := range 200 {
		m := netip.AddrPortFrom(attacker.Addr(), uint16(1000+i))
		en.udp(viaServer(m, trBubble(teredoAddr(serverIP, m), selfAddr, trailers{nonce: nonce(1), alts: []netip.AddrPort{peerLocal}})), server)
		sent += len(en.out.UDP) + len(en.out.Via)
	}
	st := en.e.Stats()
	// Alternates and origins share the reply budget; indirect bubbles
	// have their own.
	if sent > 2*replyBurst || st.IndirectBubbles > replyBurst {
		t.Errorf("%d datagrams sent for 200 forged bubbles (%d indirect): %+v", sent, st.IndirectBubbles, st)
	}
}

// TestTrailerRules: a bubble whose trailer asks for it to be dropped is
// dropped (§4.1), as is an indirect bubble with a malformed Alternate
// Address trailer (§5.6.4.2); a truncated trailer ends the reading and the
// bubble stands (§5.1.2).
func TestTrailerRules(t *testing.T) {
	base := bubble(peerAddr, selfAddr)
	cases := []struct {
		name    string
		trailer []byte
		want    verdict
	}{
		{"discard type", []byte{0x41, 0}, drop(DropTrailer)},
		{"bad alternate", []byte{byte(proto.TrailerAlternateAddress), 8, 0, 0, 127, 0, 0, 1, 0, 1}, drop(DropTrailer)},
		{"skipped type", []byte{0x85, 1, 0}, consumed},
		{"truncated", []byte{byte(proto.TrailerNonce), 4, 1}, consumed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en, _ := extEnv(t, restricted)
			if v := en.udp(viaServer(peerMap, append(append([]byte(nil), base...), tc.trailer...)), server); v != tc.want {
				t.Errorf("verdict %+v (%v), want %+v", v, v.reason, tc.want)
			}
		})
	}
}

// TestUPnP: behind a single UPnP-mapped symmetric NAT no bubble goes out
// to open the NAT (an indirect bubble's origin is still answered); packets
// go back along the flow a peer's packet came in on, to the mapping it
// came from, whatever the peer's address says (where RFC 6081 §5.3.4.2-3
// would aim at the address's mapping). Without the mapping, a symmetric
// client bubbles as usual.
func TestUPnP(t *testing.T) {
	upnp := Self{Addr: selfAddr, Server: server, Symmetric: true, UPnP: true}
	cases := []struct {
		name string
		self Self
		// what a round and an answer to an indirect bubble send
		round, answer []netip.AddrPort
	}{
		{"UPnP, one NAT", upnp, []netip.AddrPort{server}, []netip.AddrPort{server, peerMap}},
		// Direct bubbles first, as Miredo sends them.
		{"no UPnP", Self{Addr: selfAddr, Server: server, Symmetric: true}, []netip.AddrPort{peerMap, server}, []netip.AddrPort{server, peerMap}},
		{"nested NATs", Self{Addr: selfAddr, Server: server, Symmetric: true, UPnP: true, UPnPMapping: selfLocal},
			[]netip.AddrPort{peerMap, server}, []netip.AddrPort{server, peerMap}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en, _ := extEnv(t, tc.self, func(c *Config) { c.Disable = ExtSequential | ExtPortPreserving })
			en.tun(pkt(selfAddr, peerAddr, 8))
			if got := en.sentTo(); !slices.Equal(got, tc.round) {
				t.Errorf("round sent to %v, want %v", got, tc.round)
			}
			other := teredoAddr(serverIP, netip.MustParseAddrPort("198.51.100.7:7000"))
			en.udp(viaServer(netip.MustParseAddrPort("198.51.100.7:7000"), trBubble(other, selfAddr, trailers{nonce: nonce(1)})), server)
			want := []netip.AddrPort{tc.answer[0]}
			if len(tc.answer) > 1 {
				want = append(want, netip.MustParseAddrPort("198.51.100.7:7000"))
			}
			if got := en.sentTo(); !slices.Equal(got, want) {
				t.Errorf("answer to an indirect bubble sent to %v, want %v", got, want)
			}
		})
	}
	// The peer's answer to our nonce comes in through the mapping from a
	// port of its NAT's choosing: that is where packets to it go.
	en, _ := extEnv(t, upnp)
	en.tun(pkt(selfAddr, peerAddr, 8))
	en.udp(trBubble(peerAddr, selfAddr, trailers{nonce: en.sentNonce(peerAddr)}), peerMap2)
	if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != sent || en.sentTo()[0] != peerMap2 {
		t.Errorf("data %+v to %v, want %v", v, en.sentTo(), peerMap2)
	}
	// From the second round, the Miredo-style bubble too: a Miredo peer's
	// answer gets in through the mapping.
	en, _ = extEnv(t, upnp)
	en.tun(pkt(selfAddr, peerAddr, 8))
	en.clk.advance(2 * time.Second)
	en.tick()
	if st := en.e.Stats(); st.CompatBubbles != 1 {
		t.Errorf("%d Miredo-style bubbles", st.CompatBubbles)
	}
}

// TestPortPreserving: behind a port-preserving symmetric NAT a round to an
// untrusted peer opens a random port and advertises it (§5.4.4.2); the
// port's first bubble waits for the peer's indirect bubble and goes to its
// random port, or to its address's mapping if it has none (§5.4.4.3,
// §3.3); a bubble to the random port makes the peer trusted there, and
// packets to it leave from that port (§5.4.4.5); one to the Teredo port
// closes the random port.
func TestPortPreserving(t *testing.T) {
	self := symSelf
	self.PortPreserving = true
	for _, tc := range []struct {
		name       string
		peerRandom uint16
		want       netip.AddrPort
	}{
		{"peer advertises a port", 41000, netip.AddrPortFrom(peerMap.Addr(), 41000)},
		{"peer has none", 0, peerMap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			en, ports := extEnv(t, self)
			en.tun(pkt(selfAddr, peerAddr, 8))
			x := en.ext(peerAddr)
			if ports.opened != 1 || x.randomPort != ports.open[0] || x.advertised != x.randomPort {
				t.Fatalf("ports %+v, state %+v", ports, x)
			}
			got := en.sentAll()
			if len(got) != 2 || got[1].tr.RandomPort != x.randomPort || got[1].to != server || len(en.out.Via) != 0 {
				t.Fatalf("first round %+v: want a direct bubble, then the indirect one with the port, nothing from the port", got)
			}
			in := trailers{nonce: nonce(3), randomPort: tc.peerRandom}
			en.udp(viaServer(peerMap, trBubble(peerAddr, selfAddr, in)), server)
			var fromPort []sentBubble
			for _, s := range en.sentAll() {
				if s.via != 0 {
					fromPort = append(fromPort, s)
				}
			}
			if len(fromPort) != 1 || fromPort[0].via != x.randomPort || fromPort[0].to != tc.want || fromPort[0].tr.RandomPort != x.randomPort {
				t.Fatalf("from the random port: %+v, want one to %v", fromPort, tc.want)
			}
			// The peer's bubble reaches the random port from its address.
			from := netip.AddrPortFrom(peerMap.Addr(), 41001)
			en.out.Reset()
			if v := en.e.fromRandomPort(bubble(peerAddr, selfAddr), from, x.randomPort, &en.out, &en.e.st.udp); v != consumed {
				t.Fatalf("bubble to the random port: %+v", v)
			}
			if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != sent || len(en.out.Via) != 1 || en.out.Via[0].Port != x.randomPort || en.out.Via[0].Addr != from {
				t.Fatalf("data %+v: UDP %v, via %+v", v, en.sentTo(), en.out.Via)
			}
			// A bubble to the Teredo port from another peer's port is no
			// use; one from this peer's address mapping closes the port.
			en.udp(bubble(peerAddr, selfAddr), peerMap)
			if len(ports.open) != 0 {
				t.Errorf("random port still open: %v", ports.open)
			}
			if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != sent || len(en.out.Via) != 0 || en.sentTo()[0] != peerMap {
				t.Errorf("after the Teredo port: %+v to %v, via %+v", v, en.sentTo(), en.out.Via)
			}
		})
	}
}

// TestRandomPortOwner: a random port takes only its own peer's datagrams;
// another peer, or one from another address, is dropped.
func TestRandomPortOwner(t *testing.T) {
	self := symSelf
	self.PortPreserving = true
	en, ports := extEnv(t, self)
	en.tun(pkt(selfAddr, peerAddr, 8))
	port := ports.open[0]
	other := teredoAddr(serverIP, netip.MustParseAddrPort("198.51.100.9:1000"))
	for _, tc := range []struct {
		name string
		b    []byte
		from netip.AddrPort
		port uint16
		want verdict
	}{
		{"not a random port", bubble(peerAddr, selfAddr), peerMap2, port + 1, drop(DropBadDst)},
		{"another peer", bubble(other, selfAddr), peerMap2, port, drop(DropMismatch)},
		{"another address", bubble(peerAddr, selfAddr), attacker, port, drop(DropMismatch)},
	} {
		en.out.Reset()
		if v := en.e.fromRandomPort(tc.b, tc.from, tc.port, &en.out, &en.e.st.udp); v != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, v, tc.want)
		}
	}
}

// ra is the server's answer to an echo test's solicitation.
func ra(n [proto.NonceLen]byte, origin netip.AddrPort) []byte {
	return proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: n, Client: origin, Dst: proto.LinkLocalClient(),
		Server: serverIP, Prefix: proto.DefaultPrefix, MTU: 1280})
}

// TestEchoTest: behind a symmetric NAT that does not keep ports, a round
// to an untrusted peer runs an echo test from a random port (§5.5.4.1.1):
// solicitations to both server addresses around a direct bubble; the
// answers' ports bracket the bubble's, whose midpoint goes in the indirect
// bubble (§5.5.4.4); without answers a second test follows after 1 s and
// a plain indirect bubble after 2 s more (§5.5.2.2).
func TestEchoTest(t *testing.T) {
	en, ports := extEnv(t, symSelf)
	en.tun(pkt(selfAddr, peerAddr, 8))
	x := en.ext(peerAddr)
	var rs []sentBubble
	var toPeer int
	for _, s := range en.sentAll() {
		switch {
		case s.rs && s.via == x.randomPort:
			rs = append(rs, s)
		case s.via == x.randomPort && s.to == peerMap:
			toPeer++
		case s.to == server && s.bubble:
			t.Errorf("indirect bubble before the prediction: %+v", s)
		}
	}
	if len(rs) != 2 || rs[0].to != server || rs[1].to != peerSrv2 || rs[0].auth != x.echo1 || rs[1].auth != x.echo2 || toPeer != 1 {
		t.Fatalf("echo test %+v, %d bubbles to the peer (state %+v)", rs, toPeer, x)
	}
	en.out.Reset()
	en.e.fromRandomPort(ra(x.echo2, netip.MustParseAddrPort("198.51.100.2:1202")), peerSrv2, x.randomPort, &en.out, &en.e.st.udp)
	en.e.fromRandomPort(ra(x.echo1, netip.MustParseAddrPort("198.51.100.2:1200")), server, x.randomPort, &en.out, &en.e.st.udp)
	got := en.sentAll()
	if len(got) != 1 || got[0].to != server || got[0].tr.RandomPort != 1201 || !got[0].tr.HasNonce {
		t.Fatalf("after both answers: %+v, want the indirect bubble predicting 1201", got)
	}
	if st := en.e.Stats(); st.EchoTests != 1 || st.Predictions != 1 || ports.opened != 1 {
		t.Errorf("stats %+v", st)
	}

	// No answers: a second test after 1 s, then the plain bubble.
	en, ports = extEnv(t, symSelf)
	en.tun(pkt(selfAddr, peerAddr, 8))
	en.clk.advance(time.Second)
	en.tick()
	if st := en.e.Stats(); st.EchoTests != 2 {
		t.Fatalf("no second test: %+v", st)
	}
	en.clk.advance(2 * time.Second)
	en.tick()
	got = en.sentAll()
	if len(got) == 0 || got[0].to != server || got[0].tr.RandomPort != 0 || len(ports.open) != 0 {
		t.Fatalf("after two tests: %+v, ports %v", got, ports.open)
	}
	// An answer with another nonce is no answer.
	if v := en.e.fromRandomPort(ra([8]byte{9}, peerMap), server, 50001, &en.out, &en.e.st.udp); v.disp != dispDropped {
		t.Errorf("stray answer: %+v", v)
	}
}

// TestHairpin: a peer behind our own NAT that does not hairpin answers at
// the local address we advertised; the answer is accepted only with our
// nonce, and the peer is then reached at its local address (RFC 4380
// §5.2.4 allows a non-global address for a local peer).
func TestHairpin(t *testing.T) {
	en, _ := extEnv(t, restricted)
	en.tun(pkt(selfAddr, peerAddr, 8))
	if v := en.udp(bubble(peerAddr, selfAddr), peerLocal); v != drop(DropNonGlobal) {
		t.Errorf("local answer without a nonce: %+v", v)
	}
	if v := en.udp(pkt(peerAddr, selfAddr, 8), peerLocal); v != drop(DropNonGlobal) {
		t.Errorf("local packet from an unverified peer: %+v", v)
	}
	n := en.ext(peerAddr).nonceSent
	if v := en.udp(trBubble(peerAddr, selfAddr, trailers{nonce: &n}), peerLocal); v != consumed || en.sentTo()[0] != peerLocal {
		t.Fatalf("local answer with our nonce: %+v, sent to %v", v, en.sentTo())
	}
	if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != sent || en.sentTo()[0] != peerLocal {
		t.Errorf("data %+v to %v", v, en.sentTo())
	}
	if v := en.udp(pkt(peerAddr, selfAddr, 8), peerLocal); v != sent {
		t.Errorf("data from the local peer: %+v", v)
	}
	// Without the extension nothing comes from a private address.
	en, _ = extEnv(t, restricted, func(c *Config) { c.Disable = ExtHairpin })
	if v := en.udp(bubble(peerAddr, selfAddr), peerLocal); v != drop(DropNonGlobal) {
		t.Errorf("without hairpinning: %+v", v)
	}
}

// TestLoadReduction: a trusted peer that reads trailers, silent for 30 s,
// is asked for a direct bubble (§5.7.4.1) before the indirect bubble; its
// answer flushes what waited and counts an indirect bubble saved (what
// happens when it does not answer: TestSolicitationUnanswered); a
// solicitation we receive is answered with an advertisement (§5.7.4.2). A
// peer that never sent trailers (Miredo) is bubbled at once, as before.
func TestLoadReduction(t *testing.T) {
	setup := func(t *testing.T, speaks bool) *env {
		en, _ := extEnv(t, restricted)
		en.tun(pkt(selfAddr, peerAddr, 8))
		tr := trailers{}
		if speaks {
			tr.nonce = en.sentNonce(peerAddr)
		}
		en.udp(trBubble(peerAddr, selfAddr, tr), peerMap)
		en.clk.advance(31 * time.Second)
		return en
	}
	en := setup(t, true)
	if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != queuedV {
		t.Fatalf("stale peer: %+v", v)
	}
	got := en.sentAll()
	if len(got) != 1 || got[0].to != peerMap || !got[0].tr.HasDiscovery || got[0].tr.Discovery != proto.DiscoverySolicitation || !got[0].tr.HasNonce {
		t.Fatalf("sent %+v, want one solicitation to the peer", got)
	}
	adv := trBubble(peerAddr, selfAddr, trailers{nonce: &got[0].tr.Nonce, discovery: proto.DiscoveryAdvertisement, hasDisc: true})
	if v := en.udp(adv, peerMap); v != consumed || len(en.out.UDP) != 1 {
		t.Fatalf("advertisement: %+v, sent %v", v, en.sentTo())
	}
	if st := en.e.Stats(); st.IndirectSaved != 1 || st.IndirectBubbles != 1 || st.Solicitations != 1 {
		t.Errorf("stats %+v", st)
	}

	// A Miredo peer: the indirect bubble at once.
	en = setup(t, false)
	en.tun(pkt(selfAddr, peerAddr, 8))
	if st := en.e.Stats(); st.Solicitations != 0 || st.IndirectBubbles != 2 {
		t.Errorf("to a peer without trailers: %+v", st)
	}

	// We answer a verified peer's solicitation, echoing its nonce.
	en = setup(t, true)
	en.udp(trBubble(peerAddr, selfAddr, trailers{nonce: nonce(4), discovery: proto.DiscoverySolicitation, hasDisc: true}), peerMap)
	got = en.sentAll()
	if len(got) != 1 || got[0].to != peerMap || got[0].tr.Discovery != proto.DiscoveryAdvertisement || got[0].tr.Nonce != *nonce(4) {
		t.Errorf("answer %+v", got)
	}
	// But not an unverified one's.
	if v := en.udp(trBubble(peerAddr, selfAddr, trailers{discovery: proto.DiscoverySolicitation, hasDisc: true}), attacker); v.disp != dispDropped || len(en.out.UDP) != 0 {
		t.Errorf("stranger's solicitation: %+v, sent %v", v, en.sentTo())
	}
}

// TestSolicitationUnanswered: a solicitation is sent once; unanswered
// after the 2 s bubble spacing (the peer's NAT forgot the path in the
// silence: Linux's does after 30 s), the bubble round goes through the
// server (RFC 4380 §5.2.6), not two more solicitations 2 s apart
// (§5.7.2's, which kept packets waiting 6 s); and a peer that did not
// answer one is not asked again while its entry lasts, while one that did
// is asked at its next silence too.
func TestSolicitationUnanswered(t *testing.T) {
	type step struct {
		after  time.Duration // clock advance, then a Tick
		answer bool          // then the peer answers what we sent last
		send   bool          // then the host sends to the peer
		// want, after the step: solicitations, indirect bubbles, refreshes
		// saved, solicitations unanswered, in all.
		sols, indirect, saved, unanswered uint64
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"answered at once", []step{
			{answer: true, sols: 1, indirect: 1, saved: 1},
		}},
		{"answered within 2 s", []step{
			{after: 1500 * time.Millisecond, answer: true, sols: 1, indirect: 1, saved: 1},
			{after: time.Second, sols: 1, indirect: 1, saved: 1},
		}},
		{"unanswered: the bubble round at 2 s", []step{
			{after: time.Second, sols: 1, indirect: 1},
			{after: time.Second, sols: 1, indirect: 2, unanswered: 1},
			{after: 2 * time.Second, sols: 1, indirect: 3, unanswered: 1},
		}},
		{"unanswered, then not asked again", []step{
			{after: 2 * time.Second, answer: true, sols: 1, indirect: 2, unanswered: 1},
			{after: 31 * time.Second, send: true, sols: 1, indirect: 3, unanswered: 1},
			{answer: true, sols: 1, indirect: 3, unanswered: 1},
			{after: 31 * time.Second, send: true, sols: 1, indirect: 4, unanswered: 1},
		}},
		{"answered, then asked again", []step{
			{answer: true, sols: 1, indirect: 1, saved: 1},
			{after: 31 * time.Second, send: true, sols: 2, indirect: 1, saved: 1},
			{answer: true, sols: 2, indirect: 1, saved: 2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			en, _ := extEnv(t, restricted)
			en.tun(pkt(selfAddr, peerAddr, 8))
			en.udp(trBubble(peerAddr, selfAddr, trailers{nonce: en.sentNonce(peerAddr)}), peerMap)
			en.clk.advance(31 * time.Second)
			if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != queuedV {
				t.Fatalf("stale peer: %+v", v)
			}
			for i, s := range tc.steps {
				if s.after > 0 {
					en.clk.advance(s.after)
					en.tick()
				}
				if s.answer {
					// A direct bubble from its mapping echoing our
					// last nonce: what answers a solicitation and a
					// bubble round alike.
					adv := trBubble(peerAddr, selfAddr, trailers{nonce: en.sentNonce(peerAddr), discovery: proto.DiscoveryAdvertisement, hasDisc: true})
					if v := en.udp(adv, peerMap); v != consumed {
						t.Fatalf("step %d: answer %+v", i, v)
					}
				}
				if s.send {
					en.tun(pkt(selfAddr, peerAddr, 8))
				}
				st := en.e.Stats()
				if st.Solicitations != s.sols || st.IndirectBubbles != s.indirect || st.IndirectSaved != s.saved || st.SolicitationsUnanswered != s.unanswered {
					t.Errorf("step %d: solicitations %d, indirect %d, saved %d, unanswered %d; want %d, %d, %d, %d", i,
						st.Solicitations, st.IndirectBubbles, st.IndirectSaved, st.SolicitationsUnanswered,
						s.sols, s.indirect, s.saved, s.unanswered)
				}
			}
		})
	}
}

// TestPeerRefresh: a peer reached through a random port gets a bubble
// every 30 s while no data has gone to it since the last, 20 at most
// (§5.4.2.1); data resets the count.
func TestPeerRefresh(t *testing.T) {
	self := symSelf
	self.PortPreserving = true
	en, _ := extEnv(t, self)
	en.tun(pkt(selfAddr, peerAddr, 8))
	port := en.ext(peerAddr).randomPort
	en.out.Reset()
	en.e.fromRandomPort(bubble(peerAddr, selfAddr), peerMap2, port, &en.out, &en.e.st.udp)
	keepalives := func() (n int) {
		for range 30 {
			en.clk.advance(time.Second)
			en.tick()
			n += len(en.out.Via)
			// Keep the peer alive meanwhile, from its side.
			en.out.Reset()
			en.e.fromRandomPort(pkt(peerAddr, selfAddr, 8), peerMap2, port, &en.out, &en.e.st.udp)
		}
		return n
	}
	// The packet that waited went out when the peer was verified: no
	// keep-alive in the first 30 s.
	if n := keepalives(); n != 0 {
		t.Fatalf("%d keep-alives in the 30 s after data", n)
	}
	total := 0
	for range 26 {
		total += keepalives()
	}
	if total != maxRefreshes {
		t.Errorf("%d keep-alives in 13 idle minutes, want %d", total, maxRefreshes)
	}
	en.tun(pkt(selfAddr, peerAddr, 8)) // data: the count starts again
	if n := keepalives() + keepalives(); n != 1 {
		t.Errorf("%d keep-alives after data, want 1", n)
	}
}

// TestRandomPortBounds: no more than maxRandomPorts open at once, a port
// that cannot be opened leaves the plain extension (§5.2), and removing a
// peer closes its port.
func TestRandomPortBounds(t *testing.T) {
	self := symSelf
	self.PortPreserving = true
	en, ports := extEnv(t, self)
	for i := range maxRandomPorts + 5 {
		en.tun(pkt(selfAddr, teredoAddr(serverIP, netip.AddrPortFrom(peerMap.Addr(), uint16(2000+i))), 8))
	}
	if len(ports.open) != maxRandomPorts || en.e.Stats().PortsLimited != 5 {
		t.Errorf("%d ports open, %d limited", len(ports.open), en.e.Stats().PortsLimited)
	}
	en.e.SetSelf(Self{})
	if len(ports.open) != 0 {
		t.Errorf("%d ports open after the table was reset", len(ports.open))
	}
	en, ports = extEnv(t, self)
	ports.fail = true
	en.tun(pkt(selfAddr, peerAddr, 8))
	if got := en.sentTo(); len(got) != 2 || got[1] != server {
		t.Errorf("without a port: sent to %v", got)
	}
}

// TestSecondPath: a peer verified at one mapping and heard from in the
// last 30 s keeps it when a packet comes from the mapping in its address
// (a second path, which RFC 4380 §5.2.3 case 3 verifies by itself): the
// packet is taken, the peer stays where it was; a silent one moves.
func TestSecondPath(t *testing.T) {
	setup := func(t *testing.T) *env {
		en, _ := extEnv(t, restricted)
		en.tun(pkt(selfAddr, peerAddr, 8))
		en.udp(trBubble(peerAddr, selfAddr, trailers{nonce: en.sentNonce(peerAddr)}), peerMap2)
		return en
	}
	en := setup(t)
	if v := en.udp(pkt(peerAddr, selfAddr, 8), peerMap); v != sent {
		t.Errorf("from the address's mapping: %+v", v)
	}
	if p, _ := en.peer(peerAddr); p.mapping() != peerMap2 {
		t.Errorf("moved to %v", p.mapping())
	}
	if v := en.udp(pkt(peerAddr, selfAddr, 8), attacker); v != drop(DropMismatch) {
		t.Errorf("from elsewhere: %+v", v)
	}
	en = setup(t)
	en.clk.advance(31 * time.Second)
	if v := en.udp(pkt(peerAddr, selfAddr, 8), peerMap); v != sent {
		t.Errorf("silent peer, from the address's mapping: %+v", v)
	}
	if p, _ := en.peer(peerAddr); p.mapping() != peerMap {
		t.Errorf("silent peer stayed at %v", p.mapping())
	}
}

// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// clock is a fake clock tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// detRand fills with a counter: deterministic keys and nonces.
func detRand() func([]byte) {
	var n byte
	return func(b []byte) {
		for i := range b {
			n++
			b[i] = n
		}
	}
}

// Lab addresses: documentation ranges only.
var (
	serverIP  = netip.MustParseAddr("192.0.2.10")
	server    = netip.AddrPortFrom(serverIP, proto.Port)
	peerMap   = netip.MustParseAddrPort("198.51.100.2:40000") // a client behind a NAT
	peerMap2  = netip.MustParseAddrPort("198.51.100.2:40001") // the same NAT, another port (symmetric)
	selfMap   = netip.MustParseAddrPort("203.0.113.2:50000")
	relayMap  = netip.MustParseAddrPort("192.0.2.20:61000") // a relay's socket
	relay2Map = netip.MustParseAddrPort("192.0.2.21:61000")
	native    = netip.MustParseAddr("2001:db8:2::2")
	native2   = netip.MustParseAddr("2001:db8:2::3")
	peerAddr  = teredoAddr(serverIP, peerMap)
	selfAddr  = teredoAddr(serverIP, selfMap)
)

func teredoAddr(srv netip.Addr, m netip.AddrPort) netip.Addr {
	return proto.Address{Prefix: proto.DefaultPrefix, Server: srv, MappedPort: m.Port(), MappedAddr: m.Addr()}.Addr()
}

// pkt builds an IPv6 packet with an n-byte UDP-ish payload (next header 17,
// content irrelevant to the engine).
func pkt(src, dst netip.Addr, n int) []byte {
	b := proto.AppendIPv6Header(nil, proto.IPv6Fields{PayloadLength: uint16(n), NextHeader: 17, HopLimit: 64, Src: src, Dst: dst})
	for i := range n {
		b = append(b, byte(i))
	}
	return b
}

func bubble(src, dst netip.Addr) []byte { return proto.AppendBubble(nil, src, dst, 0) }

// env is one engine on a fake clock with an Out to collect from.
type env struct {
	t   *testing.T
	clk *clock
	e   *Engine
	out Out
}

func newEnv(t *testing.T, mode Mode, tweak ...func(*Config)) *env {
	t.Helper()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	cfg := Config{Mode: mode, Now: clk.now, Rand: detRand(), MaxPeers: 1024}
	for _, f := range tweak {
		f(&cfg)
	}
	en := &env{t: t, clk: clk, e: New(cfg)}
	if mode == Client {
		en.e.SetSelf(Self{Addr: selfAddr, Server: server})
	}
	return en
}

func (en *env) tun(p []byte) verdict {
	en.t.Helper()
	en.out.Reset()
	return en.e.fromTunnelCounted(p, &en.out)
}

func (en *env) udp(b []byte, from netip.AddrPort) verdict {
	en.t.Helper()
	en.out.Reset()
	return en.e.fromUDPCounted(b, from, &en.out)
}

func (en *env) tick() {
	en.out.Reset()
	en.e.Tick(&en.out)
}

// sentTo lists the UDP destinations in out, in order.
func (en *env) sentTo() []netip.AddrPort {
	var r []netip.AddrPort
	for _, m := range en.out.UDP {
		r = append(r, m.Addr)
	}
	return r
}

// peer returns a copy of the entry for a, and whether there is one.
func (en *env) peer(a netip.Addr) (peer, bool) {
	k := a.As16()
	s := en.e.table.shardOf(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.lookup(&k)
	if !ok {
		return peer{}, false
	}
	return s.peers[i], true
}

// trust makes a a trusted peer at mapping m, heard from now.
func (en *env) trust(a netip.Addr, m netip.AddrPort) {
	k := a.As16()
	s := en.e.table.shardOf(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.lookup(&k)
	if !ok {
		i, _ = s.insert(&k, en.e.now(), queueDrop{en.e, &en.e.st.tick})
	}
	p := &s.peers[i]
	p.setMapping(m)
	p.flags |= fTrusted
	if !proto.HasPrefix(a, proto.DefaultPrefix) {
		p.flags |= fNative
	}
	p.lastRx = en.e.now()
}

// isBubbleTo checks that message i of out is a bubble to dst.
func (en *env) bubbleAt(i int) (src, dst netip.Addr) {
	en.t.Helper()
	if i >= len(en.out.UDP) {
		en.t.Fatalf("no UDP message %d (have %d)", i, len(en.out.UDP))
	}
	m := en.out.UDP[i]
	ip := proto.IPv6(m.Buf[:m.N])
	if len(ip) != proto.IPv6HeaderLen || !ip.IsBubble() || ip.HopLimit() != 0 {
		en.t.Fatalf("UDP message %d is not a bubble: %x", i, ip)
	}
	return ip.Src(), ip.Dst()
}

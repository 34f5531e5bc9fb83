// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// TestBubbleBudget follows one unanswered peer through §5.2.6: bubbles at
// least 2 s apart, repeated by Tick, 4 in all; then the queue is dropped
// with an ICMPv6 error, new packets get errors at once, and after 300 s the
// budget starts again.
func TestBubbleBudget(t *testing.T) {
	en := newEnv(t, ConeRelay)
	p := pkt(native, peerAddr, 8)
	bubbles := func() uint64 { return en.e.Stats().IndirectBubbles }

	if v := en.tun(p); v != queuedV || bubbles() != 1 {
		t.Fatalf("first: %+v, %d bubbles", v, bubbles())
	}
	en.clk.advance(1900 * time.Millisecond)
	if v := en.tun(p); v != queuedV || bubbles() != 1 {
		t.Fatalf("within 2 s: %+v, %d bubbles", v, bubbles())
	}
	en.tick()
	if bubbles() != 1 {
		t.Fatalf("Tick within 2 s sent a bubble")
	}
	for i := 2; i <= maxProbes; i++ {
		en.clk.advance(2 * time.Second)
		en.tick()
		if bubbles() != uint64(i) || len(en.out.Local) != 0 {
			t.Fatalf("retry %d: %d bubbles, %d to host", i, bubbles(), len(en.out.Local))
		}
	}
	if st := en.e.Stats(); st.QueuedBytes != 2*uint64(queueCost(len(p))) {
		t.Fatalf("queued bytes %d", st.QueuedBytes)
	}
	// The fourth went unanswered for 2 s: give up.
	en.clk.advance(2 * time.Second)
	en.tick()
	if bubbles() != maxProbes || len(en.out.Local) != 1 {
		t.Fatalf("give up: %d bubbles, %d to host", bubbles(), len(en.out.Local))
	}
	st := en.e.Stats()
	if st.QueuedBytes != 0 || st.Dropped[DropQueueExpired] != 2 || st.Unreachables != 1 {
		t.Fatalf("after give up: %+v", st)
	}
	// Budget used up: errors, no bubbles, nothing queued.
	en.clk.advance(10 * time.Second)
	if v := en.tun(p); v != drop(DropUnreachable) || len(en.out.Local) != 1 || len(en.out.UDP) != 0 {
		t.Fatalf("exhausted: %+v, %d local, %d UDP", v, len(en.out.Local), len(en.out.UDP))
	}
	// Keep the entry alive (idle expiry is a minute) until 300 s after the
	// last bubble.
	for range 5 {
		en.clk.advance(55 * time.Second)
		en.tun(p)
		en.tick()
	}
	en.clk.advance(30 * time.Second)
	if v := en.tun(p); v != queuedV || len(en.out.UDP) != 1 {
		t.Fatalf("after 300 s: %+v, %d UDP", v, len(en.out.UDP))
	}
}

// TestAnswerResetsBudget: a verified peer that falls silent gets a fresh
// round of bubbles.
func TestAnswerResetsBudget(t *testing.T) {
	en := newEnv(t, RestrictedRelay)
	p := pkt(native, peerAddr, 8)
	en.tun(p)
	en.clk.advance(2 * time.Second)
	en.tick()
	en.udp(bubble(peerAddr, native), peerMap) // answer from the embedded mapping
	if pe, _ := en.peer(peerAddr); !pe.has(fTrusted) || pe.probes != 0 {
		t.Fatalf("peer %+v", pe)
	}
	if v := en.tun(p); v != sent {
		t.Fatalf("verified: %+v", v)
	}
	// Silent for 30 s: valid no more, bubbled again (direct and indirect).
	en.clk.advance(29 * time.Second)
	if v := en.tun(p); v != sent {
		t.Fatalf("29 s: %+v", v)
	}
	en.clk.advance(time.Second)
	if v := en.tun(p); v != queuedV || !slices.Equal(en.sentTo(), []netip.AddrPort{peerMap, server}) {
		t.Fatalf("30 s: %+v to %v", v, en.sentTo())
	}
}

// TestExpiry: entries nobody uses for a minute go away at Tick.
func TestExpiry(t *testing.T) {
	en := newEnv(t, ConeRelay)
	en.trust(peerAddr, peerMap)
	other := teredoAddr(serverIP, peerMap2)
	en.trust(other, peerMap2)
	en.clk.advance(50 * time.Second)
	en.tun(pkt(native, other, 8)) // used: stays
	en.clk.advance(11 * time.Second)
	en.tick()
	if _, ok := en.peer(peerAddr); ok {
		t.Error("idle peer not expired")
	}
	if _, ok := en.peer(other); !ok {
		t.Error("used peer expired")
	}
	if st := en.e.Stats(); st.Expired != 1 || st.Peers != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestConnectivityTest follows a client's test of a native peer (§5.2.9):
// up to 4 echo requests 2 s apart through the server with one nonce; the
// reply from a relay verifies that relay as the peer's mapping and flushes
// the queue; forged and late replies do not.
func TestConnectivityTest(t *testing.T) {
	en := newEnv(t, Client)
	out := pkt(selfAddr, native, 8)
	en.tun(out)
	req := proto.IPv6(append([]byte(nil), en.out.UDP[0].Buf...))
	m, _ := proto.ParseICMPv6(req)
	reply := func(data []byte) []byte {
		return proto.AppendEchoReply(nil, proto.EchoFields{Src: native, Dst: selfAddr, HopLimit: 60, ID: m.EchoID(), Seq: m.EchoSeq(), Data: data})
	}
	for i := 2; i <= 3; i++ {
		en.clk.advance(2 * time.Second)
		en.tick()
		if len(en.out.UDP) != 1 || en.out.UDP[0].Addr != server {
			t.Fatalf("retry %d: %v", i, en.sentTo())
		}
		r, _ := proto.ParseICMPv6(proto.IPv6(en.out.UDP[0].Buf))
		if string(r.Body()) != string(m.Body()) {
			t.Fatalf("retry %d changed the nonce", i)
		}
	}
	// An incoming packet from the peer via relayMap waits for the test too.
	if v := en.udp(pkt(native, selfAddr, 9), relayMap); v != queuedV {
		t.Fatalf("incoming while testing: %+v", v)
	}
	// A forged reply (wrong nonce) is just another unverified packet.
	if v := en.udp(reply([]byte("12345678")), relay2Map); v != queuedV {
		t.Fatalf("forged reply: %+v", v)
	}
	if pe, _ := en.peer(native); pe.has(fTrusted) {
		t.Fatal("forged reply verified the peer")
	}
	// The real one, via relayMap.
	if v := en.udp(reply(m.Body()), relayMap); v != consumed {
		t.Fatalf("reply: %+v", v)
	}
	if !slices.Equal(en.sentTo(), []netip.AddrPort{relayMap}) || len(en.out.Local) != 1 || len(en.out.Local[0]) != proto.IPv6HeaderLen+9 {
		t.Fatalf("flush: UDP %v, %d local", en.sentTo(), len(en.out.Local))
	}
	if st := en.e.Stats(); st.Dropped[DropQueueMismatch] != 1 || st.PingReplies != 1 {
		t.Errorf("the forged reply, queued from another relay, must be dropped at flush: %+v", st)
	}
	if v := en.tun(out); v != sent || en.sentTo()[0] != relayMap {
		t.Fatalf("after the test: %+v %v", v, en.sentTo())
	}

	// A late reply (past 30 s) verifies nothing.
	en2 := newEnv(t, Client)
	en2.tun(pkt(selfAddr, native2, 8))
	r2, _ := proto.ParseICMPv6(proto.IPv6(en2.out.UDP[0].Buf))
	late := proto.AppendEchoReply(nil, proto.EchoFields{Src: native2, Dst: selfAddr, HopLimit: 60, ID: r2.EchoID(), Seq: 1, Data: r2.Body()})
	en2.clk.advance(31 * time.Second)
	en2.udp(late, relayMap)
	if pe, _ := en2.peer(native2); pe.has(fTrusted) {
		t.Error("late reply verified the peer")
	}
}

// TestConnectivityTestUnreachable: Miredo also takes a destination
// unreachable from the peer that quotes our echo request as the answer.
func TestConnectivityTestUnreachable(t *testing.T) {
	en := newEnv(t, Client)
	en.tun(pkt(selfAddr, native, 8))
	req := proto.IPv6(append([]byte(nil), en.out.UDP[0].Buf...))
	errPkt := proto.AppendDestUnreachable(nil, native, proto.UnreachPort, req)
	if v := en.udp(errPkt, relayMap); v != consumed {
		t.Fatalf("%+v", v)
	}
	if pe, _ := en.peer(native); !pe.has(fTrusted) || pe.mapping() != relayMap {
		t.Fatalf("peer %+v", pe)
	}
}

// TestPingBudget: four tests, then ICMPv6 errors for packets to the peer.
func TestPingBudget(t *testing.T) {
	en := newEnv(t, Client)
	p := pkt(selfAddr, native, 8)
	en.tun(p)
	for range 3 {
		en.clk.advance(2 * time.Second)
		en.tick()
	}
	if st := en.e.Stats(); st.Pings != 4 {
		t.Fatalf("%d pings", st.Pings)
	}
	en.clk.advance(2 * time.Second)
	en.tick()
	if len(en.out.Local) != 1 {
		t.Fatalf("no error at give-up")
	}
	if v := en.tun(p); v != drop(DropUnreachable) {
		t.Fatalf("%+v", v)
	}
}

// TestICMPRateLimit: at most 10 errors a second reach the host.
func TestICMPRateLimit(t *testing.T) {
	en := newEnv(t, ConeRelay)
	n := 0
	for range 15 {
		en.tun(pkt(native, native2, 8))
		n += len(en.out.Local)
	}
	if n != icmpPerSecond {
		t.Fatalf("%d errors in one second, want %d", n, icmpPerSecond)
	}
	en.clk.advance(time.Second)
	if en.tun(pkt(native, native2, 8)); len(en.out.Local) != 1 {
		t.Fatal("no error in the next second")
	}
	if st := en.e.Stats(); st.Unreachables != 11 || st.UnreachablesLimited != 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestSetSelf: a new address empties the table and its queues; the same
// address (a new server or NAT type) keeps it.
func TestSetSelf(t *testing.T) {
	en := newEnv(t, Client)
	en.trust(native, relayMap)
	en.tun(pkt(selfAddr, peerAddr, 100))
	en.e.SetSelf(Self{Addr: selfAddr, Server: server, Cone: true})
	if st := en.e.Stats(); st.Peers != 2 {
		t.Fatalf("same address: %d peers", st.Peers)
	}
	en.e.SetSelf(Self{Addr: teredoAddr(serverIP, peerMap2), Server: server})
	st := en.e.Stats()
	if st.Peers != 0 || st.QueuedBytes != 0 || st.Dropped[DropQueueReset] != 1 {
		t.Fatalf("new address: %+v", st)
	}
	en.e.SetSelf(Self{})
	if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != drop(DropNotQualified) {
		t.Fatalf("after loss: %+v", v)
	}
}

// SPDX-License-Identifier: MIT

package tunnel

import (
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// TestStaleRelayRetested: a client whose packets to a trusted native peer
// go unanswered for 2 s (its relay died, or restarted on another port)
// tests the peer again while it goes on sending, at most once every 2 s;
// the answer through the relay now serving it moves the peer there, and
// the next packets follow. A peer that answers is never retested.
func TestStaleRelayRetested(t *testing.T) {
	en := newEnv(t, Client)
	en.trust(native, relayMap)
	send := func() []string {
		t.Helper()
		if v := en.tun(pkt(selfAddr, native, 8)); v != sent {
			t.Fatalf("host packet: %+v", v)
		}
		var to []string
		for _, a := range en.sentTo() {
			to = append(to, a.String())
		}
		return to
	}
	// Answered traffic: no test.
	for range 30 {
		en.clk.advance(100 * time.Millisecond)
		if to := send(); len(to) != 1 || to[0] != relayMap.String() {
			t.Fatalf("answered peer: sent to %v", to)
		}
		en.udp(pkt(native, selfAddr, 8), relayMap)
	}
	// The relay dies: 2 s of sending without an answer, then one test
	// through the server beside the packet, and none for 2 s more.
	var tests []time.Duration
	var req proto.IPv6
	for i := range 50 {
		en.clk.advance(100 * time.Millisecond)
		to := send()
		if to[0] != relayMap.String() {
			t.Fatalf("packet %d went to %v while the peer is still trusted", i, to)
		}
		if len(to) == 2 {
			if to[1] != server.String() {
				t.Fatalf("test sent to %v, want our server", to[1])
			}
			tests = append(tests, time.Duration(i+1)*100*time.Millisecond)
			req = proto.IPv6(append([]byte(nil), en.out.UDP[1].Buf[:en.out.UDP[1].N]...))
		}
	}
	if len(tests) < 2 || tests[0] != 2*time.Second || tests[1]-tests[0] < 2*time.Second {
		t.Fatalf("tests at %v after the last answer, want the first at 2 s and 2 s apart", tests)
	}
	// The answer arrives through the relay that replaced the dead one.
	m, _ := proto.ParseICMPv6(req)
	reply := proto.AppendEchoReply(nil, proto.EchoFields{Src: native, Dst: selfAddr, HopLimit: 60, ID: m.EchoID(), Seq: m.EchoSeq(), Data: m.Body()})
	if v := en.udp(reply, relay2Map); v != consumed {
		t.Fatalf("test answer from the new relay: %+v", v)
	}
	// The packet that started the last test, lost at the dead relay, is
	// sent again through the new one: a TCP sender backing off would
	// otherwise send nothing for seconds more.
	if to := en.sentTo(); len(to) != 1 || to[0] != relay2Map {
		t.Fatalf("with the answer, sent to %v, want the kept packet to the new relay %v", to, relay2Map)
	}
	if to := send(); len(to) != 1 || to[0] != relay2Map.String() {
		t.Fatalf("after the answer, packets go to %v, want the new relay %v", to, relay2Map)
	}
	if v := en.udp(pkt(native, selfAddr, 8), relay2Map); v != sent {
		t.Fatalf("packet from the new relay: %+v", v)
	}
}

// TestNativeTestWindow: once four connectivity tests to a native peer went
// unanswered, host packets to it are refused as unreachable, but only for
// 30 s (bubbles to Teredo peers keep §5.2.6's 300 s).
func TestNativeTestWindow(t *testing.T) {
	en := newEnv(t, Client)
	tests := func() int { return int(en.e.Stats().Pings) }
	en.tun(pkt(selfAddr, native, 8))
	for range 4 {
		en.clk.advance(2 * time.Second)
		en.tick()
	}
	if n := tests(); n != 4 {
		t.Fatalf("%d tests, want 4", n)
	}
	en.clk.advance(10 * time.Second)
	if v := en.tun(pkt(selfAddr, native, 8)); v != drop(DropUnreachable) {
		t.Fatalf("10 s after the last test: %+v, want unreachable", v)
	}
	en.clk.advance(25 * time.Second)
	if v := en.tun(pkt(selfAddr, native, 8)); v != queuedV || tests() != 5 {
		t.Fatalf("35 s after the last test: %+v with %d tests, want queued and a fifth test", v, tests())
	}
	// A Teredo peer keeps the 300 s.
	en.tun(pkt(selfAddr, peerAddr, 8))
	for range 4 {
		en.clk.advance(2 * time.Second)
		en.tick()
	}
	en.clk.advance(60 * time.Second)
	if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != drop(DropUnreachable) {
		t.Fatalf("Teredo peer 60 s after its last bubble: %+v, want unreachable", v)
	}
}

// TestStaleCopyNotResent: a native peer that was only silent (the relay is
// alive) answers the test along the same path; the packet kept for a new
// relay is then discarded, not sent twice nor counted as dropped, and a
// later packet that waits for a test is not discarded with it.
func TestStaleCopyNotResent(t *testing.T) {
	en := newEnv(t, Client)
	en.trust(native, relayMap)
	var req proto.IPv6
	for range 25 {
		en.clk.advance(100 * time.Millisecond)
		en.tun(pkt(selfAddr, native, 8))
		if len(en.out.UDP) == 2 {
			req = proto.IPv6(append([]byte(nil), en.out.UDP[1].Buf[:en.out.UDP[1].N]...))
		}
	}
	if req == nil {
		t.Fatal("no test after 2.5 s without an answer")
	}
	drops := en.e.Stats().Dropped
	m, _ := proto.ParseICMPv6(req)
	reply := proto.AppendEchoReply(nil, proto.EchoFields{Src: native, Dst: selfAddr, HopLimit: 60, ID: m.EchoID(), Seq: m.EchoSeq(), Data: m.Body()})
	en.udp(reply, relayMap)
	if to := en.sentTo(); len(to) != 0 {
		t.Fatalf("answer along the same path: sent %v, want nothing", to)
	}
	if got := en.e.Stats().Dropped; got != drops {
		t.Fatalf("drops %v -> %v: the discarded copy was counted", drops, got)
	}
	// Silent past the 30 s validity: the next packet waits for a test,
	// and the answer along the same path delivers it.
	en.clk.advance(31 * time.Second)
	en.tun(pkt(selfAddr, native, 8))
	req = nil
	for _, u := range en.out.UDP {
		if u.Addr == server {
			req = proto.IPv6(append([]byte(nil), u.Buf[:u.N]...))
		}
	}
	if req == nil {
		t.Fatal("no test for a peer silent for 31 s")
	}
	m, _ = proto.ParseICMPv6(req)
	reply = proto.AppendEchoReply(nil, proto.EchoFields{Src: native, Dst: selfAddr, HopLimit: 60, ID: m.EchoID(), Seq: m.EchoSeq(), Data: m.Body()})
	en.udp(reply, relayMap)
	if to := en.sentTo(); len(to) != 1 || to[0] != relayMap {
		t.Fatalf("after the answer: sent to %v, want the waiting packet to %v", to, relayMap)
	}
}

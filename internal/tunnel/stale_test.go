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
	if to := send(); len(to) != 1 || to[0] != relay2Map.String() {
		t.Fatalf("after the answer, packets go to %v, want the new relay %v", to, relay2Map)
	}
	if v := en.udp(pkt(native, selfAddr, 8), relay2Map); v != sent {
		t.Fatalf("packet from the new relay: %+v", v)
	}
}

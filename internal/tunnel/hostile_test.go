package tunnel

import (
	"net/netip"
	"testing"
	"time"
)

// attacker is a host that saw one of our bubbles on the wire (or guessed a
// mapping): a global address that is no peer's mapping.
var attacker = netip.MustParseAddrPort("203.0.113.66:6666")

// ourLL is the link-local source en bubbles peer a from, back key epochs
// before the current one.
func ourLL(en *env, a netip.Addr, back uint32) netip.Addr {
	k := a.As16()
	return en.e.bubbleSource(&k, epochOf(en.e.now())-back)
}

// TestHMACBubble: a bubble addressed to the link-local source we bubble a
// peer from verifies a mapping other than the one its address names (a
// peer behind a symmetric NAT) only while a bubble of ours to that peer is
// outstanding, and never moves a trusted peer heard from in the last 30 s.
func TestHMACBubble(t *testing.T) {
	probed := func(en *env) { en.tun(pkt(native, peerAddr, 8)) } // one bubble out, packet queued
	cases := []struct {
		name  string
		mode  Mode
		setup func(en *env)
		from  netip.AddrPort
		want  verdict
		// where the peer's mapping must point afterwards (zero: no entry)
		mapping netip.AddrPort
		// the bubble's destination is our source this many key epochs ago
		back uint32
	}{
		{"answer to our bubble", ConeRelay, probed, peerMap2, consumed, peerMap2, 0},
		{"answer 29 s after our bubble", ConeRelay, func(en *env) { probed(en); en.clk.advance(29 * time.Second) },
			peerMap2, consumed, peerMap2, 0},
		{"no bubble outstanding: trusted peer heard now", ConeRelay, func(en *env) { en.trust(peerAddr, peerMap) },
			attacker, drop(DropMismatch), peerMap, 0},
		{"bubble outstanding but trusted peer heard now", ConeRelay, func(en *env) {
			probed(en)
			en.trust(peerAddr, peerMap)
		}, attacker, drop(DropMismatch), peerMap, 0},
		{"our bubble is 31 s old", ConeRelay, func(en *env) { probed(en); en.clk.advance(31 * time.Second) },
			attacker, drop(DropMismatch), peerMap, 0},
		{"client: trusted peer heard now", Client, func(en *env) { en.trust(peerAddr, peerMap) },
			attacker, drop(DropMismatch), peerMap, 0},
		{"client: no entry", Client, nil, attacker, drop(DropMismatch), netip.AddrPort{}, 0},
		{"client: answer to our bubble", Client, func(en *env) { en.tun(pkt(selfAddr, peerAddr, 8)) },
			peerMap2, consumed, peerMap2, 0},
		{"answer across a key rotation", ConeRelay, func(en *env) {
			en.clk.advance(keyEpochTicks/ticksPerSecond*time.Second - time.Second)
			probed(en)
			en.clk.advance(2 * time.Second)
		}, peerMap2, consumed, peerMap2, 1},
		{"source two key epochs old", ConeRelay, func(en *env) {
			en.clk.advance(2 * keyEpochTicks / ticksPerSecond * time.Second)
			probed(en)
		}, peerMap2, drop(DropMismatch), peerMap, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, tc.mode)
			if tc.setup != nil {
				tc.setup(en)
			}
			if v := en.udp(bubble(peerAddr, ourLL(en, peerAddr, tc.back)), tc.from); v != tc.want {
				t.Errorf("verdict %+v (%v), want %+v (%v)", v, v.reason, tc.want, tc.want.reason)
			}
			p, ok := en.peer(peerAddr)
			if got := p.mapping(); ok != tc.mapping.IsValid() || ok && got != tc.mapping {
				t.Errorf("peer %v at %v, want at %v", ok, got, tc.mapping)
			}
		})
	}
}

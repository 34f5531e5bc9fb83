// SPDX-License-Identifier: MIT

package tunnel

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"
)

// simWindow is how long the natmatrix pings before an attempt fails.
const simWindow = 6 * time.Second

// TestSimProbingNAT: two clients behind port-preserving symmetric NATs
// connect when either Engine is qualified before its NAT type is known
// (the client probes its NAT after qualifying, and a host may send at
// once). Without Self.Probing the one whose type was unknown described
// itself as having no random port, the other spent its random port's
// preserved mapping on the mapping in that one's address, and no round
// got through again (seen once in the natmatrix on a loaded machine).
func TestSimProbingNAT(t *testing.T) {
	for _, tc := range []struct {
		late1, late2 time.Duration
	}{
		{late1: 10 * time.Millisecond}, {late2: 10 * time.Millisecond},
		{late1: 300 * time.Millisecond}, {late2: 300 * time.Millisecond},
		{late1: 1500 * time.Millisecond}, {late1: 50 * time.Millisecond, late2: 200 * time.Millisecond},
	} {
		name := fmt.Sprintf("c1 %v, c2 %v", tc.late1, tc.late2)
		t.Run(name, func(t *testing.T) {
			s := newSim(t)
			s.trace = os.Getenv("SIMTRACE") == name
			ha := s.addClient("c1", newSimNAT(simPortPreserving, "198.51.100.2", "10.0.0.0/24", 1), "10.0.0.2:40001", false)
			hb := s.addClient("c2", newSimNAT(simPortPreserving, "203.0.113.2", "10.0.1.0/24", 2), "10.0.1.3:40002", false)
			ha.tickPhase, hb.tickPhase = 300*time.Millisecond, 700*time.Millisecond
			var known []func()
			for _, c := range []struct {
				h    *simHost
				late time.Duration
			}{{ha, tc.late1}, {hb, tc.late2}} {
				if c.late == 0 {
					continue
				}
				full := c.h.e.self.Load().Self
				// What a client tells its Engine on qualifying: the
				// NAT type unknown, still probed.
				probing := full
				probing.Symmetric, probing.PortPreserving, probing.Probing = false, false, true
				c.h.e.SetSelf(probing)
				at := s.clk.t.Add(c.late)
				known = append(known, func() {
					if !s.clk.t.Before(at) && c.h.e.self.Load().Probing {
						c.h.e.SetSelf(full)
					}
				})
			}
			if ok, took := s.ping(ha, hb, simWindow, known...); !ok {
				t.Errorf("no echo reply in %v", took)
			}
		})
	}
}

// TestSimReordered: two clients behind port-preserving symmetric NATs
// connect within the ping window whatever the order their datagrams
// arrive in, with delays up to a second (a loaded machine), whichever
// second each Engine ticks in.
func TestSimReordered(t *testing.T) {
	for seed := range uint64(300) {
		s := newSim(t)
		r := rand.New(rand.NewPCG(seed, 7))
		s.delay = func(simPacket) time.Duration {
			switch x := r.IntN(100); {
			case x < 50:
				return 0
			case x < 95:
				return time.Duration(r.IntN(30)) * 10 * time.Millisecond
			default:
				return time.Duration(r.IntN(100)) * 10 * time.Millisecond
			}
		}
		ha := s.addClient("c1", newSimNAT(simPortPreserving, "198.51.100.2", "10.0.0.0/24", seed), "10.0.0.2:40001", false)
		hb := s.addClient("c2", newSimNAT(simPortPreserving, "203.0.113.2", "10.0.1.0/24", seed+1), "10.0.1.3:40002", false)
		ha.tickPhase = time.Duration(r.IntN(100)) * 10 * time.Millisecond
		hb.tickPhase = time.Duration(r.IntN(100)) * 10 * time.Millisecond
		if ok, took := s.ping(ha, hb, simWindow); !ok {
			t.Errorf("seed %d: no echo reply in %v", seed, took)
		}
	}
}

// TestProbingSelf: while our NAT is probed, a packet to a Teredo peer
// waits without a bubble, and a peer's indirect bubble is answered at its
// origin only, without an indirect bubble of ours; once the type is
// known, the next Tick sends the round, with our random port.
func TestProbingSelf(t *testing.T) {
	self := symSelf
	self.PortPreserving = true
	en, ports := extEnv(t, self)
	probing := self
	probing.Symmetric, probing.PortPreserving, probing.Probing = false, false, true
	en.e.SetSelf(probing)
	if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != queuedV || len(en.out.UDP)+len(en.out.Via) != 0 {
		t.Fatalf("packet while probing: %+v, sent %v", v, en.sentTo())
	}
	other := teredoAddr(serverIP, netip.MustParseAddrPort("198.51.100.9:1000"))
	en.udp(viaServer(netip.MustParseAddrPort("198.51.100.9:1000"), trBubble(other, selfAddr, trailers{nonce: nonce(5), randomPort: 41000})), server)
	for _, s := range en.sentAll() {
		if s.to == server || s.via != 0 {
			t.Errorf("answering an indirect bubble while probing: %+v", s)
		}
	}
	if len(en.out.UDP) == 0 {
		t.Errorf("the indirect bubble's origin got no direct bubble")
	}
	if en.e.Stats().IndirectBubbles != 0 || ports.opened != 0 {
		t.Fatalf("while probing: stats %+v, %d ports", en.e.Stats(), ports.opened)
	}
	en.e.SetSelf(self)
	en.tick()
	x := en.ext(peerAddr)
	var indirect int
	for _, s := range en.sentAll() {
		if s.to == server && s.tr.RandomPort == x.randomPort && x.randomPort != 0 {
			indirect++
		}
	}
	if indirect != 1 {
		t.Errorf("the round once the NAT is known: %+v, random port %d", en.sentAll(), x.randomPort)
	}
}

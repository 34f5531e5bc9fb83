// SPDX-License-Identifier: MIT

package tunnel

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// idle runs the sim for d with nothing on the wire but the clients'
// refreshes: a solicitation to the primary server every 10 s, as a
// client's maintenance sends them, which keeps each NAT's flow to the
// server open (a server's forwarded bubble gets in).
func (s *sim) idle(d time.Duration) {
	next := s.clk.t
	s.run(d, func() bool {
		if !s.clk.t.Before(next) {
			next = s.clk.t.Add(10 * time.Second)
			for _, h := range s.hosts {
				s.send(h, h.local.Port(), s.primary, proto.AppendRouterSolicitation(nil, [proto.NonceLen]byte{1}, false))
			}
		}
		return false
	})
}

// talk has from ping to until it answers, then go on pinging every half
// second for d: a conversation of d, or a single exchange when d is 0.
func (s *sim) talk(from, to *simHost, d time.Duration) {
	s.t.Helper()
	from.replies = 0
	if ok, took := s.ping(from, to, simWindow); !ok {
		s.t.Fatalf("%s -> %s: no answer in %v", from.name, to.name, took)
	}
	for seq := uint16(100); d > 0; seq++ {
		from.e.FromTunnel(proto.AppendEchoRequest(nil, proto.EchoFields{Src: from.addr, Dst: to.addr, HopLimit: 64, ID: 2, Seq: seq}), &from.out)
		s.flushHost(from)
		step := min(d, 500*time.Millisecond)
		s.run(step, func() bool { return false })
		d -= step
	}
}

// refresh has a ping to b until it answers (or 10 s pass) and reports
// when the answer came and whether a bubble went through the server.
func (s *sim) refresh(a, b *simHost) (took time.Duration, viaServer bool) {
	s.t.Helper()
	before := s.forwarded
	a.replies = 0
	ok, took := s.ping(a, b, 10*time.Second)
	if !ok {
		s.t.Fatalf("%s -> %s: no answer in %v", a.name, b.name, took)
	}
	return took, s.forwarded != before
}

// TestSimRefresh: a client that sends to a peer after a silence (RFC 4380
// §5.2.4: more than 30 s, the peer is no longer valid; RFC 6081 §5.7: ask
// it with a direct bubble first) reaches it again within the RFC 4380
// bubble spacing of 2 s whatever the NATs forgot meanwhile. Linux's
// conntrack, the lab's port-restricted NAT and most home routers, forgets
// a flow 30 s after its last packet unless it carried an answer for more
// than 2 s: after one short exchange (a ping, a DNS query) the peer's NAT
// drops the solicitation, which used to leave packets waiting 6 s for
// three of them (the soak's churn pings from its full-cone side lost
// about one in ten of their refreshes that way). One unanswered
// solicitation is enough to bubble through the server, and a peer whose
// path did not outlive a silence is not asked again. Where the NATs kept
// the path, the direct answer still saves the server its bubble.
func TestSimRefresh(t *testing.T) {
	const (
		atOnce = 500 * time.Millisecond
		// afterOne: one solicitation, the 2 s spacing, the next Tick.
		afterOne = time.Duration(probeSpacing)*time.Second/ticksPerSecond + time.Second + 100*time.Millisecond
	)
	for _, tc := range []struct {
		name     string
		a, b     simKind       // the refreshing client's NAT, the peer's
		byPeer   bool          // the peer started the first exchange
		talk     time.Duration // how long the first exchange went on
		gap      time.Duration // the silence before the refresh
		within   time.Duration // the refresh's answer comes within this
		direct   bool          // ... without a bubble through the server
		twice    bool          // a second silence and refresh: answered at once, without a solicitation
		wantSols uint64        // solicitations sent in all
	}{
		{name: "cone to port-restricted after a ping", a: simCone, b: simPortRestricted, gap: 35 * time.Second,
			within: afterOne, wantSols: 1},
		{name: "cone to port-restricted after the peer's ping", a: simCone, b: simPortRestricted, byPeer: true,
			gap: 35 * time.Second, within: afterOne, wantSols: 1},
		{name: "cone to port-restricted, twice", a: simCone, b: simPortRestricted, gap: 35 * time.Second,
			within: afterOne, twice: true, wantSols: 1},
		{name: "port-restricted to port-restricted after a ping", a: simPortRestricted, b: simPortRestricted,
			gap: 35 * time.Second, within: afterOne, wantSols: 1},
		{name: "cone to port-restricted after a conversation", a: simCone, b: simPortRestricted, talk: 3 * time.Second,
			gap: 35 * time.Second, within: atOnce, direct: true, wantSols: 1},
		{name: "port-restricted to cone after a ping", a: simPortRestricted, b: simCone, gap: 35 * time.Second,
			within: atOnce, direct: true, wantSols: 1},
		{name: "port-restricted to cone, twice", a: simPortRestricted, b: simCone, gap: 35 * time.Second, twice: true,
			within: atOnce, direct: true, wantSols: 2},
		{name: "cone to address-restricted after a ping", a: simCone, b: simAddrRestricted, gap: 35 * time.Second,
			within: atOnce, direct: true, wantSols: 1},
		{name: "cone to cone after a ping", a: simCone, b: simCone, gap: 35 * time.Second,
			within: atOnce, direct: true, wantSols: 1},
		{name: "silent for 25 s", a: simCone, b: simPortRestricted, gap: 25 * time.Second,
			within: atOnce, direct: true},
		{name: "entry gone after 70 s", a: simCone, b: simPortRestricted, gap: 70 * time.Second,
			within: atOnce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			s.trace = os.Getenv("SIMTRACE") == tc.name
			ha := s.addClient("c1", newSimNAT(tc.a, "198.51.100.2", "10.0.0.0/24", 1), "10.0.0.2:40001", false)
			hb := s.addClient("c2", newSimNAT(tc.b, "203.0.113.2", "10.0.1.0/24", 2), "10.0.1.2:40002", false)
			ha.tickPhase, hb.tickPhase = 300*time.Millisecond, 700*time.Millisecond
			if tc.byPeer {
				s.talk(hb, ha, tc.talk)
			} else {
				s.talk(ha, hb, tc.talk)
			}
			rounds := 1
			if tc.twice {
				rounds = 2
			}
			for i := range rounds {
				s.idle(tc.gap)
				took, via := s.refresh(ha, hb)
				want, wantDirect := tc.within, tc.direct
				if i == 1 && !tc.direct {
					want = atOnce // straight to the bubble round
				}
				if took > want || via == wantDirect {
					t.Errorf("refresh %d after %v: answered in %v (want within %v), through the server %v (want %v)",
						i+1, tc.gap, took, want, via, !wantDirect)
				}
			}
			if st := ha.e.Stats(); st.Solicitations != tc.wantSols {
				t.Errorf("%d solicitations, want %d (stats %+v)", st.Solicitations, tc.wantSols, st)
			}
		})
	}
}

// TestSimRefreshTimes prints how long refreshes take across NAT kinds
// (SIMTIMES=1).
func TestSimRefreshTimes(t *testing.T) {
	if os.Getenv("SIMTIMES") == "" {
		t.Skip()
	}
	kinds := []simKind{simCone, simAddrRestricted, simPortRestricted}
	var b []byte
	for _, a := range kinds {
		b = fmt.Appendf(b, "%-16v", a)
		for _, c := range kinds {
			s := newSim(t)
			ha := s.addClient("c1", newSimNAT(a, "198.51.100.2", "10.0.0.0/24", 1), "10.0.0.2:40001", false)
			hb := s.addClient("c2", newSimNAT(c, "203.0.113.2", "10.0.1.0/24", 2), "10.0.1.2:40002", false)
			s.talk(ha, hb, 0)
			s.idle(35 * time.Second)
			took, via := s.refresh(ha, hb)
			b = fmt.Appendf(b, " %5.2f%s", took.Seconds(), map[bool]string{true: "s", false: " "}[via])
		}
		b = append(b, '\n')
	}
	t.Logf("refresh after 35 s of silence (s: a bubble through the server):\n%s", b)
}

// SPDX-License-Identifier: MIT

package client

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// natMode is the fake NAT's behaviour.
type natMode int

const (
	natNone natMode = iota
	natFullCone
	natAddrRestricted
	natPortRestricted
	natSymmetric
	natPortPreserving // symmetric; the first destination sees the local port
	natSequential     // symmetric; ports one after the other
	natUPnP           // symmetric; the client's port mapped by UPnP first
)

// localPort is the client socket's port in the fake world.
const localPort = 40000

// fakeNAT maps the client's one socket to external endpoints and filters
// what comes back, as the lab's nftables NATs do.
type fakeNAT struct {
	mode      natMode
	wan       netip.Addr
	port      uint16                            // next external port
	mapped    map[netip.AddrPort]netip.AddrPort // destination -> external endpoint
	contacted map[netip.AddrPort]bool
}

func newNAT(mode natMode, wan string) *fakeNAT {
	return &fakeNAT{mode: mode, wan: netip.MustParseAddr(wan), port: 40000,
		mapped: map[netip.AddrPort]netip.AddrPort{}, contacted: map[netip.AddrPort]bool{}}
}

// out returns the external endpoint a packet to dst leaves from.
func (n *fakeNAT) out(dst netip.AddrPort) netip.AddrPort {
	n.contacted[dst] = true
	key := netip.AddrPort{}
	if n.mode >= natSymmetric {
		key = dst
	}
	if e, ok := n.mapped[key]; ok {
		return e
	}
	e := netip.AddrPortFrom(n.wan, n.port)
	switch n.mode {
	case natSymmetric, natPortPreserving, natUPnP:
		n.port += 4099 // far apart: not in sequence
	case natSequential:
		n.port++
	default:
		n.port += 7
	}
	n.mapped[key] = e
	return e
}

// in reports whether a packet from src to external endpoint ext gets in.
func (n *fakeNAT) in(src, ext netip.AddrPort) bool {
	switch n.mode {
	case natNone, natFullCone:
		for _, e := range n.mapped {
			if e == ext {
				return true
			}
		}
		return false
	case natAddrRestricted:
		for d := range n.contacted {
			if d.Addr() == src.Addr() && n.mapped[netip.AddrPort{}] == ext {
				return true
			}
		}
		return false
	case natPortRestricted:
		return n.contacted[src] && n.mapped[netip.AddrPort{}] == ext
	case natUPnP:
		if ext == netip.AddrPortFrom(n.wan, localPort) {
			return true // the UPnP mapping lets anyone in
		}
		fallthrough
	default:
		return n.contacted[src] && n.mapped[src] == ext
	}
}

// rebind forgets every mapping and moves to another WAN address, as
// lab.Rebind does.
func (n *fakeNAT) rebind(wan string) {
	n.wan = netip.MustParseAddr(wan)
	n.mapped = map[netip.AddrPort]netip.AddrPort{}
	n.contacted = map[netip.AddrPort]bool{}
	n.port = 40000
}

type delivery struct {
	at      time.Time
	payload []byte
	from    netip.AddrPort
	to      netip.AddrPort // the external endpoint it is addressed to
}

// world is a fake clock, NAT and Teredo server around one Machine.
type world struct {
	t                  *testing.T
	now                time.Time
	m                  *Machine
	nat                *fakeNAT
	primary, secondary netip.Addr
	delay              time.Duration // one way
	mtu                uint32
	down               bool                   // the server answers nothing
	tamper             func(ra []byte) []byte // rewrites every RA
	resolveErr         error
	inflight           []delivery
	sent               []sentRS
	resolves           int
	changes            []Status
	recvErr            []error
}

type sentRS struct {
	at   time.Time
	to   netip.AddrPort
	cone bool
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newWorld(t *testing.T, mode natMode) *world { return newWorldWith(t, mode, nil) }

// newWorldWith lets setup change the world before the machine starts.
func newWorldWith(t *testing.T, mode natMode, setup func(*world)) *world {
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	w := &world{
		t: t, now: t0, nat: newNAT(mode, "198.51.100.2"),
		primary: netip.MustParseAddr("192.0.2.10"), secondary: netip.MustParseAddr("192.0.2.11"),
		delay: 20 * time.Millisecond, mtu: 1280,
	}
	if mode == natNone {
		w.nat.wan = netip.MustParseAddr("192.0.2.30")
	}
	cfg := MachineConfig{LocalPort: localPort, Rand: func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}}
	switch mode {
	case natSequential:
		w.nat.port = 21000
	case natSymmetric:
		w.nat.port = 21000 // the NAT does not keep our port
	case natUPnP:
		cfg.UPnP = mapping("198.51.100.2", localPort)
	}
	w.m = NewMachine(cfg)
	if setup != nil {
		setup(w)
	}
	var a Actions
	w.m.Start(w.now, &a)
	w.apply(&a)
	return w
}

// apply carries out what the machine asked for.
func (w *world) apply(a *Actions) {
	if a.Changed {
		w.changes = append(w.changes, w.m.Status())
	}
	sends := a.Send
	resolve := a.Resolve
	a.Reset()
	for _, d := range sends {
		w.serve(d)
	}
	if resolve {
		w.resolves++
		w.m.Resolved(w.now, w.primary, w.secondary, w.resolveErr, a)
		w.apply(a)
	}
}

// serve passes one solicitation through the NAT to the fake server and
// queues its answer.
func (w *world) serve(d Datagram) {
	var e proto.Envelope
	if err := proto.ParseEnvelope(d.Payload, &e); err != nil || !e.HasAuth {
		w.t.Fatalf("machine sent a bad RS: %v", err)
	}
	rs, err := proto.ParseRouterSolicitation(e.IPv6)
	if err != nil {
		w.t.Fatalf("machine sent a bad RS: %v", err)
	}
	w.sent = append(w.sent, sentRS{at: w.now, to: d.To, cone: rs.Cone})
	ext := w.nat.out(d.To)
	if w.down || d.To.Port() != proto.Port || (d.To.Addr() != w.primary && d.To.Addr() != w.secondary) {
		return
	}
	from := d.To
	if rs.Cone { // RFC 4380 §5.3.2: answer from the other address
		other := w.primary
		if d.To.Addr() == w.primary {
			other = w.secondary
		}
		from = netip.AddrPortFrom(other, proto.Port)
	}
	ra := proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: e.Auth.Nonce, Client: ext, Dst: rs.Src,
		Server: w.primary, Prefix: proto.DefaultPrefix, MTU: w.mtu})
	if w.tamper != nil {
		ra = w.tamper(ra)
	}
	w.inflight = append(w.inflight, delivery{at: w.now.Add(2 * w.delay), payload: ra, from: from, to: ext})
}

// run advances the clock by d, firing timers and deliveries in order.
func (w *world) run(d time.Duration) {
	end := w.now.Add(d)
	for range 10000 {
		next, isDelivery := w.m.Deadline(), false
		for _, dv := range w.inflight {
			if next.IsZero() || dv.at.Before(next) {
				next, isDelivery = dv.at, true
			}
		}
		if next.IsZero() || next.After(end) {
			w.now = end
			return
		}
		if next.After(w.now) {
			w.now = next
		}
		var a Actions
		if isDelivery {
			dv := w.inflight[0]
			i0 := 0
			for i, x := range w.inflight {
				if x.at.Before(dv.at) {
					dv, i0 = x, i
				}
			}
			w.inflight = append(w.inflight[:i0], w.inflight[i0+1:]...)
			if !w.nat.in(dv.from, dv.to) {
				continue
			}
			w.recvErr = append(w.recvErr, w.m.Receive(w.now, dv.payload, dv.from, &a))
		} else {
			w.m.Tick(w.now, &a)
		}
		w.apply(&a)
	}
	w.t.Fatal("simulation does not settle")
}

// deliver hands one datagram to the machine now, as if it came in.
func (w *world) deliver(b []byte, from netip.AddrPort) error {
	var a Actions
	err := w.m.Receive(w.now, b, from, &a)
	w.apply(&a)
	return err
}

func (w *world) status() Status { return w.m.Status() }

// rsSince counts the solicitations sent at or after t to addr (any
// address if invalid).
func (w *world) rsSince(t time.Time, addr netip.Addr) int {
	n := 0
	for _, s := range w.sent {
		if !s.at.Before(t) && (!addr.IsValid() || s.to.Addr() == addr) {
			n++
		}
	}
	return n
}

func (w *world) wantQualified(mapping netip.AddrPort) Status {
	w.t.Helper()
	s := w.status()
	if s.Phase != PhaseQualified {
		w.t.Fatalf("phase %v, want qualified", s.Phase)
	}
	a, ok := proto.ParseAddress(s.Addr)
	if !ok || !proto.HasPrefix(s.Addr, proto.DefaultPrefix) || a.Server != w.primary || a.Mapping() != mapping {
		w.t.Fatalf("address %v decodes to %+v; want server %v mapping %v", s.Addr, a, w.primary, mapping)
	}
	if a.Flags&^proto.RandomFlagsMask != 0 {
		w.t.Errorf("flags %#04x outside RFC 5991's random bits", a.Flags)
	}
	if s.Mapping != mapping {
		w.t.Errorf("status mapping %v, want %v", s.Mapping, mapping)
	}
	return s
}

func mapping(a string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(a), port)
}

// TestQualificationNAT qualifies behind each NAT behaviour and checks the
// NAT type found, and which solicitations it took.
func TestQualificationNAT(t *testing.T) {
	cases := []struct {
		name      string
		mode      natMode
		mapped    netip.AddrPort
		want      NATType
		secondary int // solicitations to the secondary address
	}{
		{"none", natNone, mapping("192.0.2.30", 40000), NATCone, 0},
		{"full cone", natFullCone, mapping("198.51.100.2", 40000), NATCone, 0},
		{"address restricted", natAddrRestricted, mapping("198.51.100.2", 40000), NATRestricted, 1},
		{"port restricted", natPortRestricted, mapping("198.51.100.2", 40000), NATRestricted, 1},
		{"symmetric", natSymmetric, mapping("198.51.100.2", 21000), NATSymmetric, 1},
		{"symmetric, port-preserving", natPortPreserving, mapping("198.51.100.2", localPort), NATSymmetricPortPreserving, 1},
		{"symmetric, sequential", natSequential, mapping("198.51.100.2", 21000), NATSymmetricSequential, 1},
		// No cone probe (it would get in through the mapping): the
		// secondary address is asked at once.
		{"symmetric, UPnP", natUPnP, mapping("198.51.100.2", localPort), NATSymmetricUPnP, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.mode)
			w.run(100 * time.Millisecond)
			s := w.wantQualified(tc.mapped)
			if s.MTU != 1280 || s.RTT != 40*time.Millisecond || !s.Since.Equal(t0.Add(40*time.Millisecond)) {
				t.Errorf("MTU %d RTT %v since %v", s.MTU, s.RTT, s.Since)
			}
			w.run(2 * time.Second)
			if got := w.status().NAT; got != tc.want {
				t.Errorf("NAT %v, want %v", got, tc.want)
			}
			if n := w.rsSince(t0, w.secondary); n != tc.secondary {
				t.Errorf("%d solicitations to the secondary address, want %d", n, tc.secondary)
			}
			if w.status().Addr != s.Addr {
				t.Errorf("address changed during the NAT probe: %v -> %v", s.Addr, w.status().Addr)
			}
			// The Engine hears of the probe as a change: while it is out
			// (tunnel.Self.Probing), and once it ends with the NAT type.
			var first, last *Status
			for i := range w.changes {
				if w.changes[i].Phase == PhaseQualified {
					if first == nil {
						first = &w.changes[i]
					}
					last = &w.changes[i]
				}
			}
			if first == nil || !first.NATProbing {
				t.Errorf("qualified without NATProbing: %+v", first)
			}
			if last == nil || last.NATProbing || last.NAT != tc.want {
				t.Errorf("last change %+v: want the probe over and NAT %v", last, tc.want)
			}
			for _, err := range w.recvErr {
				if err != nil {
					t.Errorf("a server answer was refused: %v", err)
				}
			}
		})
	}
}

// TestMaintenance runs scenarios over minutes of fake time.
func TestMaintenance(t *testing.T) {
	restricted := mapping("198.51.100.2", 40000)
	cases := []struct {
		name  string
		mode  natMode
		setup func(*world) // before the machine starts
		run   func(t *testing.T, w *world)
	}{
		{"refresh keeps the address", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			first := w.wantQualified(restricted)
			changes := len(w.changes)
			mark := w.now
			w.run(31 * time.Second)
			n := w.rsSince(mark, w.primary)
			if n != 1 {
				t.Fatalf("%d refreshes in 31 s, want 1", n)
			}
			at := w.sent[len(w.sent)-1].at.Sub(t0)
			if at < 22*time.Second || at > 31*time.Second {
				t.Errorf("refresh at %v, want 75-100 %% of 30 s after the RA", at)
			}
			w.run(5 * time.Minute)
			if got := w.wantQualified(restricted); got.Addr != first.Addr {
				t.Errorf("address changed on refresh: %v -> %v", first.Addr, got.Addr)
			}
			if len(w.changes) != changes {
				t.Errorf("status changed %d times on plain refreshes", len(w.changes)-changes)
			}
			if n := w.rsSince(mark, w.primary); n < 10 || n > 14 {
				t.Errorf("%d refreshes in 5.5 min, want one per 22.5-30 s", n)
			}
		}},
		{"no refresh while the server talks", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			mark := w.now
			for range 12 { // a forwarded packet from the server every 10 s
				w.run(10 * time.Second)
				w.m.Heard(w.now)
			}
			if n := w.rsSince(mark, w.primary); n != 0 {
				t.Errorf("%d refreshes while the server was heard every 10 s", n)
			}
			w.run(31 * time.Second)
			if n := w.rsSince(mark, w.primary); n != 1 {
				t.Errorf("%d refreshes after the server went quiet, want 1", n)
			}
		}},
		{"NAT rebind gives a new address", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			old := w.wantQualified(restricted)
			w.nat.rebind("198.51.100.3")
			w.run(31 * time.Second)
			s := w.wantQualified(mapping("198.51.100.3", 40000))
			if s.Addr == old.Addr {
				t.Fatal("address kept after the mapping changed")
			}
			oa, _ := proto.ParseAddress(old.Addr)
			na, _ := proto.ParseAddress(s.Addr)
			if oa.Flags == na.Flags {
				t.Errorf("random flags %#04x kept for a new mapping", na.Flags)
			}
			last := w.changes[len(w.changes)-1]
			if last.Addr != s.Addr || last.Phase != PhaseQualified {
				t.Errorf("last change %+v", last)
			}
			// The NAT is probed again for the new mapping.
			w.run(2 * time.Second)
			if w.status().NAT != NATRestricted || w.rsSince(t0.Add(2*time.Second), w.secondary) != 1 {
				t.Errorf("NAT %v after rebind, %d secondary probes", w.status().NAT, w.rsSince(t0.Add(2*time.Second), w.secondary))
			}
		}},
		{"cone probe again only once the NAT forgot the secondary", natPortRestricted, nil, func(t *testing.T, w *world) {
			cones := func(since time.Time) int {
				n := 0
				for _, s := range w.sent {
					if s.cone && !s.at.Before(since) {
						n++
					}
				}
				return n
			}
			w.run(time.Second)
			// A new mapping soon after: a NAT that still knows our flow to
			// the secondary would let a cone answer in whatever its
			// filtering, so only the mappings are compared.
			w.nat.rebind("198.51.100.3")
			mark := w.now
			w.run(33 * time.Second)
			w.wantQualified(mapping("198.51.100.3", 40000))
			if cones(mark) != 0 || w.rsSince(mark, w.secondary) != 1 || w.status().NAT != NATRestricted {
				t.Errorf("%d cone probes, %d to the secondary, NAT %v; want 0, 1, restricted", cones(mark), w.rsSince(mark, w.secondary), w.status().NAT)
			}
			// Much later, a new mapping gets the whole probe again.
			w.run(6 * time.Minute)
			w.nat.rebind("198.51.100.2")
			w.nat.mode = natFullCone
			mark = w.now
			w.run(33 * time.Second)
			if cones(mark) != 1 || w.rsSince(mark, w.secondary) != 0 || w.status().NAT != NATCone {
				t.Errorf("%d cone probes, %d to the secondary, NAT %v after a late rebind; want 1, 0, cone", cones(mark), w.rsSince(mark, w.secondary), w.status().NAT)
			}
		}},
		{"suspect refreshes early, rate-limited", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			old := w.wantQualified(restricted)
			w.nat.rebind("198.51.100.3")
			var a Actions
			w.m.Suspect(w.now, &a)
			w.apply(&a)
			w.run(100 * time.Millisecond)
			if s := w.wantQualified(mapping("198.51.100.3", 40000)); s.Addr == old.Addr {
				t.Fatal("no new address after an early refresh")
			}
			mark := w.now
			w.m.Suspect(w.now.Add(time.Second), &a)
			w.apply(&a)
			if n := w.rsSince(mark, w.primary); n != 0 {
				t.Errorf("%d early refreshes within SuspectGap", n)
			}
		}},
		{"server restart within the retries", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			first := w.wantQualified(restricted)
			w.down = true
			for mark := w.now; w.rsSince(mark, w.primary) == 0; {
				w.run(100 * time.Millisecond)
			}
			w.run(5 * time.Second) // the refresh and its first retry go unanswered
			w.down = false
			w.run(10 * time.Second)
			if s := w.wantQualified(restricted); s.Addr != first.Addr {
				t.Errorf("address changed across a server restart")
			}
			for _, c := range w.changes[1:] {
				if c.Phase != PhaseQualified && c.Phase != PhaseQualifying && c.Phase != PhaseResolving {
					t.Errorf("went %v during a short server restart", c.Phase)
				}
			}
		}},
		{"loss, back-off, re-resolve and back", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			first := w.wantQualified(restricted)
			w.down = true
			for end := w.now.Add(45 * time.Second); w.status().Phase != PhaseOffline && w.now.Before(end); {
				w.run(100 * time.Millisecond)
			}
			if s := w.status(); s.Phase != PhaseOffline || s.Addr.IsValid() {
				t.Fatalf("status %+v after 3 unanswered refreshes, want offline without address", s)
			}
			lost := w.now.Add(-100 * time.Millisecond)
			if refresh := w.sent[len(w.sent)-3].at; lost.Sub(refresh) < 11*time.Second {
				t.Errorf("lost %v after the first unanswered refresh, want 12 s", lost.Sub(refresh))
			}
			resolves := w.resolves
			// Back-off from 1 s (75-100 %), then one solicitation waiting
			// 2 s and 1.5-2 s more: a try every 3.5-4 s, each resolving
			// the name again.
			w.run(20 * time.Second)
			if w.resolves-resolves < 5 {
				t.Errorf("%d re-resolutions in the 20 s after the loss", w.resolves-resolves)
			}
			var retries []time.Duration
			for _, s := range w.sent {
				if s.at.After(lost) {
					retries = append(retries, s.at.Sub(lost))
				}
			}
			if len(retries) == 0 || retries[0] < 700*time.Millisecond || retries[0] > 1050*time.Millisecond {
				t.Errorf("first retry %v after the loss, want 0.75-1 s", retries)
			}
			for i := 1; i < len(retries); i++ {
				if g := retries[i] - retries[i-1]; g < 3400*time.Millisecond || g > 4100*time.Millisecond {
					t.Errorf("retries %v: gap %d is %v, want 3.5-4 s", retries, i, g)
				}
			}
			w.down = false
			w.run(time.Minute)
			if s := w.wantQualified(restricted); s.Addr != first.Addr {
				t.Errorf("same mapping, new address %v (was %v)", s.Addr, first.Addr)
			}
			if w.status().NAT != NATRestricted {
				t.Errorf("NAT %v forgotten", w.status().NAT)
			}
		}},
		{"back-off is capped", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.down = true
			for end := w.now.Add(time.Minute); w.status().Phase != PhaseOffline && w.now.Before(end); {
				w.run(100 * time.Millisecond)
			}
			lost := len(w.sent)
			w.run(30 * time.Minute)
			// After the loss, one solicitation every 3.5-4 s: bounded
			// both ways.
			var gaps []time.Duration
			for i := lost + 1; i < len(w.sent); i++ {
				gaps = append(gaps, w.sent[i].at.Sub(w.sent[i-1].at))
			}
			if len(gaps) < 400 || len(gaps) > 520 {
				t.Fatalf("%d retries in 30 min, want one every 3.5-4 s", len(gaps))
			}
			for i, g := range gaps {
				if g < 3400*time.Millisecond || g > 4100*time.Millisecond {
					t.Errorf("retry %d came %v after the last, want 3.5-4 s", i, g)
				}
			}
			if w.status().Phase == PhaseQualified {
				t.Error("qualified without a server")
			}
		}},
		{"MTU change keeps the address", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			first := w.wantQualified(restricted)
			w.mtu = 1400
			w.run(31 * time.Second)
			s := w.wantQualified(restricted)
			if s.MTU != 1400 || s.Addr != first.Addr {
				t.Errorf("MTU %d address %v; want 1400 and %v", s.MTU, s.Addr, first.Addr)
			}
		}},
		{"new server address after re-resolution", natPortRestricted, nil, func(t *testing.T, w *world) {
			w.run(time.Second)
			first := w.wantQualified(restricted)
			w.down = true
			w.run(45 * time.Second)
			w.primary, w.secondary = netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21")
			w.down = false
			w.run(time.Minute)
			s := w.wantQualified(restricted)
			if s.Addr == first.Addr || s.Server != w.primary {
				t.Errorf("status %+v after the server moved", s)
			}
		}},
		{"resolution failure backs off", natPortRestricted, func(w *world) { w.resolveErr = errors.New("no such host") }, func(t *testing.T, w *world) {
			if w.status().Phase != PhaseOffline {
				t.Fatalf("phase %v after a failed resolution", w.status().Phase)
			}
			w.resolveErr = nil
			w.run(3 * time.Second)
			w.wantQualified(restricted)
		}},
		{"non-global server refused", natPortRestricted, func(w *world) {
			w.primary, w.secondary = netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.1.1.2")
		}, func(t *testing.T, w *world) {
			w.run(10 * time.Second)
			if s := w.status(); s.Phase == PhaseQualified || s.Phase == PhaseQualifying || len(w.sent) != 0 {
				t.Errorf("phase %v, %d solicitations with a private server address", s.Phase, len(w.sent))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newWorldWith(t, tc.mode, tc.setup))
		})
	}
}

// TestBadAdvertisements offers the qualifying machine advertisements that
// fail one check each; none may qualify it, and a good one still does.
func TestBadAdvertisements(t *testing.T) {
	server := netip.MustParseAddr("192.0.2.10")
	from := netip.AddrPortFrom(server, proto.Port)
	client := mapping("198.51.100.2", 40000)
	ra := func(nonce [8]byte, f func(*proto.RAFields)) []byte {
		rf := proto.RAFields{Nonce: nonce, Client: client, Dst: proto.LinkLocalClient(), Server: server,
			Prefix: proto.DefaultPrefix, MTU: 1280}
		if f != nil {
			f(&rf)
		}
		return proto.AppendRouterAdvertisement(nil, rf)
	}
	// withoutOrigin drops the 8-byte origin indication after the auth header.
	withoutOrigin := func(b []byte) []byte {
		return append(append([]byte(nil), b[:proto.AuthHeaderMinLen]...), b[proto.AuthHeaderMinLen+proto.OriginLen:]...)
	}
	cases := []struct {
		name string
		make func(nonce [8]byte) ([]byte, netip.AddrPort)
		want error
	}{
		{"wrong nonce", func(n [8]byte) ([]byte, netip.AddrPort) {
			n[0] ^= 1
			return ra(n, nil), from
		}, ErrNotSolicited},
		{"no auth header", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, nil)[proto.AuthHeaderMinLen:], from
		}, ErrNotSolicited},
		{"wrong source port", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, nil), netip.AddrPortFrom(server, 3545)
		}, ErrNotServer},
		{"from another host", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, nil), mapping("192.0.2.99", proto.Port)
		}, ErrNotServer},
		{"from the secondary address", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, nil), mapping("192.0.2.11", proto.Port)
		}, ErrWrongSource},
		{"confirmation byte set", func(n [8]byte) ([]byte, netip.AddrPort) {
			b := ra(n, nil)
			b[proto.AuthHeaderMinLen-1] = 1
			return b, from
		}, ErrAuthFailed},
		{"no origin indication", func(n [8]byte) ([]byte, netip.AddrPort) {
			return withoutOrigin(ra(n, nil)), from
		}, ErrNoOrigin},
		{"to the cone link-local", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, func(f *proto.RAFields) { f.Dst = proto.LinkLocalClientCone() }), from
		}, ErrWrongDst},
		{"prefix of another server", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, func(f *proto.RAFields) { f.Server = netip.MustParseAddr("192.0.2.99") }), from
		}, ErrWrongServer},
		{"not the Teredo prefix", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, func(f *proto.RAFields) { f.Prefix = 0x20010db8 }), from
		}, ErrWrongPrefix},
		{"MTU too small", func(n [8]byte) ([]byte, netip.AddrPort) {
			return ra(n, func(f *proto.RAFields) { f.MTU = 1000 }), from
		}, ErrBadAdvert},
		{"bad checksum", func(n [8]byte) ([]byte, netip.AddrPort) {
			b := ra(n, nil)
			b[len(b)-1] ^= 0xff
			return b, from
		}, ErrBadAdvert},
		{"two prefixes", func(n [8]byte) ([]byte, netip.AddrPort) {
			return twoPIOs(t, ra(n, nil)), from
		}, ErrBadAdvert},
		{"not IPv6", func(n [8]byte) ([]byte, netip.AddrPort) {
			b := ra(n, nil)
			b[proto.AuthHeaderMinLen+proto.OriginLen] = 0x45
			return b, from
		}, ErrBadAdvert},
		{"a router solicitation", func(n [8]byte) ([]byte, netip.AddrPort) {
			return proto.AppendRouterSolicitation(nil, n, false), from
		}, ErrNoOrigin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorldWith(t, natPortRestricted, func(w *world) { w.down = true }) // we answer ourselves
			nonce := w.m.rs[rsPrimary].nonce
			b, src := tc.make(nonce)
			if err := w.deliver(b, src); !errors.Is(err, tc.want) {
				t.Fatalf("Receive: %v, want %v", err, tc.want)
			}
			if s := w.status(); s.Phase != PhaseQualifying {
				t.Fatalf("phase %v after a bad RA", s.Phase)
			}
			// The genuine answer still qualifies.
			if err := w.deliver(ra(nonce, nil), from); err != nil {
				t.Fatalf("good RA after a bad one: %v", err)
			}
			w.wantQualified(client)
			// And a replay of it is no longer solicited.
			if err := w.deliver(ra(nonce, nil), from); !errors.Is(err, ErrNotSolicited) {
				t.Errorf("replayed RA: %v, want ErrNotSolicited", err)
			}
		})
	}
}

// twoPIOs duplicates the prefix information option of an RA and fixes the
// lengths and checksum, so only the option count is wrong.
func twoPIOs(t *testing.T, b []byte) []byte {
	off := proto.AuthHeaderMinLen + proto.OriginLen
	var e proto.Envelope
	if err := proto.ParseEnvelope(b, &e); err != nil {
		t.Fatal(err)
	}
	pkt := append([]byte(nil), e.IPv6...)
	const raLen, pioLen = 16, 32
	pio := pkt[proto.IPv6HeaderLen+raLen : proto.IPv6HeaderLen+raLen+pioLen]
	if pio[0] != 3 {
		t.Fatalf("first option is type %d, not a PIO", pio[0])
	}
	pkt = append(pkt, pio...)
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-proto.IPv6HeaderLen))
	msg := pkt[proto.IPv6HeaderLen:]
	msg[2], msg[3] = 0, 0
	binary.BigEndian.PutUint16(msg[2:], proto.ICMPv6Checksum(proto.IPv6(pkt).Src(), proto.IPv6(pkt).Dst(), msg))
	return append(append([]byte(nil), b[:off]...), pkt...)
}

// TestQualificationTimeout: three unanswered solicitations 4 s apart,
// then offline; the fresh nonce of each try is the only one accepted.
func TestQualificationTimeout(t *testing.T) {
	w := newWorldWith(t, natPortRestricted, func(w *world) { w.down = true })
	nonces := map[[8]byte]bool{w.m.rs[rsPrimary].nonce: true}
	for range 2 {
		w.run(4 * time.Second)
		nonces[w.m.rs[rsPrimary].nonce] = true
	}
	if len(nonces) != 3 {
		t.Errorf("%d distinct nonces in 3 tries", len(nonces))
	}
	if n := w.rsSince(t0, w.primary); n != 3 {
		t.Fatalf("%d solicitations in 8 s, want 3", n)
	}
	if w.status().Phase != PhaseQualifying {
		t.Fatalf("phase %v before the last timeout", w.status().Phase)
	}
	w.run(4 * time.Second)
	if s := w.status(); s.Phase != PhaseOffline {
		t.Fatalf("phase %v after 12 s without answer", s.Phase)
	}
	for _, s := range w.sent {
		if s.to.Addr() != w.primary || s.cone {
			t.Errorf("solicitation to %v (cone %v) while qualifying", s.to, s.cone)
		}
	}
}

// TestRediscover: after a network change the machine resolves and
// solicits at once; a qualified client stays qualified throughout, with a
// new address only if the mapping or the server changed.
func TestRediscover(t *testing.T) {
	restricted := mapping("198.51.100.2", 40000)
	rediscover := func(w *world) {
		var a Actions
		w.m.Rediscover(w.now, &a)
		w.apply(&a)
	}
	// stayedQualified checks every status change since the first n.
	stayedQualified := func(t *testing.T, w *world, n int) {
		t.Helper()
		for _, s := range w.changes[n:] {
			if s.Phase != PhaseQualified {
				t.Errorf("went through phase %v", s.Phase)
			}
		}
	}
	cases := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"same network: the address is confirmed", func(t *testing.T, w *world) {
			w.run(time.Second)
			old := w.wantQualified(restricted)
			changes, resolves, mark := len(w.changes), w.resolves, w.now
			rediscover(w)
			if w.resolves != resolves+1 || w.rsSince(mark, w.primary) != 1 {
				t.Fatalf("%d resolutions and %d solicitations at once, want 1 and 1", w.resolves-resolves, w.rsSince(mark, w.primary))
			}
			w.run(time.Second)
			if s := w.wantQualified(restricted); s.Addr != old.Addr || len(w.changes) != changes {
				t.Errorf("address %v -> %v, %d status changes; want it kept", old.Addr, s.Addr, len(w.changes)-changes)
			}
		}},
		{"new mapping: new address without going down", func(t *testing.T, w *world) {
			w.run(time.Second)
			old := w.wantQualified(restricted)
			changes := len(w.changes)
			w.nat.rebind("198.51.100.3")
			rediscover(w)
			w.run(200 * time.Millisecond) // one round trip, not a refresh interval
			s := w.wantQualified(mapping("198.51.100.3", 40000))
			if s.Addr == old.Addr {
				t.Error("address kept after the mapping changed")
			}
			stayedQualified(t, w, changes)
			w.run(2 * time.Second)
			if w.status().NAT != NATRestricted {
				t.Errorf("NAT %v after the new mapping, want restricted", w.status().NAT)
			}
		}},
		{"new server address", func(t *testing.T, w *world) {
			w.run(time.Second)
			changes := len(w.changes)
			w.primary, w.secondary = netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21")
			rediscover(w)
			w.run(200 * time.Millisecond)
			s := w.wantQualified(restricted) // checks the server in the address
			if s.Server != w.primary || s.Server2 != w.secondary {
				t.Errorf("servers %v %v, want %v %v", s.Server, s.Server2, w.primary, w.secondary)
			}
			stayedQualified(t, w, changes)
		}},
		{"offline: no waiting for the back-off", func(t *testing.T, w *world) {
			w.down = true
			// Several losses, until a retry is a second or more away.
			for i := 0; w.status().Phase != PhaseOffline || w.m.retryAt.Sub(w.now) < time.Second; i++ {
				if i == 3000 {
					t.Fatalf("no long back-off with the server down: phase %v", w.status().Phase)
				}
				w.run(100 * time.Millisecond)
			}
			w.down = false
			rediscover(w)
			w.run(200 * time.Millisecond)
			w.wantQualified(restricted)
		}},
		{"qualifying: starts over", func(t *testing.T, w *world) {
			w.down = true
			w.run(time.Second) // the first RS is lost
			w.down = false
			resolves := w.resolves
			rediscover(w)
			w.run(200 * time.Millisecond)
			w.wantQualified(restricted)
			if w.resolves != resolves+1 {
				t.Errorf("%d resolutions, want 1", w.resolves-resolves)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newWorld(t, natPortRestricted)) })
	}
}

// TestMTUClamped: an advertised MTU larger than the client's buffers carry
// is lowered to MaxMTU (datagrams for it would be dropped as truncated),
// and a smaller one is kept.
func TestMTUClamped(t *testing.T) {
	for _, tc := range []struct{ advertised, max, want uint32 }{
		{9000, 1792, 1792}, {65535, 1792, 1792}, {1792, 1792, 1792}, {1500, 1792, 1500}, {9000, 0, 9000},
	} {
		w := newWorldWith(t, natPortRestricted, func(w *world) {
			w.mtu = tc.advertised
			w.m = NewMachine(MachineConfig{MaxMTU: int(tc.max)})
		})
		w.run(time.Second)
		if st := w.m.Status(); st.Phase != PhaseQualified || st.MTU != int(tc.want) {
			t.Errorf("advertised %d, max %d: status %v MTU %d, want qualified with %d", tc.advertised, tc.max, st.Phase, st.MTU, tc.want)
		}
	}
}

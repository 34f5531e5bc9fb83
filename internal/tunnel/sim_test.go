// SPDX-License-Identifier: MIT

package tunnel

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// A small Internet in memory, on the fake clock: NATs of every kind the lab
// has, a Teredo server, and clients that are Engines. The connectivity
// tables run here in milliseconds (TestSimTable) before the namespace lab
// proves them on real packets.

// simKind is a NAT behaviour, as internal/lab names them.
type simKind uint8

const (
	simCone simKind = iota
	simAddrRestricted
	simPortRestricted
	simSymmetric      // random port per destination
	simPortPreserving // symmetric, keeps the local port when free
	simSequential     // symmetric, ports in turn
	simUPnP           // symmetric, with a UPnP mapping for the client
	simKinds
)

var simKindNames = [simKinds]string{"cone", "addr-restricted", "port-restricted", "symmetric", "sym-pp", "sym-seq", "sym-upnp"}

func (k simKind) String() string { return simKindNames[k] }

func (k simKind) symmetric() bool { return k >= simSymmetric }

type flowKey struct{ local, remote netip.AddrPort }

type inKey struct {
	ext    uint16
	remote netip.AddrPort
}

// simNAT translates one LAN to one WAN address. It never hairpins.
type simNAT struct {
	kind simKind
	wan  netip.Addr
	lan  netip.Prefix
	rnd  *rand.Rand

	ei      map[netip.AddrPort]uint16 // endpoint-independent kinds: local -> external port
	byExt   map[uint16]netip.AddrPort // their external port -> local
	sent    map[flowKey]*simFlow      // flows seen leaving (filtering)
	flows   map[flowKey]uint16        // symmetric kinds: flow -> external port
	in      map[inKey]netip.AddrPort  // symmetric kinds: (external port, remote) -> local
	taken   map[uint16]bool           // external ports in use
	seq     uint16
	upnp    map[uint16]netip.AddrPort // UPnP mappings
	upnpOut map[netip.AddrPort]bool   // mapped endpoints that started a flow
	// upnpIn are the flows started from outside through a mapping: their
	// answers leave from the mapped port, as conntrack sends them.
	upnpIn map[flowKey]uint16
	// clk, when set, ages the filtering state of the endpoint-independent
	// kinds as the lab's NATs do (see simFlow); nil keeps it for ever.
	// The mappings themselves stay: clients refresh them every 30 s.
	clk *clock
}

// Filtering state lifetimes in the lab (lab-notes): Linux conntrack keeps
// a UDP flow 30 s after its last packet, or 120 s once it has had an
// answer and is still in use 2 s after it began (nf_conntrack_udp_timeout,
// _stream); the address-restricted NAT's set of remote addresses keeps
// one for 120 s after the last packet out to it.
const (
	simFlowTimeout   = 30 * time.Second
	simStreamTimeout = 120 * time.Second
	simStreamAfter   = 2 * time.Second
	simPeerTimeout   = 120 * time.Second
)

// simFlow is a NAT's filtering state for one flow, local to remote.
type simFlow struct {
	start, lastOut, expires time.Time
	replied                 bool
}

// alive says whether flow f lets packets in at now.
func (n *simNAT) alive(f *simFlow) bool {
	return f != nil && (n.clk == nil || !n.clk.now().After(f.expires))
}

// pass records a packet of flow k, out or in (an answer), as conntrack
// does; a packet out after the flow expired starts a new one.
func (n *simNAT) pass(k flowKey, in bool) {
	var now time.Time
	if n.clk != nil {
		now = n.clk.now()
	}
	f := n.sent[k]
	if !n.alive(f) {
		f = &simFlow{start: now}
		n.sent[k] = f
	}
	if in {
		f.replied = true
	} else {
		f.lastOut = now
	}
	timeout := simFlowTimeout
	if f.replied && now.Sub(f.start) > simStreamAfter {
		timeout = simStreamTimeout
	}
	f.expires = now.Add(timeout)
}

func newSimNAT(kind simKind, wan string, lan string, seed uint64) *simNAT {
	return &simNAT{kind: kind, wan: netip.MustParseAddr(wan), lan: netip.MustParsePrefix(lan),
		rnd: rand.New(rand.NewPCG(seed, 1)), ei: map[netip.AddrPort]uint16{}, byExt: map[uint16]netip.AddrPort{},
		sent: map[flowKey]*simFlow{}, flows: map[flowKey]uint16{}, in: map[inKey]netip.AddrPort{},
		taken: map[uint16]bool{}, seq: 20000, upnp: map[uint16]netip.AddrPort{}, upnpOut: map[netip.AddrPort]bool{},
		upnpIn: map[flowKey]uint16{}}
}

func (n *simNAT) free() uint16 {
	for {
		p := uint16(1024 + n.rnd.IntN(60000))
		if !n.taken[p] {
			return p
		}
	}
}

// out translates a datagram leaving local for remote.
func (n *simNAT) out(local, remote netip.AddrPort) netip.AddrPort {
	n.pass(flowKey{local, remote}, false)
	if !n.kind.symmetric() {
		p, ok := n.ei[local]
		if !ok {
			p = local.Port()
			if n.taken[p] {
				p = n.free()
			}
			n.ei[local], n.byExt[p], n.taken[p] = p, local, true
		}
		return netip.AddrPortFrom(n.wan, p)
	}
	k := flowKey{local, remote}
	p, ok := n.flows[k]
	if ext, in := n.upnpIn[k]; in && !ok {
		p, ok = ext, true
	}
	if !ok {
		switch n.kind {
		case simPortPreserving:
			p = local.Port()
			if n.taken[p] {
				p = n.free()
			}
		case simSequential:
			p = n.seq
			n.seq++
		case simUPnP:
			p = n.free()
			for ext, l := range n.upnp {
				if l == local && !n.upnpOut[local] {
					p = ext
					n.upnpOut[local] = true
				}
			}
		default:
			p = n.free()
		}
		n.flows[k], n.taken[p] = p, true
		n.in[inKey{p, remote}] = local
	}
	return netip.AddrPortFrom(n.wan, p)
}

// inbound finds the local endpoint a datagram from remote to external port
// ext goes to, if the NAT lets it in.
func (n *simNAT) inbound(ext uint16, remote netip.AddrPort) (netip.AddrPort, bool) {
	if l, ok := n.upnp[ext]; ok {
		if _, out := n.flows[flowKey{l, remote}]; !out {
			n.upnpIn[flowKey{l, remote}] = ext
		}
		return l, true
	}
	if n.kind.symmetric() {
		l, ok := n.in[inKey{ext, remote}]
		return l, ok
	}
	l, ok := n.byExt[ext]
	if !ok {
		return l, false
	}
	switch n.kind {
	case simAddrRestricted:
		for k, f := range n.sent {
			if k.local == l && k.remote.Addr() == remote.Addr() &&
				(n.clk == nil || !n.clk.now().After(f.lastOut.Add(simPeerTimeout))) {
				return l, true
			}
		}
		return l, false
	case simPortRestricted:
		k := flowKey{l, remote}
		if !n.alive(n.sent[k]) {
			return l, false
		}
		n.pass(k, true)
		return l, true
	}
	return l, true
}

type simPacket struct {
	from, to netip.AddrPort
	data     []byte
	due      time.Time // when it arrives (with sim.delay)
}

// simHost is a Teredo client: an Engine, its sockets, and a host stack
// that answers echo requests.
type simHost struct {
	name    string
	local   netip.AddrPort // the Teredo socket
	nat     *simNAT
	e       *Engine
	addr    netip.Addr
	ports   map[uint16]bool // open random ports
	next    uint16
	replies int // echo replies the host received
	out     Out
	// tickPhase is when in each second its Engine ticks: clients start
	// at any time.
	tickPhase time.Duration
}

func (h *simHost) Open() (uint16, error) {
	h.next += 7
	p := 50000 + h.next + 100*uint16(h.local.Addr().As4()[3])
	h.ports[p] = true
	return p, nil
}

func (h *simHost) Close(p uint16) { delete(h.ports, p) }

type sim struct {
	t       *testing.T
	clk     *clock
	queue   []simPacket
	hosts   []*simHost
	primary netip.AddrPort
	second  netip.AddrPort
	// forwarded counts the bubbles the server forwarded (indirect ones).
	forwarded int
	trace     bool
	// delay, if set, holds each datagram on the wire for as long as it
	// says, which reorders them as a loaded machine can; without it every
	// datagram arrives in the step it was sent, in order.
	delay func(p simPacket) time.Duration
}

// put puts a datagram on the wire.
func (s *sim) put(p simPacket) {
	p.due = s.clk.t
	if s.delay != nil {
		p.due = p.due.Add(s.delay(p))
	}
	s.queue = append(s.queue, p)
}

// due takes the next datagram that has arrived off the wire.
func (s *sim) due() (simPacket, bool) {
	for i, p := range s.queue {
		if !p.due.After(s.clk.t) {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return p, true
		}
	}
	return simPacket{}, false
}

func newSim(t *testing.T) *sim {
	return &sim{t: t, clk: &clock{t: time.Unix(1_700_000_000, 0)},
		primary: netip.MustParseAddrPort("192.0.2.10:3544"), second: netip.MustParseAddrPort("192.0.2.11:3544")}
}

// addClient puts a client behind nat at local, qualifies it (the way the
// client's state machine would, flows included) and returns it. legacy
// runs RFC 4380 alone, which is how Miredo behaves.
func (s *sim) addClient(name string, nat *simNAT, local string, legacy bool) *simHost {
	h := &simHost{name: name, local: netip.MustParseAddrPort(local), nat: nat, ports: map[uint16]bool{}}
	if nat.clk == nil {
		nat.clk = s.clk
	}
	src := rand.NewChaCha8([32]byte{byte(len(s.hosts)), 7})
	cfg := Config{Mode: Client, Now: s.clk.now, Rand: func(b []byte) { src.Read(b) }, MaxPeers: 256}
	if legacy {
		cfg.Disable = AllExtensions
	} else {
		cfg.Ports = h
	}
	h.e = New(cfg)
	if nat.kind == simUPnP && !legacy {
		nat.upnp[h.local.Port()] = h.local // AddPortMapping before qualifying
	}
	mapping := nat.out(h.local, s.primary)
	second := nat.out(h.local, s.second)
	h.addr = teredoAddr(s.primary.Addr(), mapping)
	self := Self{Addr: h.addr, Server: s.primary, Server2: s.second, Cone: nat.kind == simCone && !legacy}
	if !legacy {
		self.Symmetric = second != mapping
		self.PortPreserving = mapping.Port() == h.local.Port() && nat.kind != simUPnP
		self.UPnP = nat.kind == simUPnP
		self.Local = h.local
	}
	h.e.SetSelf(self)
	s.hosts = append(s.hosts, h)
	return h
}

// send puts a datagram on the wire from a host socket, through its NAT
// unless the destination is on its LAN.
func (s *sim) send(h *simHost, fromPort uint16, to netip.AddrPort, b []byte) {
	from := netip.AddrPortFrom(h.local.Addr(), fromPort)
	if !h.nat.lan.Contains(to.Addr()) {
		from = h.nat.out(from, to)
	}
	s.put(simPacket{from: from, to: to, data: append([]byte(nil), b...)})
}

// flushHost sends what h's engine produced and answers echo requests.
func (s *sim) flushHost(h *simHost) {
	for _, m := range h.out.UDP {
		s.send(h, h.local.Port(), m.Addr, m.Buf[:m.N])
	}
	for _, m := range h.out.Via {
		if !h.ports[m.Port] {
			s.t.Fatalf("%s: sent from port %d, which is not open", h.name, m.Port)
		}
		s.send(h, m.Port, m.Addr, m.Buf[:m.N])
	}
	var answers [][]byte
	for _, b := range h.out.Local {
		ip := proto.IPv6(b)
		m, err := proto.ParseICMPv6(ip)
		if err != nil || ip.Dst() != h.addr {
			continue
		}
		switch m.Type() {
		case proto.ICMPv6EchoRequest:
			answers = append(answers, proto.AppendEchoReply(nil, proto.EchoFields{Src: h.addr, Dst: ip.Src(), HopLimit: 64, ID: m.EchoID(), Data: m.Body()}))
		case proto.ICMPv6EchoReply:
			h.replies++
		}
	}
	h.out.Reset()
	for _, a := range answers {
		h.e.FromTunnel(a, &h.out)
		s.flushHost(h)
	}
}

// describe summarises a datagram for traces.
func describe(b []byte) string {
	var e proto.Envelope
	if err := proto.ParseEnvelope(b, &e); err != nil {
		return err.Error()
	}
	kind := "packet"
	if e.IPv6.IsBubble() {
		kind = "bubble"
	} else if e.IPv6.NextHeader() == proto.ProtoICMPv6 {
		m, _ := proto.ParseICMPv6(e.IPv6)
		kind = fmt.Sprintf("icmp%d", m.Type())
	}
	var tr proto.Trailers
	err := proto.ParseTrailers(e.Trailer, &tr)
	return fmt.Sprintf("%s %v->%v origin=%v auth=%v trailers(nonce=%v %x rp=%d alts=%d disc=%v %v)", kind, e.IPv6.Src(), e.IPv6.Dst(),
		e.Origin, e.HasAuth, tr.HasNonce, tr.Nonce, tr.RandomPort, tr.AltAddrs.Len(), tr.HasDiscovery, err)
}

// deliver takes one datagram off the wire.
func (s *sim) deliver(p simPacket) {
	if s.trace {
		s.t.Logf("%v %v -> %v %s", s.clk.t.Sub(time.Unix(1_700_000_000, 0)), p.from, p.to, describe(p.data))
	}
	if p.to.Port() == proto.Port && (p.to.Addr() == s.primary.Addr() || p.to.Addr() == s.second.Addr()) {
		s.server(p)
		return
	}
	for _, h := range s.hosts {
		var to netip.AddrPort
		switch {
		case p.to.Addr() == h.nat.wan && p.from.Addr() != h.nat.wan: // no hairpinning
			l, ok := h.nat.inbound(p.to.Port(), p.from)
			if !ok {
				return
			}
			to = l
		case h.nat.lan.Contains(p.to.Addr()) && h.nat.lan.Contains(p.from.Addr()):
			to = p.to
		default:
			continue
		}
		if to.Addr() != h.local.Addr() {
			continue
		}
		switch {
		case to.Port() == h.local.Port():
			h.e.FromUDP(p.data, p.from, &h.out)
		case h.ports[to.Port()]:
			h.e.FromRandomPort(p.data, p.from, to.Port(), &h.out)
		default:
			return
		}
		s.flushHost(h)
		return
	}
}

// server answers solicitations and forwards bubbles as RFC 4380 §5.3
// says (the source mapping check of case 5 included).
func (s *sim) server(p simPacket) {
	var e proto.Envelope
	if proto.ParseEnvelope(p.data, &e) != nil {
		return
	}
	src, dst := e.IPv6.Src(), e.IPv6.Dst()
	if !e.IPv6.IsBubble() {
		rs, err := proto.ParseRouterSolicitation(e.IPv6)
		if err != nil {
			return
		}
		ra := proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: e.Auth.Nonce, Client: p.from, Dst: rs.Src,
			Server: s.primary.Addr(), Prefix: proto.DefaultPrefix, MTU: 1280})
		s.put(simPacket{from: p.to, to: p.from, data: ra})
		return
	}
	if proto.HasPrefix(src, proto.DefaultPrefix) {
		if a, _ := proto.ParseAddress(src); a.Mapping() != p.from {
			return
		}
	}
	a, ok := proto.ParseAddress(dst)
	if !ok || !proto.HasPrefix(dst, proto.DefaultPrefix) || a.Server != s.primary.Addr() {
		return
	}
	b := proto.AppendOrigin(nil, p.from)
	b = append(append(b, e.IPv6...), e.Trailer...)
	s.forwarded++
	s.put(simPacket{from: s.primary, to: a.Mapping(), data: b})
}

// run moves the clock in 10 ms steps for d, delivering everything each
// step and ticking every engine each second, until done says so.
func (s *sim) run(d time.Duration, done func() bool) bool {
	for step := time.Duration(0); step < d; step += 10 * time.Millisecond {
		for n := 0; ; n++ {
			if n > 10000 {
				s.t.Fatal("packet storm")
			}
			p, ok := s.due()
			if !ok {
				break
			}
			s.deliver(p)
		}
		if done() {
			return true
		}
		s.clk.advance(10 * time.Millisecond)
		for _, h := range s.hosts {
			if (s.clk.t.UnixMilli()-h.tickPhase.Milliseconds())%1000 == 0 {
				h.e.Tick(&h.out)
				s.flushHost(h)
			}
		}
	}
	return done()
}

// ping sends echo requests from a to b once a second until one is
// answered, for at most d; it reports whether one was, and when.
func (s *sim) ping(a, b *simHost, d time.Duration, each ...func()) (bool, time.Duration) {
	start := s.clk.t
	seq := uint16(0)
	last := time.Time{}
	ok := s.run(d, func() bool {
		for _, f := range each {
			f()
		}
		if a.replies > 0 {
			return true
		}
		if last.IsZero() || s.clk.t.Sub(last) >= time.Second {
			last = s.clk.t
			seq++
			a.e.FromTunnel(proto.AppendEchoRequest(nil, proto.EchoFields{Src: a.addr, Dst: b.addr, HopLimit: 64, ID: 1, Seq: seq, Data: []byte("ping")}), &a.out)
			s.flushHost(a)
		}
		return false
	})
	return ok, s.clk.t.Sub(start)
}

// simOutcome is one directed attempt: whether from reached to, and when.
type simOutcome struct {
	ok   bool
	took time.Duration
}

// simDirected runs one attempt with fresh clients: an initiator of kind
// from (legacy or ours) behind a NAT of kind a, a responder behind b, on
// two NATs, or behind one NAT when same.
func simDirected(t *testing.T, a, b simKind, legacyA, legacyB, same bool, seed uint64) simOutcome {
	s := newSim(t)
	s.trace = os.Getenv("SIMTRACE") == fmt.Sprintf("%v-%v-%v-%v-%v", a, b, legacyA, legacyB, same)
	n1 := newSimNAT(a, "198.51.100.2", "10.0.0.0/24", seed)
	var n2 *simNAT
	var hb *simHost
	ha := s.addClient("c1", n1, "10.0.0.2:40001", legacyA)
	if same {
		hb = s.addClient("c3", n1, "10.0.0.3:40003", legacyB)
	} else {
		n2 = newSimNAT(b, "203.0.113.2", "10.0.1.0/24", seed+100)
		hb = s.addClient("c2", n2, "10.0.1.2:40002", legacyB)
	}
	ok, took := s.ping(ha, hb, 8*time.Second)
	return simOutcome{ok, took}
}

// figure1 is RFC 6081's Figure 1 for the kinds the lab has: whether a
// client behind the row's NAT can reach one behind the column's, with
// the extensions on both sides (the §5.3 UPnP row and column are the
// "UPnP Port-symmetric" ones).
var figure1 = [simKinds][simKinds]bool{
	simCone:           {true, true, true, true, true, true, true},
	simAddrRestricted: {true, true, true, true, true, true, true},
	simPortRestricted: {true, true, true, false, true, true, false},
	simSymmetric:      {true, true, false, false, false, false, false},
	simPortPreserving: {true, true, true, false, true, true, false},
	simSequential:     {true, true, true, false, false, false, false},
	simUPnP:           {true, true, false, false, false, false, true},
}

// beyondFigure1 are the pairings that connect although Figure 1 says
// they cannot: those with a UPnP-mapped client, which sends nothing to a
// peer before the peer's packet comes in through the mapping, and then
// answers along that flow, from the mapped port (Figure 1 assumes the
// symmetric side answers from random ports, as RFC 6081 §5.3.4.2 would).
func beyondFigure1(a, b simKind) bool { return a == simUPnP || b == simUPnP }

// TestSimTable: every directed pair of NATs the RFC says works does, with
// our clients on both sides; the others fail within the ping window; two
// clients behind one NAT reach each other through their local addresses
// whatever its kind; and against a client without the extensions (how
// Miredo behaves) nothing works that did not work between two of them.
func TestSimTable(t *testing.T) {
	for a := range simKinds {
		for b := range simKinds {
			t.Run(fmt.Sprintf("%v-%v", a, b), func(t *testing.T) {
				got := simDirected(t, a, b, false, false, false, uint64(a)*10+uint64(b))
				if got.ok != figure1[a][b] && !(got.ok && beyondFigure1(a, b)) {
					t.Errorf("%v -> %v: reached %v in %v, RFC 6081 Figure 1 says %v", a, b, got.ok, got.took, figure1[a][b])
				}
				legacy := simDirected(t, a, b, true, true, false, uint64(a)*10+uint64(b))
				for _, mixed := range []struct {
					name   string
					la, lb bool
				}{{name: "ours to legacy", lb: true}, {name: "legacy to ours", la: true}} {
					o := simDirected(t, a, b, mixed.la, mixed.lb, false, uint64(a)*10+uint64(b))
					if legacy.ok && !o.ok {
						t.Errorf("%v -> %v, %s: fails, but two legacy clients connect", a, b, mixed.name)
					}
				}
			})
		}
		t.Run(fmt.Sprintf("%v-same-NAT", a), func(t *testing.T) {
			if got := simDirected(t, a, a, false, false, true, uint64(a)); !got.ok {
				t.Errorf("two clients behind one %v NAT: no path in %v", a, got.took)
			}
		})
	}
}

func TestSimTimes(t *testing.T) {
	if os.Getenv("SIMTIMES") == "" {
		t.Skip()
	}
	for _, legacy := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		var b []byte
		for a := range simKinds {
			b = fmt.Appendf(b, "%-16v", a)
			for c := range simKinds {
				o := simDirected(t, a, c, legacy[0], legacy[1], false, uint64(a)*10+uint64(c))
				if o.ok {
					b = fmt.Appendf(b, " %5.2f", o.took.Seconds())
				} else {
					b = fmt.Appendf(b, "    --")
				}
			}
			o := simDirected(t, a, a, legacy[0], legacy[1], true, uint64(a))
			b = fmt.Appendf(b, " | same %5.2f %v\n", o.took.Seconds(), o.ok)
		}
		t.Logf("legacy %v:\n%s", legacy, b)
	}
}

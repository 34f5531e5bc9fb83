// SPDX-License-Identifier: MIT

package tunnel

// Host -> Teredo: one IPv6 packet the host routed into the tunnel, per
// RFC 4380 §5.2.4 (client) and §5.4.1 (relay), in this order:
//
//  1. the packet must be IPv6; multicast destinations are dropped;
//  2. client not qualified: ICMPv6 address unreachable;
//  3. destination outside the Teredo prefix: the relay answers address
//     unreachable (its routing is wrong); the client tests native
//     destinations, but only from a Teredo source (else administratively
//     prohibited: no relay would accept it);
//  4. Teredo destination whose embedded server or client IPv4 is not global
//     unicast: dropped silently;
//  5. trusted peer heard from in the last 30 s: the packet goes as is to
//     its mapping, with no copy (case 1); a client that has had nothing
//     back from a native peer for 2 s tests it again meanwhile, so that a
//     relay that died or restarted is replaced within seconds;
//  6. otherwise the packet is queued (a copy) and the peer probed: a
//     bubble through its server, plus one to its mapping when our NAT
//     filters (case 5; the cone bit is ignored, as §5.2.4 allows and Miredo
//     does), or for a native destination an echo request through our
//     server (case 2, §5.2.9); at most 4 probes 2 s apart (Tick repeats
//     them), after which the host gets ICMPv6 address unreachable. Tests
//     also draw on a global budget; one it refuses is sent by a later
//     Tick.

import (
	"net/netip"

	"github.com/miredo-go/miredo/pkg/proto"
)

// disposition is what became of one packet, for counting and tests.
type disposition uint8

const (
	dispDropped  disposition = iota
	dispSent                 // sent over UDP or written to the host as is
	dispQueued               // waiting for its peer to be verified
	dispConsumed             // a bubble or connectivity-test reply: handled, not forwarded
)

type verdict struct {
	disp   disposition
	reason DropReason
}

func drop(r DropReason) verdict { return verdict{disp: dispDropped, reason: r} }

var (
	sent     = verdict{disp: dispSent}
	queuedV  = verdict{disp: dispQueued}
	consumed = verdict{disp: dispConsumed}
)

// FromTunnel handles one IPv6 packet the host sent into the tunnel. What
// it sends goes into out; pkt may be referenced from out.UDP until
// out.Reset.
func (e *Engine) FromTunnel(pkt []byte, out *Out) { e.fromTunnelCounted(pkt, out) }

func (e *Engine) fromTunnelCounted(pkt []byte, out *Out) verdict {
	c := &e.st.tun
	c.in.Add(1)
	v := e.fromTunnel(pkt, out, c)
	switch v.disp {
	case dispDropped:
		c.dropped[v.reason].Add(1)
	case dispSent:
		c.encapsulated.Add(1)
	case dispQueued:
		c.queued.Add(1)
	}
	return v
}

func (e *Engine) fromTunnel(b []byte, out *Out, c *counters) verdict {
	ip, _, err := proto.ParseIPv6(b)
	if err != nil {
		return drop(DropMalformed)
	}
	dst := (*[16]byte)(ip[24:40])
	if dst[0] == 0xff {
		return drop(DropMulticast)
	}
	now := e.batchNow(out)
	self := e.self.Load()
	client := e.cfg.Mode == Client
	prefix := e.cfg.Prefix
	if client {
		if !self.qualified {
			e.unreachable(ip, proto.UnreachAddress, now, out, c)
			return drop(DropNotQualified)
		}
		prefix = self.prefix
	}
	teredo := be32(dst[0:4]) == prefix
	switch {
	case !teredo && !client:
		e.unreachable(ip, proto.UnreachAddress, now, out, c)
		return drop(DropNotTeredoDst)
	case !teredo && be32(ip[8:12]) != prefix:
		e.unreachable(ip, proto.UnreachProhibited, now, out, c)
		return drop(DropProhibited)
	case teredo && (!globalIPv4(dst[4:8]) || !proto.IsGlobalUnicastIPv4(embeddedMapping(dst[:]).Addr())):
		return drop(DropNonGlobal)
	}

	s := e.table.shardOf(dst)
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, found := s.lookup(dst)
	if found {
		p := &s.peers[idx]
		s.touch(idx, now)
		if p.has(fTrusted) && since(now, p.lastRx) < validTicks {
			p.lastTx = now
			if !p.has(fProtected) {
				s.protect(idx)
			}
			if p.has(fRouted) {
				return e.sendRouted(s, idx, ip, self, now, out)
			}
			if !out.sendUDP(ip, p.mapping()) {
				return drop(DropNonGlobal)
			}
			if client && p.has(fNative) && since(now, p.lastRx) >= staleTicks &&
				since(now, p.lastTest) >= staleTicks && e.hostTests.take(now) {
				// Our packets go unanswered: test the peer again,
				// without counting against its budget (it is trusted),
				// and keep a copy of this packet for the relay the
				// test finds: a sender that waits for an answer (TCP
				// backing off) sends nothing else for seconds.
				p.lastTest = now
				e.keepForResend(s, idx, ip)
				e.test(p, self, out, c)
			}
			return sent
		}
		if x := s.extIf(idx); x != nil && p.has(fTrusted) && e.has(ExtLoadReduction) && x.bits&xSpeaks != 0 && x.bits&xSLRFailed == 0 {
			// Silent for 30 s, but it reads trailers: ask it directly
			// first (RFC 6081 §5.7.4.1).
			return e.solicit(s, idx, x, ip, self, now, out, c)
		}
	} else {
		var res insertResult
		if idx, res = s.insert(dst, now, queueDrop{e, c}); res == refused {
			return drop(DropTableFull)
		}
		e.countInsert(res, c)
		p := &s.peers[idx]
		if teredo {
			p.setMapping(embeddedMapping(dst[:]))
		} else {
			p.flags |= fNative
		}
	}
	// Untrusted, or trusted but silent for too long: queue and probe.
	v := e.queueProbing(s, idx, ip, netip.AddrPort{}, self, now, out, c, &e.hostTests)
	if v == drop(DropUnreachable) {
		e.unreachable(ip, proto.UnreachAddress, now, out, c)
	}
	return v
}

// queueProbing is how both directions end for a peer whose mapping is not
// (or no longer) verified: the packet waits in the peer's queue (from is
// where an incoming one came from; zero for the host's), and the peer gets
// a bubble or a connectivity test unless one went out less than 2 s ago.
// A test draws on tests (nil: the caller took its token). It returns
// DropUnreachable once the peer's probes are used up. s.mu is held.
func (e *Engine) queueProbing(s *shard, idx uint32, ip proto.IPv6, from netip.AddrPort, self *selfState, now tick, out *Out, c *counters, tests *limiter) verdict {
	// A stale path's copy now waits like any queued packet.
	s.peers[idx].flags &^= fResend
	switch e.mayProbe(&s.peers[idx], now) {
	case probeNo:
		return drop(DropUnreachable)
	case probeNow:
		e.probe(s, idx, self, now, out, c, tests)
	}
	ok := e.enqueue(s.queueOf(idx), ip, from.IsValid(), from)
	if len(s.queues[idx].items) == 0 {
		s.takeQueue(idx)
	}
	if !ok {
		return drop(DropQueueFull)
	}
	return queuedV
}

// sendRouted sends a packet to a trusted peer whose packets take another
// route than the Teredo socket to its mapping (RFC 6081; see routeOf).
// s.mu is held.
func (e *Engine) sendRouted(s *shard, idx uint32, ip []byte, self *selfState, now tick, out *Out) verdict {
	p, x := &s.peers[idx], s.extIf(idx)
	if x != nil {
		x.lastData = now // §5.4.4.1
	}
	if !out.send(ip, e.routeOf(p, x, self)) {
		return drop(DropNonGlobal)
	}
	return sent
}

type probeDecision uint8

const (
	probeNow   probeDecision = iota // send a bubble or test now
	probeLater                      // one went out less than 2 s ago
	probeNo                         // the budget is used up
)

// mayProbe applies §5.2.6: no probe within 2 s of the last transmission,
// no more than 4 unanswered ones in 300 s (Miredo counts the 300 s from the
// last one and then starts afresh), 30 s for connectivity tests to native
// peers (testWindow).
func (e *Engine) mayProbe(p *peer, now tick) probeDecision {
	if p.probes >= maxProbes {
		window := tick(probeWindow)
		if p.has(fNative) {
			window = testWindow
		}
		if since(now, p.lastTx) <= window {
			return probeNo
		}
		p.probes = 0
		p.flags &^= fPinging
	}
	if p.probes > 0 && since(now, p.lastTx) < probeSpacing {
		return probeLater
	}
	return probeNow
}

// keepForResend replaces the copy kept for a stale path (fResend) with ip.
// A trusted peer has no other queue. s.mu is held.
func (e *Engine) keepForResend(s *shard, idx uint32, ip proto.IPv6) {
	if q := s.takeQueue(idx); q != nil {
		e.freeQueue(q)
	}
	if e.enqueue(s.queueOf(idx), ip, false, netip.AddrPort{}) {
		s.peers[idx].flags |= fResend
		return
	}
	s.takeQueue(idx)
	s.peers[idx].flags &^= fResend
}

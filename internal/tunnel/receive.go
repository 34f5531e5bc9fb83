// SPDX-License-Identifier: MIT

package tunnel

// Teredo -> host: one UDP datagram from the Teredo socket, per RFC 4380
// §5.2.3 (client) and §5.4.2 (relay), in this order:
//
//  1. client: nothing is accepted before qualification (the client's
//     maintenance code has already taken the server's advertisements out);
//  2. the Teredo envelope and its IPv6 packet must parse (§5.1.1), and the
//     sender must be a global unicast IPv4 address;
//  3. client, from our own server: a packet for us carrying an origin
//     indication is a peer's indirect bubble (or the first packet of a
//     peer), so a direct bubble goes back to that origin to open our NAT,
//     at most one per origin every 2 s and 10 a second in all; a bubble
//     stops here;
//  4. link-local sources are dropped (no fake router advertisements through
//     the tunnel); a relay accepts Teredo sources only; multicast
//     destinations and bubbles from native sources are dropped; a
//     non-bubble must be for us (client: our address; relay: a native
//     destination we route);
//  5. known trusted peer, datagram from its mapping: accepted (case 1);
//  6. client: the authentic echo reply to our connectivity test verifies the
//     native peer's mapping (case 2, §5.2.9); it is not delivered;
//  7. Teredo source whose embedded mapping is the datagram's source (case
//     3), or a bubble addressed to the link-local source we bubbled that
//     peer from (a peer behind a symmetric NAT), while that bubble is
//     recent and unanswered and the peer is not trusted and active: the
//     mapping is verified. A relay only accepts peers it has sent to
//     (§5.4.2 allows dropping the others); a client takes new peers this
//     way within a global budget (a spoofed flood must not outrun expiry);
//  8. client, native source not verified: the packet is queued and the
//     source tested; it is delivered if the test's reply comes from the
//     same mapping (case 6). The test is not repeated by Tick (only more
//     packets from the source trigger more, within the per-peer budget),
//     and such tests draw on a global budget: a spoofed source buys at
//     most one echo request, and all of them together 10 a second.
//
// Every verification flushes the peer's queue into out. Bubbles are never
// delivered. Each step is a function below; those that use the peer table
// run with its shard locked by fromUDP, which unlocks it on return.

import (
	"bytes"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/proto"
)

// FromUDP handles one datagram b received from from. What it produces goes
// into out; b may be referenced from out.Local until out.Reset.
func (e *Engine) FromUDP(b []byte, from netip.AddrPort, out *Out) { e.fromUDPCounted(b, from, out) }

func (e *Engine) fromUDPCounted(b []byte, from netip.AddrPort, out *Out) verdict {
	c := &e.st.udp
	c.in.Add(1)
	v := e.fromUDPVia(b, from, 0, nil, out, c)
	e.count(c, v)
	return v
}

// datagram is one datagram from the Teredo side, parsed and checked
// enough for the rules to look at it.
type datagram struct {
	ip        proto.IPv6
	src, dst  *[16]byte
	from      netip.AddrPort
	origin    netip.AddrPort // the origin indication, if hasOrigin
	hasOrigin bool
	bubble    bool
	srcTeredo bool // the source is in our Teredo prefix
	self      *selfState
	now       tick
	// via is the random port the datagram came to (0: the Teredo port);
	// fromLocal says its sender is not a global address (a peer behind our
	// own NAT, RFC 6081 §5.6).
	via       uint16
	fromLocal bool
	// tr are a client's bubble's RFC 6081 trailers.
	tr proto.Trailers
}

// fromUDPVia handles a datagram that came to the Teredo port (via 0), or to
// a client's random port via, which only owner's datagrams may use.
func (e *Engine) fromUDPVia(b []byte, from netip.AddrPort, via uint16, owner *[16]byte, out *Out, c *counters) verdict {
	self := e.self.Load()
	client := e.cfg.Mode == Client
	if client && !self.qualified {
		return drop(DropNotQualified)
	}
	var env proto.Envelope
	if err := proto.ParseEnvelope(b, &env); err != nil {
		return drop(DropMalformed)
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	fromLocal := false
	if !proto.IsGlobalUnicastIPv4(from.Addr()) || from.Port() == 0 {
		// Only a peer behind our own NAT answering at the local address
		// we advertised may (RFC 6081 §5.6): see verify.
		if !e.has(ExtHairpin) || !unicastIPv4(from.Addr()) || from.Port() == 0 {
			return drop(DropNonGlobal)
		}
		fromLocal = true
	}
	prefix := e.cfg.Prefix
	if client {
		prefix = self.prefix
	}
	d := datagram{ip: env.IPv6, from: from, origin: env.Origin, hasOrigin: env.HasOrigin,
		bubble: env.IPv6.IsBubble(), self: self, now: e.batchNow(out), via: via, fromLocal: fromLocal}
	d.src, d.dst = (*[16]byte)(d.ip[8:24]), (*[16]byte)(d.ip[24:40])
	d.srcTeredo = be32(d.src[0:4]) == prefix
	if owner != nil && *d.src != *owner {
		return drop(DropMismatch)
	}
	if e.ext != 0 && d.bubble && len(env.Trailer) > 0 {
		// Trailers ride on bubbles (RFC 6081 §4); a bad one ends their
		// reading (§5.1.2), and some cost the bubble (§4.1, §5.6.4.2).
		if err := proto.ParseTrailers(env.Trailer, &d.tr); proto.TrailerDropsPacket(err) {
			return drop(DropTrailer)
		}
	}

	if client && via == 0 && from == self.Server {
		if v, done := e.fromOurServer(&d, out, c); done {
			return v
		}
	}
	switch {
	case d.src[0] == 0xfe && d.src[1]&0xc0 == 0x80:
		return drop(DropLinkLocalSrc)
	case !client && !d.srcTeredo:
		return drop(DropNotTeredoSrc)
	case d.dst[0] == 0xff:
		return drop(DropMulticast)
	case d.bubble && !d.srcTeredo:
		// A native peer answers our test with an echo reply; its bubble
		// answers nothing and must not make us test it.
		return drop(DropNativeBubble)
	case !d.bubble && !e.deliverable(d.dst, self, prefix):
		return drop(DropBadDst)
	}
	s := e.table.shardOf(d.src)
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, found := s.lookup(d.src)
	if found {
		if v, done := e.fromKnownPeer(s, idx, &d, out, c); done {
			return v
		}
	}
	if d.srcTeredo {
		return e.fromTeredoPeer(s, idx, found, &d, out, c)
	}
	return e.fromNativePeer(s, idx, found, &d, out, c)
}

// fromOurServer handles what a client's own server forwards (step 3): a
// packet for us with an origin indication, or a bubble, makes us send a
// direct bubble to the origin, within the reply budget. It reports done
// for a bubble, which stops there.
func (e *Engine) fromOurServer(d *datagram, out *Out, c *counters) (verdict, bool) {
	origin, ok := d.origin, d.hasOrigin
	if !ok && d.bubble && d.srcTeredo {
		// Some servers forward bubbles without an origin indication; the
		// source address still tells the mapping.
		origin, ok = embeddedMapping(d.src[:]), true
	}
	// Only for a packet to us, and within budget: whoever can forge our
	// server's address chooses the origin.
	forUs := *d.dst == d.self.addr
	if ok && forUs && d.bubble && d.srcTeredo && e.ext != 0 && proto.IsGlobalUnicastIPv4(origin.Addr()) && origin.Port() != 0 &&
		e.indirectFromPeer(d, origin, out, c) {
		return consumed, true
	}
	if ok && forUs && proto.IsGlobalUnicastIPv4(origin.Addr()) && origin.Port() != 0 {
		kind := uint8(0)
		if d.src[0] == 0xfe {
			kind = 1 // an answer to a link-local source (Miredo's bubble)
		}
		if e.replies.allowKind(origin, kind, d.now) {
			reply := out.commit(proto.AppendBubble(out.space(proto.IPv6HeaderLen), d.ip.Dst(), d.ip.Src(), 0))
			out.sendUDP(reply, origin)
			c.reply.Add(1)
		} else {
			c.replyLimited.Add(1)
		}
	}
	if !d.bubble {
		return verdict{}, false
	}
	if !forUs {
		return drop(DropBadDst), true
	}
	c.bubblesIn.Add(1)
	return consumed, true
}

// fromKnownPeer handles a datagram from a peer in the table whose mapping
// is verified (step 5), or the reply to our connectivity test to it
// (step 6). It reports whether it decided. s.mu is held.
func (e *Engine) fromKnownPeer(s *shard, idx uint32, d *datagram, out *Out, c *counters) (verdict, bool) {
	p := &s.peers[idx]
	if p.has(fTrusted) && (p.mapped(d.from) || e.ext != 0 && e.secondPath(p, d)) {
		if p.has(fResend) {
			// The path answers as it is: the copy went already.
			p.flags &^= fResend
			if q := s.takeQueue(idx); q != nil {
				e.freeQueue(q)
			}
		}
		if e.ext != 0 {
			e.onPath(s, idx, d)
		}
		e.accept(s, idx, d.now, out, c)
		if d.bubble && e.ext != 0 {
			e.bubbleOptions(s, idx, d, out, c)
		}
		return deliver(d.ip, d.bubble, out, c), true
	}
	if d.fromLocal {
		return verdict{}, false
	}
	if e.cfg.Mode == Client && p.has(fPinging) && e.isPingReply(d.ip, p, d.self, d.now) {
		// A stale path's copy (fResend), if any, goes to the new
		// mapping with the rest of the queue.
		p.flags = p.flags&^(fPinging|fResend) | fTrusted
		p.setMapping(d.from)
		c.trusted.Add(1)
		c.replies.Add(1)
		e.accept(s, idx, d.now, out, c)
		return consumed, true
	}
	return verdict{}, false
}

// fromTeredoPeer verifies a Teredo peer's mapping (step 7): its embedded
// mapping is the datagram's source, or the datagram answers our recent
// bubble. A client takes a new peer this way within the new-peer budget;
// a relay takes none it has not sent to. s.mu is held.
func (e *Engine) fromTeredoPeer(s *shard, idx uint32, found bool, d *datagram, out *Out, c *counters) verdict {
	// Only an answer to our recent bubble may come from a mapping other
	// than the one in the peer's address (a peer behind a symmetric NAT):
	// see verify. The table is checked before the HMAC, so forged bubbles
	// cost no hashing.
	how := e.verify(s, idx, found, d)
	if how == unverified {
		if d.fromLocal {
			return drop(DropNonGlobal)
		}
		return drop(DropMismatch)
	}
	if d.fromLocal && how != byNonce {
		return drop(DropNonGlobal)
	}
	if !found {
		if e.cfg.Mode != Client {
			return drop(DropUnknownPeer)
		}
		// Anyone can send such a datagram from any address it can
		// spoof: new peers from outside are budgeted, so a flood cannot
		// fill the table faster than expiry empties it.
		if !e.newPeers.take(d.now) {
			return drop(DropPeerLimited)
		}
		var res insertResult
		if idx, res = s.insert(d.src, d.now, queueDrop{e, c}); res == refused {
			return drop(DropTableFull)
		}
		e.countInsert(res, c)
	}
	p := &s.peers[idx]
	p.setMapping(d.from)
	wasTrusted := p.has(fTrusted)
	if !wasTrusted {
		p.flags |= fTrusted
		c.trusted.Add(1)
	}
	if e.ext != 0 {
		e.verified(s, idx, d, how, wasTrusted, out, c)
	}
	e.accept(s, idx, d.now, out, c)
	if d.bubble && e.ext != 0 {
		e.bubbleOptions(s, idx, d, out, c)
	}
	return deliver(d.ip, d.bubble, out, c)
}

// fromNativePeer handles a packet from a native source whose mapping is
// not verified (client, step 8): it waits while the source is tested. The
// test draws on the budget for tests triggered from outside, which is
// checked before a new source takes a table entry. s.mu is held.
func (e *Engine) fromNativePeer(s *shard, idx uint32, found bool, d *datagram, out *Out, c *counters) verdict {
	if d.fromLocal {
		return drop(DropNonGlobal)
	}
	if !found {
		if !e.peerTests.take(d.now) {
			c.pingsLimited.Add(1)
			return drop(DropProbeLimited)
		}
		var res insertResult
		if idx, res = s.insert(d.src, d.now, queueDrop{e, c}); res == refused {
			return drop(DropTableFull)
		}
		e.countInsert(res, c)
		s.peers[idx].flags |= fNative
	}
	s.touch(idx, d.now)
	if found && e.mayProbe(&s.peers[idx], d.now) == probeNow && !e.peerTests.take(d.now) {
		c.pingsLimited.Add(1)
		return drop(DropProbeLimited)
	}
	return e.queueProbing(s, idx, d.ip, d.from, d.self, d.now, out, c, nil)
}

func (e *Engine) countInsert(res insertResult, c *counters) {
	c.created.Add(1)
	if res == insertedEvicting {
		c.evicted.Add(1)
	}
}

// accept records a packet from verified peer idx: the peer was heard from
// (its probe budget starts afresh) and its queue is flushed to its mapping.
// s.mu is held.
func (e *Engine) accept(s *shard, idx uint32, now tick, out *Out, c *counters) {
	p := &s.peers[idx]
	p.lastRx = now
	p.probes = 0
	s.touch(idx, now)
	if p.has(fExt) {
		// Heard from: our solicitations (RFC 6081 §5.7) were answered
		// without an indirect bubble.
		x := s.ext[idx]
		if x.bits&xSoliciting != 0 {
			c.saved.Add(1)
		}
		x.bits &^= xSoliciting // xSLRFailed stays: see rfc6081.go
		x.solicits = 0
	}
	q := s.takeQueue(idx)
	if q == nil {
		return
	}
	for i := range q.items {
		if !q.items[i].in {
			// We are sending it data: it has earned protection.
			s.protect(idx)
			p.lastTx = now
			if x := s.extIf(idx); x != nil {
				x.lastData = now // RFC 6081 §5.4.4.1
			}
			break
		}
	}
	r := route{to: p.mapping()}
	if p.has(fRouted) {
		r = e.routeOf(p, s.ext[idx], e.self.Load())
	}
	e.flush(q, p.mapping(), r, out, c)
}

// deliver hands an accepted packet to the host, unless it is a bubble.
func deliver(ip proto.IPv6, bubble bool, out *Out, c *counters) verdict {
	if bubble {
		c.bubblesIn.Add(1)
		return consumed
	}
	out.Local = append(out.Local, ip)
	return sent
}

// deliverable says whether a non-bubble packet's destination is one we
// hand to the host: a client's own address; for a relay, a native global
// address (not Teredo, link-local, loopback, unspecified or IPv4-mapped).
func (e *Engine) deliverable(dst *[16]byte, self *selfState, prefix uint32) bool {
	if e.cfg.Mode == Client {
		return *dst == self.addr
	}
	a := netip.AddrFrom16(*dst)
	return a.IsGlobalUnicast() && !a.Is4In6() && be32(dst[0:4]) != prefix
}

// isPingReply reports whether ip answers our connectivity test to p: an
// echo reply carrying p's nonce, or a destination unreachable from p
// quoting our echo request (Miredo accepts both), within 30 s of the test.
func (e *Engine) isPingReply(ip proto.IPv6, p *peer, self *selfState, now tick) bool {
	if since(now, p.lastTx) > pingLifetime || ip.NextHeader() != proto.ProtoICMPv6 {
		return false
	}
	m, err := proto.ParseICMPv6(ip)
	if err != nil || len(m) < 8 || m.Code() != 0 && m.Type() == proto.ICMPv6EchoReply {
		return false
	}
	switch m.Type() {
	case proto.ICMPv6EchoReply:
		return m.EchoID() == e.pingID && bytes.Equal(m.Body(), p.nonce[:])
	case proto.ICMPv6DstUnreachable:
		q := m.Body()
		if len(q) < proto.IPv6HeaderLen+8+len(p.nonce) || q[0]>>4 != 6 || q[6] != proto.ProtoICMPv6 {
			return false
		}
		if !bytes.Equal(q[8:24], self.addr[:]) || !bytes.Equal(q[24:40], p.addr[:]) {
			return false
		}
		echo := proto.ICMPv6(q[proto.IPv6HeaderLen:])
		return echo.Type() == proto.ICMPv6EchoRequest && echo.EchoID() == e.pingID &&
			bytes.Equal(echo.Body()[:len(p.nonce)], p.nonce[:])
	}
	return false
}

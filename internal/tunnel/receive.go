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
//     (§5.4.2 allows dropping the others);
//  8. client, native source not verified: the packet is queued and the
//     source tested; it is delivered if the test's reply comes from the
//     same mapping (case 6). The test is not repeated by Tick (only more
//     packets from the source trigger more, within the per-peer budget),
//     and such tests draw on a global budget: a spoofed source buys at
//     most one echo request, and all of them together 10 a second.
//
// Every verification flushes the peer's queue into out. Bubbles are never
// delivered.

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
	v := e.fromUDP(b, from, out, c)
	switch v.disp {
	case dispDropped:
		c.dropped[v.reason].Add(1)
	case dispSent:
		c.delivered.Add(1)
	case dispQueued:
		c.queued.Add(1)
	}
	return v
}

func (e *Engine) fromUDP(b []byte, from netip.AddrPort, out *Out, c *counters) verdict {
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
	if !proto.IsGlobalUnicastIPv4(from.Addr()) || from.Port() == 0 {
		return drop(DropNonGlobal)
	}
	ip := env.IPv6
	src, dst := (*[16]byte)(ip[8:24]), (*[16]byte)(ip[24:40])
	bubble := ip.IsBubble()
	now := e.batchNow(out)
	prefix := e.cfg.Prefix
	if client {
		prefix = self.prefix
	}
	srcTeredo := be32(src[0:4]) == prefix

	if client && from == self.Server {
		origin, ok := env.Origin, env.HasOrigin
		if !ok && bubble && srcTeredo {
			// Some servers forward bubbles without an origin
			// indication; the source address still tells the mapping.
			origin, ok = embeddedMapping(src[:]), true
		}
		// Only for a packet to us, and within budget: whoever can forge
		// our server's address chooses the origin.
		forUs := *dst == self.addr
		if ok && forUs && proto.IsGlobalUnicastIPv4(origin.Addr()) && origin.Port() != 0 {
			if e.replies.allow(origin, now) {
				reply := out.commit(proto.AppendBubble(out.space(proto.IPv6HeaderLen), ip.Dst(), ip.Src(), 0))
				out.sendUDP(reply, origin)
				c.reply.Add(1)
			} else {
				c.replyLimited.Add(1)
			}
		}
		if bubble {
			if !forUs {
				return drop(DropBadDst)
			}
			c.bubblesIn.Add(1)
			return consumed
		}
	}
	switch {
	case src[0] == 0xfe && src[1]&0xc0 == 0x80:
		return drop(DropLinkLocalSrc)
	case !client && !srcTeredo:
		return drop(DropNotTeredoSrc)
	case dst[0] == 0xff:
		return drop(DropMulticast)
	case bubble && !srcTeredo:
		// A native peer answers our test with an echo reply; its bubble
		// answers nothing and must not make us test it.
		return drop(DropNativeBubble)
	case !bubble && !e.deliverable(dst, self, prefix):
		return drop(DropBadDst)
	}

	s := e.table.shardOf(src)
	s.mu.Lock()
	idx, found := s.lookup(src)
	if found {
		p := &s.peers[idx]
		if p.has(fTrusted) && p.mapped(from) {
			e.accept(s, idx, now, out, c)
			return deliver(ip, bubble, out, c)
		}
		if client && p.has(fPinging) && e.isPingReply(ip, p, self, now) {
			p.flags = p.flags&^fPinging | fTrusted
			p.setMapping(from)
			c.trusted.Add(1)
			c.replies.Add(1)
			e.accept(s, idx, now, out, c)
			return consumed
		}
	}
	if srcTeredo {
		if embeddedMapping(src[:]) != from {
			// Only the answer to our recent bubble, addressed to the
			// link-local source we sent it from, may come from elsewhere
			// (a peer behind a symmetric NAT). The table is checked
			// before the HMAC, so forged bubbles cost no hashing.
			if !bubble || !found || !answersBubble(&s.peers[idx], now) || !e.isBubbleSource(src, dst, now) {
				s.mu.Unlock()
				return drop(DropMismatch)
			}
		}
		if !found {
			if !client {
				s.mu.Unlock()
				return drop(DropUnknownPeer)
			}
			var res insertResult
			if idx, res = s.insert(src, now, queueDrop{e, c}); res == refused {
				s.mu.Unlock()
				return drop(DropTableFull)
			}
			e.countInsert(res, c)
		}
		p := &s.peers[idx]
		p.setMapping(from)
		if !p.has(fTrusted) {
			p.flags |= fTrusted
			c.trusted.Add(1)
		}
		e.accept(s, idx, now, out, c)
		return deliver(ip, bubble, out, c)
	}

	// Client, native source, mapping not verified (case 6). Its test draws
	// on the budget for tests triggered from outside, which is checked
	// before a new source takes a table entry.
	if !found {
		if !e.peerTests.take(now) {
			s.mu.Unlock()
			c.pingsLimited.Add(1)
			return drop(DropProbeLimited)
		}
		var res insertResult
		if idx, res = s.insert(src, now, queueDrop{e, c}); res == refused {
			s.mu.Unlock()
			return drop(DropTableFull)
		}
		e.countInsert(res, c)
		s.peers[idx].flags |= fNative
	}
	s.touch(idx, now)
	p := &s.peers[idx]
	switch e.mayProbe(p, now) {
	case probeNo:
		s.mu.Unlock()
		return drop(DropUnreachable)
	case probeNow:
		if found && !e.peerTests.take(now) {
			s.mu.Unlock()
			c.pingsLimited.Add(1)
			return drop(DropProbeLimited)
		}
		e.probe(s, idx, self, now, out, c, nil)
	}
	ok := e.enqueue(s.queueOf(idx), ip, true, from)
	if len(s.queues[idx].items) == 0 {
		s.takeQueue(idx)
	}
	s.mu.Unlock()
	if !ok {
		return drop(DropQueueFull)
	}
	return queuedV
}

func (e *Engine) countInsert(res insertResult, c *counters) {
	c.created.Add(1)
	if res == insertedEvicting {
		c.evicted.Add(1)
	}
}

// accept records a packet from verified peer idx: the peer was heard from
// (its probe budget starts afresh) and its queue is flushed to its mapping.
// It unlocks s.
func (e *Engine) accept(s *shard, idx uint32, now tick, out *Out, c *counters) {
	p := &s.peers[idx]
	p.lastRx = now
	p.probes = 0
	s.touch(idx, now)
	q := s.takeQueue(idx)
	to := p.mapping()
	if q != nil {
		for i := range q.items {
			if !q.items[i].in {
				// We are sending it data: it has earned protection.
				s.protect(idx)
				p.lastTx = now
				break
			}
		}
	}
	s.mu.Unlock()
	if q != nil {
		e.flush(q, to, out, c)
	}
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

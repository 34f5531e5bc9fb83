// SPDX-License-Identifier: MIT

package tunnel

// RFC 6081's extensions, for a client (a relay uses none). They change how
// a client sets up a path to a Teredo peer:
//
//   - bubbles: an indirect bubble comes from our Teredo address (so the peer
//     knows whom to answer and can send an indirect bubble of its own) and
//     carries a fresh nonce (§5.2.4.1), our local address while the path is
//     not up (Alternate Address trailer, §5.6.4.1) and, behind a
//     port-preserving or sequential NAT, the port a peer should aim at
//     (Random Port trailer, §5.4.4.2, §5.5.4.2); direct bubbles echo the
//     nonce of the peer's last indirect bubble (§5.2.4.2). A Miredo peer
//     ignores trailers and answers the way it always has; for one behind a
//     symmetric NAT, whose answer comes from a mapping we cannot check
//     without a nonce, rounds after the first add the Miredo-style indirect
//     bubble (HMAC link-local source) that it can answer verifiably;
//   - receiving a peer's indirect bubble (§5.2.4.3, §5.4.4.4, §5.6.4.2): we
//     store its nonce, random port and alternate addresses, answer with a
//     direct bubble to its origin, to each alternate and to its random
//     port, and, unless the path is up, send an indirect bubble of our own
//     (§3.1, §6.1 packet 4): the peer's answer to it leaves its NAT from the
//     mapping it uses towards us;
//   - a direct bubble from a mapping other than the one in the peer's
//     address is accepted when it echoes a nonce we sent in the last 30 s
//     (§5.2.4.4), or arrives on the random port we opened for that peer
//     from the peer's address (§5.4.4.5); a peer verified while it cannot
//     verify us by our address's mapping gets one direct bubble back at
//     once, echoing its nonce, so that it need not wait 2 s for its own
//     retry (RFC 4380 §5.2.3 lets a client bubble anyone it hears from); a
//     verified peer that also speaks from the mapping in its address (a
//     second path) is heard on both, and sent to on the first;
//   - behind a single UPnP-mapped symmetric NAT, no bubble goes out to
//     open our NAT (the mapping keeps it open, as a cone NAT is, RFC 4380
//     §5.2.4; such a bubble would start a flow from a random port that
//     shadows the one the peer's packets come in on), and packets go to
//     a peer along the flow its packet came in on, to the mapping it came
//     from, which our NAT answers from the mapped port. RFC 6081
//     §5.3.4.2-3 would send them to the mapping in a symmetric peer's
//     address instead, betting that the peer has a UPnP mapping too;
//     answering along the flow reaches every peer the bet reaches and
//     every other one whose packets come in through our mapping;
//   - behind a port-preserving symmetric NAT, a random local port per peer
//     being set up (§5.4); behind another symmetric NAT, an echo test from
//     a random port predicts its external port (§5.5);
//   - a trusted peer silent for 30 s is asked for a direct bubble (Server
//     Load Reduction, §5.7) before any indirect bubble goes through the
//     server, if it has shown it reads trailers; once, not three times
//     (§5.7.2): unanswered after the 2 s bubble spacing, it is bubbled
//     through its server, and not asked again while its entry lasts. The
//     direct bubble only gets in while the peer's NAT still holds the
//     path, and Linux conntrack (most home routers, and the lab's
//     port-restricted NAT) forgets a flow 30 s after its last packet
//     unless it carried answers for more than 2 s: after a single short
//     exchange the path is gone exactly when the peer stops being valid.
//     Three solicitations kept the packets waiting 6 s, past what a ping
//     or a TCP handshake waits, where the bubble round at 2 s reaches
//     every peer a second solicitation would, and the peers whose NAT
//     forgot us.
//
// Budget per peer, on top of RFC 4380's (a bubble round at most every 2 s,
// 4 rounds in 300 s; a round is one indirect bubble, plus the Miredo-style
// one from the second round, and up to two direct bubbles: to its mapping,
// and to its random port or from ours): one random port at a time;
// two echo tests (3 packets each) per 300 s; one solicitation per
// refresh, none once one went unanswered; 20 keep-alives through a random port (§5.4.2.1). Globally:
// maxRandomPorts ports at once, and the bubbles that other people's
// packets make us send (answers to indirect bubbles, to each alternate
// address, our own indirect bubbles in response) draw on the reply and
// probe budgets (limit.go).

import (
	"net/netip"
	"sync"

	"github.com/miredo-go/miredo/pkg/proto"
)

const (
	// maxRandomPorts bounds the random ports open at once: one per peer
	// being set up behind a port-preserving or sequential NAT.
	maxRandomPorts = 16
	// maxEchoTests: a second echo test follows a first that got no answer
	// within a second; after the second, two seconds (§5.5.2.2).
	maxEchoTests = 2
	// maxSolicitations are sent 2 s apart before the indirect bubble:
	// §5.7.2 sends three, we send one (see the top of this file).
	maxSolicitations = 1
	// refreshTicks is the Peer Refresh Timer (§5.4.2.1), and maxRefreshes
	// the keep-alives it sends through an idle random port.
	refreshTicks = 30 * ticksPerSecond
	maxRefreshes = 20
	// maxBubbleLen holds a bubble with every trailer we put on one.
	maxBubbleLen = proto.IPv6HeaderLen + proto.TrailerHeaderLen + proto.TrailerNonceLen + // nonce
		proto.TrailerHeaderLen + 2 + proto.MaxAlternateAddresses*6 + // alternate addresses
		proto.TrailerHeaderLen + 4 + // neighbor discovery option
		proto.TrailerHeaderLen + 2 // random port
	// rsLen is the size of an echo test's router solicitation.
	rsLen = proto.AuthHeaderMinLen + proto.IPv6HeaderLen + 8
)

// extState is a client's RFC 6081 state for one Teredo peer: the per-peer
// fields of §5.2.1, §5.4.1, §5.5.1, §5.6.1 and §5.7.1.
type extState struct {
	// nonceSent is the nonce of our last indirect bubble or solicitation
	// (§5.2.1 Nonce Sent), sent at sentAt; the one before stays good too,
	// so an answer to a retried bubble still counts.
	nonceSent, noncePrev [proto.TrailerNonceLen]byte
	sentAt               tick
	// nonceRecv is the nonce of the peer's last indirect bubble (§5.2.1
	// Nonce Received), echoed in our direct bubbles.
	nonceRecv [proto.TrailerNonceLen]byte

	// randomPort is the random local port we opened for this peer, and
	// advertised the external port we tell it to aim at (§5.4.1 Random
	// Port: the same port behind a port-preserving NAT, the prediction of
	// an echo test behind a sequential one).
	randomPort, advertised uint16
	// peerRandom is the port the peer advertised (§5.4.1 Peer Random Port).
	peerRandom uint16
	alts       [proto.MaxAlternateAddresses]netip.AddrPort // §5.6.1
	nalts      uint8
	bits       uint16

	refreshes uint8 // §5.4.1 Connection Refresh Count
	lastData  tick  // §5.4.1 Last Data Packet Sent Timestamp
	refreshAt tick  // next Peer Refresh Timer expiry for this peer

	// §5.5.1: the echo test's nonces, the ports its answers reported, the
	// tests run and when the failover timer expires.
	echo1, echo2 [proto.NonceLen]byte
	lower, upper uint16
	echoTries    uint8
	echoUntil    tick
	echoFailedAt tick

	solicits  uint8 // §5.7.1 Count of Solicitations Transmitted
	solicitAt tick  // the last one
}

// extState bits.
const (
	xSent       uint16 = 1 << iota // nonceSent is valid
	xPrev                          // noncePrev is valid
	xRecv                          // nonceRecv is valid
	xDRPrimary                     // §5.4.1 Direct Receive on Primary Port
	xDRRandom                      // §5.4.1 Direct Receive on Random Port
	xViaRandom                     // packets to the peer leave from randomPort
	xLocal                         // its mapping is an alternate (local) address
	xSpeaks                        // it sent trailers: it implements RFC 6081
	xEchoing                       // an echo test is running (§5.5.2)
	xEchoFailed                    // two echo tests got no prediction, at echoFailedAt
	xSoliciting                    // solicitations are outstanding (§5.7.2)
	xSLRFailed                     // one went unanswered: bubble as RFC 4380 does from now on
	xHeard                         // an indirect bubble came from the peer
)

// extOf returns entry i's RFC 6081 state, creating it. s.mu is held.
func (s *shard) extOf(i uint32) *extState {
	p := &s.peers[i]
	if p.has(fExt) {
		return s.ext[i]
	}
	p.flags |= fExt
	x := &extState{}
	s.ext[i] = x
	return x
}

// extIf returns entry i's RFC 6081 state, or nil. s.mu is held.
func (s *shard) extIf(i uint32) *extState {
	if !s.peers[i].has(fExt) {
		return nil
	}
	return s.ext[i]
}

// has reports whether extension x runs.
func (e *Engine) has(x Extensions) bool { return e.ext&x != 0 }

// enabledExtensions is the set a Config runs: a client's, less Disable,
// less the extensions that need symmetric NAT support if that is off.
func enabledExtensions(cfg Config) Extensions {
	if cfg.Mode != Client {
		return 0
	}
	x := AllExtensions &^ cfg.Disable
	if x&ExtSymmetric == 0 {
		x &^= ExtUPnP | ExtPortPreserving | ExtSequential
	}
	return x
}

// upnpSingle: we sit behind one UPnP-mapped symmetric NAT, so anyone
// reaches the mapping in our address (§5.3.3).
func (e *Engine) upnpSingle(self *selfState) bool {
	return e.has(ExtUPnP) && self.Symmetric && self.UPnP && !self.UPnPMapping.IsValid()
}

// portPreserving: a random port per peer predicts its own external port
// (§5.4.4.2).
func (e *Engine) portPreserving(self *selfState) bool {
	return e.has(ExtPortPreserving) && self.Symmetric && self.PortPreserving && !self.UPnP && e.cfg.Ports != nil
}

// sequential: an echo test predicts a random port's external port
// (§5.5.4.1). RFC 6081 assumes it of any symmetric NAT that does not
// preserve ports; behind a UPnP mapping we skip it, the mapping in our
// address being reachable already.
func (e *Engine) sequential(self *selfState) bool {
	return e.has(ExtSequential) && self.Symmetric && !self.PortPreserving && !self.UPnP && e.cfg.Ports != nil
}

// routeOf is where packets to peer p go. s.mu is held.
func (e *Engine) routeOf(p *peer, x *extState, self *selfState) route {
	r := route{to: p.mapping()}
	if x == nil {
		return r
	}
	r.local = x.bits&xLocal != 0
	if x.bits&xViaRandom != 0 && x.randomPort != 0 {
		r.via = x.randomPort
	}
	return r
}

// setRouted keeps fRouted in step with x: it is set whenever routeOf may
// differ from the peer's mapping.
func setRouted(p *peer, x *extState) {
	if x != nil && x.bits&(xViaRandom|xLocal) != 0 {
		p.flags |= fRouted
	} else {
		p.flags &^= fRouted
	}
}

// nonceMatches reports whether n is a nonce we sent this peer in the last
// 30 s (§5.2.4.4; the one before the last counts too).
func (x *extState) nonceMatches(n [proto.TrailerNonceLen]byte, now tick) bool {
	if x.bits&xSent == 0 || since(now, x.sentAt) > bubbleAnswerTicks {
		return false
	}
	return n == x.nonceSent || x.bits&xPrev != 0 && n == x.noncePrev
}

// newNonce draws a fresh Nonce Sent.
func (e *Engine) newNonce(x *extState, now tick) *[proto.TrailerNonceLen]byte {
	if x.bits&xSent != 0 {
		x.noncePrev = x.nonceSent
		x.bits |= xPrev
	}
	e.cfg.Rand(x.nonceSent[:])
	x.bits |= xSent
	x.sentAt = now
	return &x.nonceSent
}

// echoNonce is the nonce our direct bubbles carry: the peer's last, if
// its last indirect bubble had one (§5.2.4.2).
func (x *extState) echoNonce() *[proto.TrailerNonceLen]byte {
	if x.bits&xRecv == 0 {
		return nil
	}
	return &x.nonceRecv
}

// trailers are what to put after a bubble.
type trailers struct {
	nonce      *[proto.TrailerNonceLen]byte
	alts       []netip.AddrPort
	randomPort uint16
	discovery  proto.DiscoveryType
	hasDisc    bool
}

// bubble builds a bubble from src to dst with tr in out's arena.
func (o *Out) bubble(src, dst netip.Addr, tr trailers) []byte {
	b := proto.AppendBubble(o.space(maxBubbleLen), src, dst, 0)
	if tr.nonce != nil {
		b = proto.AppendNonceTrailer(b, *tr.nonce)
	}
	if len(tr.alts) > 0 {
		b, _ = proto.AppendAlternateAddressTrailer(b, tr.alts)
	}
	if tr.hasDisc {
		b = proto.AppendDiscoveryTrailer(b, tr.discovery)
	}
	if tr.randomPort != 0 {
		b = proto.AppendRandomPortTrailer(b, tr.randomPort)
	}
	return o.commit(b)
}

// serverOf is the peer's Teredo server, where indirect bubbles go.
func serverOf(p *peer) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(p.addr[4:8])), proto.Port)
}

// probeRound is one RFC 4380 §5.2.6 bubble round to Teredo peer idx, as
// RFC 6081 shapes it; the caller counted it (probe). directs is false when
// the round answers the peer's indirect bubble, whose answers send the
// direct bubbles. s.mu is held.
func (e *Engine) probeRound(s *shard, idx uint32, self *selfState, now tick, out *Out, c *counters, directs bool) {
	p := &s.peers[idx]
	x := s.extOf(idx)
	trusted := p.has(fTrusted)
	if x.bits&xEchoing != 0 {
		return // the indirect bubble waits for the prediction (§5.5.4.1)
	}
	if !trusted && x.randomPort == 0 && e.sequential(self) &&
		(x.bits&xEchoFailed == 0 || since(now, x.echoFailedAt) > probeWindow) {
		if directs && !self.Cone {
			e.directBubbles(p, x, self, out, c, netip.AddrPort{}) // §6.4 packet 1
		}
		x.echoTries = 0
		if e.startEcho(p, x, self, now, out, c) {
			return
		}
	}
	if !trusted && x.randomPort == 0 && e.portPreserving(self) && e.openRandom(p, x, c) {
		x.advertised = x.randomPort // §5.4.4.2: the NAT keeps it
	}
	// Direct bubbles open our NAT to the peer (RFC 4380 §5.2.4 case 5):
	// not needed behind a cone NAT, nor behind a UPnP mapping, which lets
	// anyone in already; there one would even do harm, starting a flow
	// from a random port that shadows the one the peer's packets would
	// come in on. They go first, as Miredo sends them: the peer answers
	// the indirect bubble, and an answer that beats the direct bubble to
	// our NAT is filtered.
	if directs && !self.Cone && !e.upnpSingle(self) {
		e.directBubbles(p, x, self, out, c, netip.AddrPort{})
	}
	e.indirectBubble(p, x, self, now, out, c)
	if (!self.Symmetric || e.upnpSingle(self)) && p.probes >= 2 && x.bits&xSpeaks == 0 {
		// A Miredo peer behind a symmetric NAT answers from a mapping
		// only this bubble's HMAC source lets us verify (its answer gets
		// through our NAT if that is not symmetric, or through our UPnP
		// mapping).
		pkt := out.commit(proto.AppendBubble(out.space(proto.IPv6HeaderLen), e.bubbleSource(&p.addr, epochOf(now)), netip.AddrFrom16(p.addr), 0))
		if out.sendUDP(pkt, serverOf(p)) {
			c.compat.Add(1)
		}
	}
}

// indirectBubble sends peer p an indirect bubble through its server with
// a fresh nonce (§5.2.4.1), our alternate addresses while the path is not
// up (§5.6.4.1) and the port to aim at, if any (§5.4.4.2, §5.5.4.2).
func (e *Engine) indirectBubble(p *peer, x *extState, self *selfState, now tick, out *Out, c *counters) {
	var alts [2]netip.AddrPort
	tr := trailers{nonce: e.newNonce(x, now), randomPort: x.advertised}
	if e.has(ExtHairpin) && !p.has(fTrusted) {
		tr.alts = ownAlternates(self, alts[:0])
	}
	if out.sendUDP(out.bubble(self.Addr, netip.AddrFrom16(p.addr), tr), serverOf(p)) {
		c.indirect.Add(1)
	}
}

// ownAlternates appends the addresses a peer behind the same NAT may reach
// us at (§5.6.4.1): our local address, and the UPnP mapping when it is not
// the one in our address (nested NATs).
func ownAlternates(self *selfState, dst []netip.AddrPort) []netip.AddrPort {
	mine := embeddedMapping(self.addr[:])
	if l := self.Local; unicastIPv4(l.Addr()) && l.Port() != 0 && l != mine {
		dst = append(dst, l)
	}
	if u := self.UPnPMapping; unicastIPv4(u.Addr()) && u.Port() != 0 && u != mine {
		dst = append(dst, u)
	}
	return dst
}

// directBubbles sends the direct bubbles of a round, echoing the peer's
// nonce: to where packets to it go (§5.2.6), or, answering an indirect
// bubble, to its origin (RFC 4380 §5.2.3; not behind a UPnP mapping), and
// to its
// random port when it advertised one (§5.4.4.3; from our random port if
// we have one, else from the Teredo port, as the port-restricted side of
// §6.3/§6.4 must). Behind a port-preserving or sequential NAT, our random
// port's bubbles go to the mapping in the peer's address if the peer names
// no port (§3.3: that first bubble is what opens our NAT).
func (e *Engine) directBubbles(p *peer, x *extState, self *selfState, out *Out, c *counters, origin netip.AddrPort) {
	src, dst := self.Addr, netip.AddrFrom16(p.addr)
	tr := trailers{nonce: x.echoNonce()}
	switch {
	case !origin.IsValid():
		if out.send(out.bubble(src, dst, tr), e.routeOf(p, x, self)) {
			c.direct.Add(1)
		}
	default:
		if out.sendUDP(out.bubble(src, dst, tr), origin) {
			c.reply.Add(1)
		}
	}
	if p.has(fTrusted) {
		return
	}
	embedded := embeddedMapping(p.addr[:])
	rr := route{to: embedded}
	if x.peerRandom != 0 {
		rr.to = netip.AddrPortFrom(embedded.Addr(), x.peerRandom)
	}
	// Our random port's first bubble sets its external port for one
	// destination only: it waits until the peer's indirect bubble tells
	// whether it listens on a random port of its own.
	if self.Symmetric && x.randomPort != 0 && x.bits&xEchoing == 0 && x.bits&xHeard != 0 {
		rr.via, tr.randomPort = x.randomPort, x.advertised
	} else if x.peerRandom == 0 {
		return
	}
	if out.send(out.bubble(src, dst, tr), rr) {
		c.direct.Add(1)
	}
}

// indirectFromPeer handles a Teredo peer's indirect bubble to us, which
// our server forwarded with its origin (§5.2.4.3, §5.4.4.4, §5.6.4.2; the
// caller checked the destination). It reports false when the peer cannot
// be kept (its address names no global IPv4, or the new-peer budget is
// spent): the caller then answers the origin as RFC 4380 alone would.
func (e *Engine) indirectFromPeer(d *datagram, origin netip.AddrPort, out *Out, c *counters) bool {
	if !globalIPv4(d.src[4:8]) || !proto.IsGlobalUnicastIPv4(embeddedMapping(d.src[:]).Addr()) {
		return false
	}
	s := e.table.shardOf(d.src)
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, found := s.lookup(d.src)
	if !found {
		if !e.newPeers.take(d.now) {
			return false
		}
		var res insertResult
		if idx, res = s.insert(d.src, d.now, queueDrop{e, c}); res == refused {
			return false
		}
		e.countInsert(res, c)
		s.peers[idx].setMapping(embeddedMapping(d.src[:]))
	}
	p, x := &s.peers[idx], s.extOf(idx)
	s.touch(idx, d.now)
	e.readTrailers(p, x, &d.tr, d.now)
	x.bits |= xHeard
	if d.tr.HasNonce {
		x.nonceRecv = d.tr.Nonce
		x.bits |= xRecv
	} else {
		x.bits &^= xRecv
	}
	c.bubblesIn.Add(1)
	self := d.self
	if p.has(fTrusted) && since(d.now, p.lastRx) < validTicks {
		// §6.5 step 11: the path is up; one bubble down it.
		r := e.routeOf(p, x, self)
		if e.replies.allow(r.to, d.now) && out.send(out.bubble(self.Addr, netip.AddrFrom16(p.addr), trailers{nonce: x.echoNonce()}), r) {
			c.direct.Add(1)
		}
		return true
	}
	// §3.1: our own indirect bubble, answered from the mapping the peer's
	// NAT uses towards us; not while our NAT is being probed (see
	// Self.Probing): the peer's next round gets it.
	if !self.Probing && e.mayProbe(p, d.now) == probeNow && e.peerProbes.take(d.now) {
		p.lastTx = d.now
		p.probes++
		e.probeRound(s, idx, self, d.now, out, c, false)
	}
	if !e.replies.allow(origin, d.now) {
		c.replyLimited.Add(1)
		return true
	}
	e.directBubbles(p, x, self, out, c, origin)
	// §5.6.4.2: and to each alternate address, within the same budget.
	for i := range int(x.nalts) {
		a := x.alts[i]
		if a == origin || !e.replies.allow(a, d.now) {
			continue
		}
		if out.send(out.bubble(self.Addr, netip.AddrFrom16(p.addr), trailers{nonce: x.echoNonce()}), route{to: a, local: true}) {
			c.alts.Add(1)
		}
	}
	return true
}

// readTrailers takes what a peer's bubble told us: that it reads trailers,
// its random port (§5.4.4.4) and its alternate addresses (§5.6.4.2).
func (e *Engine) readTrailers(p *peer, x *extState, t *proto.Trailers, now tick) {
	if t.HasNonce || t.RandomPort != 0 || t.AltAddrs != nil || t.HasDiscovery {
		x.bits |= xSpeaks
	}
	if rp := t.RandomPort; rp != 0 && e.has(ExtPortPreserving|ExtSequential) && rp != x.peerRandom {
		switch {
		case x.peerRandom == 0:
			x.peerRandom = rp
		case since(now, p.lastRx) >= validTicks && since(now, p.lastTx) >= validTicks:
			// The peer chose another port while the path was idle: ours
			// starts afresh too.
			x.peerRandom = rp
			e.releasePort(x)
			setRouted(p, x)
		}
	}
	if t.AltAddrs != nil && e.has(ExtHairpin) {
		x.nalts = uint8(min(t.AltAddrs.Len(), len(x.alts)))
		for i := range int(x.nalts) {
			x.alts[i] = t.AltAddrs.At(i)
		}
	}
}

// How a Teredo peer's mapping was verified.
type verification uint8

const (
	unverified   verification = iota
	byAddress                 // the datagram came from the mapping in its address (RFC 4380 §5.2.3 case 3)
	byHMAC                    // a bubble to the link-local source we bubbled it from
	byNonce                   // a bubble echoing our nonce (RFC 6081 §5.2.4.4)
	byRandomPort              // a bubble from its address to the random port we opened for it (§5.4.4.5)
)

// verify says whether datagram d proves peer idx (found says it is in
// the table) is at d.from. A relay and a client without the extensions
// know the first two ways only. s.mu is held.
func (e *Engine) verify(s *shard, idx uint32, found bool, d *datagram) verification {
	embedded := embeddedMapping(d.src[:])
	if embedded == d.from && !d.fromLocal {
		return byAddress
	}
	if !d.bubble || !found {
		return unverified
	}
	p := &s.peers[idx]
	// As answersBubble: a verified peer heard from in the last 30 s keeps
	// its mapping (an answer to an older bubble of ours, through another
	// port, must not move a path that works).
	active := p.has(fTrusted) && since(d.now, p.lastRx) < validTicks
	if x := s.extIf(idx); x != nil && !active {
		if d.tr.HasNonce && x.nonceMatches(d.tr.Nonce, d.now) {
			return byNonce
		}
		if d.via != 0 && d.via == x.randomPort && !p.has(fTrusted) && d.from.Addr() == embedded.Addr() {
			return byRandomPort
		}
	}
	if !d.fromLocal && answersBubble(p, d.now) && e.isBubbleSource(d.src, d.dst, d.now) {
		return byHMAC
	}
	return unverified
}

// verified records how peer idx was reached (§5.4.4.5, §5.5.4.3, §5.6.4.3)
// after its mapping was set to d.from, and, the first time, answers with
// one direct bubble echoing the peer's nonce when the peer cannot verify
// us by our address's mapping (we answer from another: a random port, a
// symmetric NAT's), so it verifies us now. s.mu is held.
func (e *Engine) verified(s *shard, idx uint32, d *datagram, how verification, wasTrusted bool, out *Out, c *counters) {
	p, x := &s.peers[idx], s.extOf(idx)
	x.bits &^= xLocal
	if d.fromLocal {
		x.bits |= xLocal
	}
	if d.via != 0 {
		if x.bits&xViaRandom == 0 {
			x.refreshAt, x.refreshes = d.now+refreshTicks, 0
		}
		x.bits |= xDRRandom | xViaRandom
	} else {
		// §5.4.4.5 first case, §5.5.4.3: the Teredo port works; the
		// random port (and any echo test) is done with.
		x.bits |= xDRPrimary
		e.releasePort(x)
	}
	setRouted(p, x)
	if how == byNonce {
		c.nonceVerified.Add(1)
	}
	// The peer may not know our mapping yet: it verifies us by our
	// nonce, unless our packets come from the mapping in our address.
	if !wasTrusted && (how != byAddress || d.via != 0 || d.self.Symmetric && !e.upnpSingle(d.self)) {
		r := e.routeOf(p, x, d.self)
		if out.send(out.bubble(d.self.Addr, netip.AddrFrom16(p.addr), trailers{nonce: x.echoNonce()}), r) {
			c.direct.Add(1)
		}
	}
}

// secondPath says whether datagram d from peer p, trusted and heard from in
// the last 30 s at another mapping, comes from the mapping in its address,
// which RFC 4380 §5.2.3 case 3 verifies by itself. A client with two paths
// to a peer (its NAT answers one flow from the mapped port and the other
// from a random one, or a UPnP mapping lets a second flow in) takes
// packets from both, rather than move the peer to whichever spoke last and
// drop the other's, and sends on the one it verified first.
func (e *Engine) secondPath(p *peer, d *datagram) bool {
	return !d.fromLocal && since(d.now, p.lastRx) < validTicks && embeddedMapping(d.src[:]) == d.from
}

// onPath notes that a verified peer reached us on the Teredo port while we
// send to it from a random port: §5.4.4.5's third case, the Teredo port
// works and takes over, to the mapping the datagram came from. s.mu is
// held.
func (e *Engine) onPath(s *shard, idx uint32, d *datagram) {
	p := &s.peers[idx]
	if d.via != 0 || !p.has(fExt) {
		return
	}
	if x := s.ext[idx]; x.bits&xViaRandom != 0 {
		x.bits |= xDRPrimary
		e.releasePort(x)
		p.setMapping(d.from)
		setRouted(p, x)
	}
}

// bubbleOptions takes a verified peer's bubble's trailers and answers a
// solicitation (§5.7.4.2). s.mu is held.
func (e *Engine) bubbleOptions(s *shard, idx uint32, d *datagram, out *Out, c *counters) {
	if !d.tr.HasNonce && d.tr.RandomPort == 0 && d.tr.AltAddrs == nil && !d.tr.HasDiscovery {
		return
	}
	p := &s.peers[idx]
	x := s.extOf(idx)
	e.readTrailers(p, x, &d.tr, d.now)
	if !d.tr.HasDiscovery || !e.has(ExtLoadReduction) {
		return
	}
	if d.tr.Discovery == proto.DiscoverySolicitation {
		nonce := x.echoNonce()
		if d.tr.HasNonce {
			nonce = &d.tr.Nonce
		}
		r := e.routeOf(p, x, d.self)
		if e.replies.allow(d.from, d.now) && out.send(out.bubble(d.self.Addr, netip.AddrFrom16(p.addr),
			trailers{nonce: nonce, discovery: proto.DiscoveryAdvertisement, hasDisc: true}), r) {
			c.advertisements.Add(1)
		}
	}
	// An advertisement needs nothing more: accept counted the refresh it
	// completed.
}

// solicit handles a host packet for a trusted peer silent for 30 s that
// reads trailers (§5.7.4.1): it waits while a direct bubble asks the peer
// for a direct answer, for the 2 s until Tick sends the bubble round
// (maxSolicitations). s.mu is held.
func (e *Engine) solicit(s *shard, idx uint32, x *extState, ip []byte, self *selfState, now tick, out *Out, c *counters) verdict {
	if x.bits&xSoliciting == 0 {
		x.bits |= xSoliciting
		x.solicits = 0
		e.sendSolicitation(&s.peers[idx], x, self, now, out, c)
	}
	ok := e.enqueue(s.queueOf(idx), ip, false, netip.AddrPort{})
	if len(s.queues[idx].items) == 0 {
		s.takeQueue(idx)
	}
	if !ok {
		return drop(DropQueueFull)
	}
	return queuedV
}

func (e *Engine) sendSolicitation(p *peer, x *extState, self *selfState, now tick, out *Out, c *counters) {
	x.solicits++
	x.solicitAt = now
	p.lastTx = now
	tr := trailers{nonce: e.newNonce(x, now), discovery: proto.DiscoverySolicitation, hasDisc: true}
	if out.send(out.bubble(self.Addr, netip.AddrFrom16(p.addr), tr), e.routeOf(p, x, self)) {
		c.solicitations.Add(1)
	}
}

// tickExt runs a client's RFC 6081 timers for the peers of shard s: the
// echo tests' failover (§5.5.2.2), solicitation retransmission (§5.7.2)
// and the Peer Refresh Timer (§5.4.2.1). s.mu is held.
func (e *Engine) tickExt(s *shard, self *selfState, now tick, out *Out, c *counters) {
	for idx, x := range s.ext {
		p := &s.peers[idx]
		if x.bits&xEchoing != 0 && int32(now-x.echoUntil) >= 0 {
			x.bits &^= xEchoing
			if x.echoTries < maxEchoTests && e.startEcho(p, x, self, now, out, c) {
				continue
			}
			// §5.5.2.2: no prediction; a plain indirect bubble.
			x.bits |= xEchoFailed
			x.echoFailedAt = now
			e.releasePort(x)
			setRouted(p, x)
			e.indirectBubble(p, x, self, now, out, c)
		}
		if x.bits&xSoliciting != 0 && since(now, x.solicitAt) >= probeSpacing {
			if x.solicits < maxSolicitations {
				e.sendSolicitation(p, x, self, now, out, c)
			} else {
				// §5.7.2: start over as RFC 4380 does. The path did
				// not outlive a silence: the next one will not either.
				x.bits = x.bits&^xSoliciting | xSLRFailed
				c.solicitFailed.Add(1)
				if e.mayProbe(p, now) == probeNow {
					e.probe(s, idx, self, now, out, c, &e.hostTests)
				}
			}
		}
		if x.bits&xViaRandom != 0 && p.has(fTrusted) && int32(now-x.refreshAt) >= 0 {
			x.refreshAt = now + refreshTicks
			if since(now, x.lastData) <= refreshTicks { // since the last expiry
				x.refreshes = 0
			} else if x.refreshes < maxRefreshes {
				x.refreshes++
				if out.send(out.bubble(self.Addr, netip.AddrFrom16(p.addr), trailers{}), e.routeOf(p, x, self)) {
					c.direct.Add(1)
				}
			}
		}
	}
}

// startEcho runs an echo test from peer p's random port, opening one if
// needed (§5.5.4.1.1): a solicitation to the primary server address, a
// direct bubble to the peer and a solicitation to the secondary address;
// the external ports the two answers report bracket the bubble's. It
// reports false when no random port could be opened.
func (e *Engine) startEcho(p *peer, x *extState, self *selfState, now tick, out *Out, c *counters) bool {
	if x.randomPort == 0 && !e.openRandom(p, x, c) {
		return false
	}
	via := x.randomPort
	e.cfg.Rand(x.echo1[:])
	e.cfg.Rand(x.echo2[:])
	x.lower, x.upper, x.advertised = 0, 0, 0
	out.send(out.commit(proto.AppendRouterSolicitation(out.space(rsLen), x.echo1, false)), route{to: self.Server, via: via})
	to := embeddedMapping(p.addr[:])
	if x.peerRandom != 0 {
		to = netip.AddrPortFrom(to.Addr(), x.peerRandom)
	}
	if out.send(out.bubble(self.Addr, netip.AddrFrom16(p.addr), trailers{nonce: x.echoNonce()}), route{to: to, via: via}) {
		c.direct.Add(1)
	}
	out.send(out.commit(proto.AppendRouterSolicitation(out.space(rsLen), x.echo2, false)), route{to: self.Server2, via: via})
	x.echoTries++
	x.echoUntil = now + tick(x.echoTries)*ticksPerSecond
	x.bits |= xEchoing
	c.echoTests.Add(1)
	return true
}

// echoAnswer takes a server's advertisement that came to random port port
// (§5.5.4.4): it reports the external port of one of the echo test's
// solicitations; once both are in, their midpoint is the prediction, and
// the indirect bubble that waited goes with it. (The RFC's formula adds
// EchoTestUpperPort to itself; its example averages the two.)
func (e *Engine) echoAnswer(b []byte, owner *[16]byte, port uint16, self *selfState, now tick, out *Out, c *counters) verdict {
	var env proto.Envelope
	if err := proto.ParseEnvelope(b, &env); err != nil || !env.HasAuth || !env.HasOrigin {
		return drop(DropMalformed)
	}
	if _, err := proto.ParseRouterAdvertisement(env.IPv6); err != nil {
		return drop(DropMalformed)
	}
	s := e.table.shardOf(owner)
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, ok := s.lookup(owner)
	if !ok {
		return drop(DropMismatch)
	}
	x := s.extIf(idx)
	if x == nil || x.randomPort != port || x.bits&xEchoing == 0 {
		return drop(DropMismatch)
	}
	switch env.Auth.Nonce {
	case x.echo1:
		if x.lower == 0 {
			x.lower = env.Origin.Port()
		}
	case x.echo2:
		if x.upper == 0 {
			x.upper = env.Origin.Port()
		}
	default:
		return drop(DropMismatch)
	}
	if x.lower != 0 && x.upper != 0 {
		x.advertised = uint16((uint32(x.lower) + uint32(x.upper)) / 2)
		x.bits &^= xEchoing
		c.predictions.Add(1)
		e.indirectBubble(&s.peers[idx], x, self, now, out, c)
	}
	return consumed
}

// randomPorts maps each open random port to the peer it is for.
type randomPorts struct {
	mu    sync.Mutex
	owner map[uint16][16]byte
}

// openRandom opens a random port for peer p (§5.4.4.2, §5.5.4.1), within
// maxRandomPorts. s.mu is held.
func (e *Engine) openRandom(p *peer, x *extState, c *counters) bool {
	if e.cfg.Ports == nil {
		return false
	}
	e.rports.mu.Lock()
	defer e.rports.mu.Unlock()
	if len(e.rports.owner) >= maxRandomPorts {
		c.portsLimited.Add(1)
		return false
	}
	port, err := e.cfg.Ports.Open()
	if err != nil || port == 0 {
		c.portsLimited.Add(1)
		return false
	}
	if e.rports.owner == nil {
		e.rports.owner = make(map[uint16][16]byte)
	}
	e.rports.owner[port] = p.addr
	x.randomPort = port
	c.randomPorts.Add(1)
	return true
}

// releasePort closes x's random port, if any: the Teredo port took over,
// the peer chose another port, or the entry goes away. The caller keeps
// fRouted in step (setRouted) if the entry stays. s.mu is held.
func (e *Engine) releasePort(x *extState) {
	if x.randomPort == 0 {
		return
	}
	e.rports.mu.Lock()
	delete(e.rports.owner, x.randomPort)
	e.rports.mu.Unlock()
	e.cfg.Ports.Close(x.randomPort)
	x.randomPort, x.advertised = 0, 0
	x.lower, x.upper, x.echoTries = 0, 0, 0
	x.bits &^= xViaRandom | xDRRandom | xEchoing
}

// FromRandomPort handles one datagram that came to random port port from
// from (a client's; see PortOpener): the answers to an echo test, and
// bubbles and packets from the one peer the port is for. What it produces
// goes into out, as FromUDP's does.
func (e *Engine) FromRandomPort(b []byte, from netip.AddrPort, port uint16, out *Out) {
	c := &e.st.udp
	c.in.Add(1)
	e.count(c, e.fromRandomPort(b, from, port, out, c))
}

func (e *Engine) fromRandomPort(b []byte, from netip.AddrPort, port uint16, out *Out, c *counters) verdict {
	self := e.self.Load()
	if !self.qualified {
		return drop(DropNotQualified)
	}
	e.rports.mu.Lock()
	owner, ok := e.rports.owner[port]
	e.rports.mu.Unlock()
	if !ok {
		return drop(DropBadDst)
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if from == self.Server || from == self.Server2 {
		return e.echoAnswer(b, &owner, port, self, e.batchNow(out), out, c)
	}
	return e.fromUDPVia(b, from, port, &owner, out, c)
}

// count tallies a Teredo-side verdict.
func (e *Engine) count(c *counters, v verdict) {
	switch v.disp {
	case dispDropped:
		c.dropped[v.reason].Add(1)
	case dispSent:
		c.delivered.Add(1)
	case dispQueued:
		c.queued.Add(1)
	}
}

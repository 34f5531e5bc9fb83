// SPDX-License-Identifier: MIT

package tunnel

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// Protocol timers and limits (RFC 4380 §5.2.4, §5.2.6, §5.2.9; Miredo's
// values where the RFC leaves a choice).
const (
	ticksPerSecond = 10
	// validTicks: a trusted peer is used directly while its last packet is
	// at most 30 s old (§5.2.4); older, it is bubbled or tested again.
	validTicks tick = 30 * ticksPerSecond
	// probeSpacing: bubbles (and connectivity tests) at least 2 s apart
	// (§5.2.6).
	probeSpacing tick = 2 * ticksPerSecond
	// maxProbes: at most 4 unanswered bubbles in probeWindow (§5.2.6); at
	// most 4 connectivity tests (§5.2.4 case 2: one and 3 repeats).
	maxProbes   = 4
	probeWindow = 300 * ticksPerSecond
	// testWindow is probeWindow for connectivity tests to native peers:
	// §5.2.6's 300 s binds bubbles; a native peer whose four tests all got
	// lost (a lossy path) may be tested again after 30 s rather than stay
	// unreachable for five minutes. The global test budgets still bound
	// what any number of peers can cost.
	testWindow = 30 * ticksPerSecond
	// pingLifetime: how long an echo reply to a connectivity test is
	// accepted (Miredo: 30 s).
	pingLifetime tick = 30 * ticksPerSecond
	// incomingWait: how long packets from an unverified native peer wait
	// for the answer to the one test they triggered; as long as a host
	// packet waits for all of its tests.
	incomingWait tick = maxProbes * probeSpacing
	// idleTicks: an entry nobody looked up for this long is reclaimed
	// (Miredo: 30 to 60 s).
	idleTicks tick = 60 * ticksPerSecond
	// expireBudget bounds the entries one Tick reclaims per shard, so a
	// mass expiry does not hold a shard lock for long; the rest go next
	// second.
	expireBudget = 4096
	// icmpPerSecond: ICMPv6 errors written to the host (Miredo: 10/s).
	icmpPerSecond = 10
	// staleTicks: a client that has gone on sending to a trusted native
	// peer for this long without a packet back tests the peer again while
	// it keeps sending: the relay that carried its traffic may have died or
	// restarted on another port, and the test's answer comes through the
	// relay now serving us and moves the mapping there. RFC 4380 §5.2.4
	// would wait out the 30 s validity first (Miredo measured: 25 s of lost
	// traffic after a relay restart).
	staleTicks tick = 2 * ticksPerSecond
	// pingHopLimit is the hop limit of connectivity-test echo requests, as
	// Miredo sends them.
	pingHopLimit = 128
	// bubbleAnswerTicks: how long after our last bubble to a peer a bubble
	// addressed to our link-local source may still verify a new mapping
	// for it. A peer answers at once; the bound keeps a source seen on the
	// wire from being replayed later.
	bubbleAnswerTicks tick = 30 * ticksPerSecond
	// keyEpochTicks: the link-local sources of our bubbles change this
	// often (the HMAC covers the epoch); answers are checked against the
	// current and the previous epoch.
	keyEpochTicks = 300 * ticksPerSecond
)

// Defaults for Config fields left zero.
const (
	// DefaultMaxPeers is a relay's bound (Miredo's); a client talks to few
	// peers and gets DefaultClientMaxPeers.
	DefaultMaxPeers       = 1 << 20
	DefaultClientMaxPeers = 4096
	DefaultPeerQueueBytes = 4096
	DefaultMaxQueueBytes  = 4 << 20
)

// tick is a point on the engine's clock in tenths of a second since New.
// Comparisons use wrapping differences, so only spans matter (a uint32
// wraps after 13 years).
type tick uint32

// since is how long ago t was at now, and 0 when t is later than now: the
// data loops read the clock once per batch, so a peer may carry a tick
// another goroutine stored after this batch's clock was read, and plain
// unsigned subtraction would make that "a long time ago".
func since(now, t tick) tick {
	if int32(now-t) < 0 {
		return 0
	}
	return now - t
}

// selfState is Self with what the data path derives from it.
type selfState struct {
	Self
	qualified bool
	addr      [16]byte
	prefix    uint32
}

// Engine is the Teredo data path of one client or relay. Its methods are
// safe for concurrent use: FromTunnel and FromUDP run on one goroutine each,
// Tick on a third (each with its own Out), Stats and SetSelf anywhere.
type Engine struct {
	cfg    Config
	start  time.Time
	self   atomic.Pointer[selfState]
	table  table
	pools  *bufPools
	queued atomic.Int64 // memory charged to all queues (queueCost)

	// bubbleKey keys the link-local source of our bubbles (see
	// bubbleSource); pingID is the ICMPv6 identifier of our echo requests.
	bubbleKey [32]byte
	pingID    uint16

	icmpSecond atomic.Uint32
	icmpCount  atomic.Int32

	// hostTests and peerTests budget connectivity tests triggered by the
	// host (and their repeats) and by packets from native peers; replies
	// budgets bubbles to origin indications; newPeers the Teredo peers a
	// client takes into its table unasked.
	hostTests, peerTests limiter
	newPeers             limiter
	replies              replyGate
	// ext are the RFC 6081 extensions that run (client only); peerProbes
	// budgets the indirect bubbles a peer's indirect bubble makes us send
	// (§3.1); rports are the random ports open (rfc6081.go).
	ext        Extensions
	peerProbes limiter
	rports     randomPorts

	st engineCounters
}

// New returns an Engine for cfg, filling in defaults.
func New(cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = func(b []byte) { rand.Read(b) }
	}
	if cfg.Prefix == 0 {
		cfg.Prefix = proto.DefaultPrefix
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = DefaultMaxPeers
		if cfg.Mode == Client {
			cfg.MaxPeers = DefaultClientMaxPeers
		}
	}
	if cfg.PeerQueueBytes <= 0 {
		cfg.PeerQueueBytes = DefaultPeerQueueBytes
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	e := &Engine{cfg: cfg, start: cfg.Now(), pools: newBufPools(),
		hostTests: newLimiter(testsPerSecond, testBurst), peerTests: newLimiter(testsPerSecond, testBurst),
		newPeers: newLimiter(newPeersPerSecond, newPeerBurst), peerProbes: newLimiter(repliesPerSecond, replyBurst),
		ext: enabledExtensions(cfg)}
	var seed [16 + 2 + 8]byte
	cfg.Rand(seed[:])
	cfg.Rand(e.bubbleKey[:])
	e.pingID = binary.BigEndian.Uint16(seed[16:])
	e.replies = newReplyGate(binary.LittleEndian.Uint64(seed[18:]))
	e.table = newTable(cfg.MaxPeers, [2]uint64{binary.LittleEndian.Uint64(seed[0:8]), binary.LittleEndian.Uint64(seed[8:16])})
	e.self.Store(&selfState{})
	return e
}

func (e *Engine) now() tick {
	return tick(e.cfg.Now().Sub(e.start) / (time.Second / ticksPerSecond))
}

// batchNow is now as out's batch first read it (see Out).
func (e *Engine) batchNow(out *Out) tick {
	if out == nil {
		return e.now()
	}
	if out.clockOf != e {
		out.clockAt, out.clockOf = e.now(), e
	}
	return out.clockAt
}

// SetSelf tells a client engine its Teredo address, server and NAT type
// after (re)qualification; the zero Self means not qualified. A new address
// empties the peer table (Miredo does the same): every mapping was learned
// for the old one.
func (e *Engine) SetSelf(s Self) {
	st := &selfState{Self: s}
	if s.Addr.Is6() && !s.Addr.Is4In6() {
		st.qualified = true
		st.addr = s.Addr.As16()
		st.prefix = binary.BigEndian.Uint32(st.addr[0:4])
	}
	st.Server = netip.AddrPortFrom(s.Server.Addr().Unmap(), s.Server.Port())
	old := e.self.Swap(st)
	if old.addr != st.addr || old.qualified != st.qualified {
		e.reset()
	}
}

// reset empties the peer table.
func (e *Engine) reset() {
	for i := range e.table.shards {
		s := &e.table.shards[i]
		s.mu.Lock()
		s.reset(queueDrop{e, &e.st.tick})
		s.mu.Unlock()
	}
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	var s Stats
	s.FromTunnel = e.st.tun.in.Load()
	s.FromUDP = e.st.udp.in.Load()
	e.st.tun.addTo(&s)
	e.st.udp.addTo(&s)
	e.st.tick.addTo(&s)
	for i := range e.table.shards {
		sh := &e.table.shards[i]
		sh.mu.Lock()
		s.Peers += uint64(sh.n)
		sh.mu.Unlock()
	}
	s.QueuedBytes = uint64(max(e.queued.Load(), 0))
	return s
}

// Tick runs the timers; call it about once a second. It repeats bubbles
// and connectivity tests for peers the host has packets waiting for (2 s
// apart, 4 in all, RFC 4380 §5.2.4), gives up on those that never answered
// (their queue is dropped and the host gets an ICMPv6 address
// unreachable), drops packets from unverified native peers whose one test
// went unanswered, and reclaims entries idle for a minute.
func (e *Engine) Tick(out *Out) {
	now := e.now()
	self := e.self.Load()
	c := &e.st.tick
	for i := range e.table.shards {
		s := &e.table.shards[i]
		s.mu.Lock()
		for idx, q := range s.queues {
			p := &s.peers[idx]
			if q.outgoing == 0 {
				// Only packets from the peer wait. Their test is not
				// repeated: anyone can send them with a spoofed source.
				if since(now, p.lastTx) >= incomingWait {
					e.dropQueue(s.takeQueue(idx), DropQueueExpired, c)
				}
				continue
			}
			if since(now, p.lastTx) < probeSpacing {
				continue
			}
			if x := s.extIf(idx); x != nil && x.bits&(xSoliciting|xEchoing) != 0 {
				continue // their own timers run them (tickExt)
			}
			if p.probes < maxProbes {
				e.probe(s, idx, self, now, out, c, &e.hostTests)
				continue
			}
			// The last probe went unanswered too: give up.
			s.takeQueue(idx)
			for _, it := range q.items {
				if !it.in {
					e.unreachable(proto.IPv6(it.data), proto.UnreachAddress, now, out, c)
					break
				}
			}
			e.dropQueue(q, DropQueueExpired, c)
		}
		if e.ext != 0 && self.qualified {
			e.tickExt(s, self, now, out, c)
		}
		n := s.expire(now, idleTicks, expireBudget, queueDrop{e, c})
		s.mu.Unlock()
		c.expired.Add(uint64(n))
	}
}

// probe sends peer idx a bubble (Teredo peer) or a connectivity test
// (native peer, client only) and counts it. A test needs a token from
// tests, unless tests is nil (the caller took it); without one nothing
// changes, and Tick tries again. s.mu is held.
func (e *Engine) probe(s *shard, idx uint32, self *selfState, now tick, out *Out, c *counters, tests *limiter) {
	p := &s.peers[idx]
	if self.Probing && !p.has(fNative) {
		return // see Self.Probing
	}
	if p.has(fNative) && tests != nil && !tests.take(now) {
		c.pingsLimited.Add(1)
		return
	}
	p.lastTx = now
	p.probes++
	if p.has(fNative) {
		e.test(p, self, out, c)
		return
	}
	if e.ext != 0 {
		e.probeRound(s, idx, self, now, out, c, true)
		return
	}
	dst := netip.AddrFrom16(p.addr)
	pkt := out.commit(proto.AppendBubble(out.space(proto.IPv6HeaderLen), e.bubbleSource(&p.addr, epochOf(now)), dst, 0))
	// Direct bubble, to open our own NAT towards the peer, when we are
	// behind one that filters (§5.2.4 case 5, §5.4.1). It goes first, as
	// Miredo sends it: the peer answers the indirect one, and an answer
	// that beats the direct bubble to our NAT is filtered (a responder a
	// fraction of a millisecond away lost it every time, costing the 2 s
	// until the next probe).
	if e.cfg.Mode == RestrictedRelay || (e.cfg.Mode == Client && !self.Cone) {
		if out.sendUDP(pkt, p.mapping()) {
			c.direct.Add(1)
		}
	}
	// Indirect bubble, through the peer's own server (§5.2.6).
	if out.sendUDP(pkt, netip.AddrPortFrom(netip.AddrFrom4([4]byte(p.addr[4:8])), proto.Port)) {
		c.indirect.Add(1)
	}
}

// test sends native peer p a direct connectivity test (RFC 4380 §5.2.9):
// an echo request carrying its nonce, through our server.
func (e *Engine) test(p *peer, self *selfState, out *Out, c *counters) {
	if !self.qualified {
		return
	}
	if !p.has(fPinging) {
		e.cfg.Rand(p.nonce[:])
		p.flags |= fPinging
	}
	pkt := out.space(proto.IPv6HeaderLen + 8 + len(p.nonce))
	pkt = out.commit(proto.AppendEchoRequest(pkt, proto.EchoFields{
		Src: self.Addr, Dst: netip.AddrFrom16(p.addr), HopLimit: pingHopLimit,
		ID: e.pingID, Seq: uint16(p.probes), Data: p.nonce[:],
	}))
	if out.sendUDP(pkt, self.Server) {
		c.pings.Add(1)
	}
}

func (p *peer) mapping() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(p.mapIP), p.mapPort)
}

func (p *peer) setMapping(from netip.AddrPort) {
	p.mapIP = from.Addr().As4()
	p.mapPort = from.Port()
}

func (p *peer) mapped(from netip.AddrPort) bool {
	return from.Port() == p.mapPort && from.Addr().As4() == p.mapIP
}

// bubbleSource is the link-local source of the bubbles we send to peer in
// key epoch ep: fe80:: and the first 64 bits of HMAC-SHA256(key, ep, peer
// address), with the universal/local and group bits cleared as in a
// modified EUI-64. A peer behind a symmetric NAT answers from a mapping we
// cannot predict, but its answer is addressed to this source; recomputing
// it authenticates the answer (Miredo does the same with HMAC-MD5 over the
// mapping). The source travels in clear, so it is only a weak proof: the
// epoch ages it out, and answersBubble decides when it counts at all. HMAC
// is written out over sha256.Sum256 so it needs no allocation.
func (e *Engine) bubbleSource(peer *[16]byte, ep uint32) netip.Addr {
	var inner [64 + 4 + 16]byte
	var outer [64 + sha256.Size]byte
	for i := range 64 {
		k := byte(0)
		if i < len(e.bubbleKey) {
			k = e.bubbleKey[i]
		}
		inner[i] = k ^ 0x36
		outer[i] = k ^ 0x5c
	}
	binary.BigEndian.PutUint32(inner[64:], ep)
	copy(inner[68:], peer[:])
	h := sha256.Sum256(inner[:])
	copy(outer[64:], h[:])
	mac := sha256.Sum256(outer[:])
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	copy(a[8:], mac[:8])
	a[8] &^= 0x03
	return netip.AddrFrom16(a)
}

// epochOf is the key epoch at now.
func epochOf(now tick) uint32 { return uint32(now / keyEpochTicks) }

// isBubbleSource reports whether dst is the link-local source we bubbled
// peer from in the current or the previous key epoch. The cheap prefix
// test goes first: most forgeries cost no hashing.
func (e *Engine) isBubbleSource(peer, dst *[16]byte, now tick) bool {
	if [8]byte(dst[:8]) != [8]byte{0xfe, 0x80} {
		return false
	}
	ep := epochOf(now)
	if e.bubbleSource(peer, ep).As16() == *dst {
		return true
	}
	return ep > 0 && e.bubbleSource(peer, ep-1).As16() == *dst
}

// answersBubble says whether peer p may take a bubble to our link-local
// source from a mapping other than its own: only while a bubble of ours to
// it is unanswered and recent, and never when p is trusted and was heard
// from in the last 30 s (its mapping is known to work; moving it is what a
// forger would want).
func answersBubble(p *peer, now tick) bool {
	if p.probes == 0 || since(now, p.lastTx) > bubbleAnswerTicks {
		return false
	}
	return !p.has(fTrusted) || since(now, p.lastRx) >= validTicks
}

// unreachable writes an ICMPv6 destination unreachable about invoking to
// the host, within the rate limit. Its source is the destination that could
// not be reached: the host accepts it as coming from there, and, for a
// relay, it is an address the host routes (a link-local source would not
// be forwarded to the native sender). No error answers an ICMPv6 error or
// a packet from an unspecified or multicast source (RFC 4443 §2.4).
func (e *Engine) unreachable(invoking proto.IPv6, code uint8, now tick, out *Out, c *counters) {
	src := invoking.Src()
	if src.IsUnspecified() || src.IsMulticast() {
		return
	}
	if invoking.NextHeader() == proto.ProtoICMPv6 && len(invoking) > proto.IPv6HeaderLen &&
		invoking[proto.IPv6HeaderLen] < 128 {
		return
	}
	sec := uint32(now / ticksPerSecond)
	if old := e.icmpSecond.Load(); old != sec && e.icmpSecond.CompareAndSwap(old, sec) {
		e.icmpCount.Store(0)
	}
	if e.icmpCount.Add(1) > icmpPerSecond {
		c.unreachLimited.Add(1)
		return
	}
	pkt := out.space(proto.MinMTU)
	pkt = out.commit(proto.AppendDestUnreachable(pkt, invoking.Dst(), code, invoking))
	out.Local = append(out.Local, pkt)
	c.unreach.Add(1)
}

// flush hands a detached queue to out now that a peer at mapping from is
// trusted: outgoing packets go along r, incoming ones (client case 6) to
// the host if they came from that same mapping. s.mu may be held: nothing
// here locks.
func (e *Engine) flush(q *queue, from netip.AddrPort, r route, out *Out, c *counters) {
	for i := range q.items {
		it := &q.items[i]
		ok := false
		switch {
		case !it.in:
			ok = out.send(it.data, r)
		case it.from == from:
			out.Local = append(out.Local, it.data)
			ok = true
		}
		if ok {
			out.hold(it.buf)
			c.dequeued.Add(1)
		} else {
			if it.buf != nil {
				it.buf.pool.Put(it.buf)
			}
			c.dropped[DropQueueMismatch].Add(1)
		}
		*it = queued{}
	}
	e.release(q)
	q.items = q.items[:0]
	q.outgoing = 0
}

// be32 reads the first 32 bits of an address: its Teredo prefix, if any.
func be32(a []byte) uint32 { return binary.BigEndian.Uint32(a) }

func globalIPv4(b []byte) bool { return proto.IsGlobalUnicastIPv4(netip.AddrFrom4([4]byte(b))) }

// embeddedMapping decodes the client's mapped address and port from a
// Teredo address (stored inverted, RFC 4380 §4).
func embeddedMapping(a []byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{^a[12], ^a[13], ^a[14], ^a[15]}),
		^binary.BigEndian.Uint16(a[10:12]))
}

// SPDX-License-Identifier: MIT

package tunnel

import (
	"log/slog"
	"sync/atomic"
)

// DropReason says why a packet was not forwarded. The names (String) are
// stable: logs, metrics and tests key on them.
type DropReason uint8

// Drop reasons.
const (
	DropNone          DropReason = iota
	DropMalformed                // not a valid IPv6 packet or Teredo encapsulation
	DropMulticast                // multicast destination
	DropNotQualified             // client without a Teredo address
	DropNotTeredoDst             // relay asked to route outside the Teredo prefix
	DropProhibited               // client: native to native (ICMPv6 administratively prohibited)
	DropNonGlobal                // IPv4 address in the packet or of its sender is not global unicast
	DropTableFull                // peer table full of trusted active peers
	DropQueueFull                // the peer's or the engine's queue budget is used up
	DropUnreachable              // bubbles or connectivity tests used up without an answer
	DropLinkLocalSrc             // link-local source from the Teredo side (fake RAs)
	DropNotTeredoSrc             // relay: source is not a Teredo address
	DropUnknownPeer              // relay: a Teredo client we never sent to
	DropMismatch                 // source IPv4/port matches neither the peer's mapping nor its address
	DropBadDst                   // destination we do not deliver to
	DropQueueExpired             // a queued packet whose peer never answered, or whose entry expired
	DropQueueMismatch            // a queued incoming packet from another mapping than the verified one
	DropNativeBubble             // client: a bubble from a native source
	DropProbeLimited             // client: a native peer's packet whose connectivity test the global budget refused
	DropQueueEvicted             // a queued packet whose entry was evicted to make room
	DropQueueReset               // client: a queued packet dropped with the peer table on a new address
	DropPeerLimited              // client: a new Teredo peer from outside beyond the new-peer budget
	DropTrailer                  // client: a bubble whose RFC 6081 trailers ask for it to be dropped (§4.1, §5.6.4.2)
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropNone:          "none",
	DropMalformed:     "malformed",
	DropMulticast:     "multicast_dst",
	DropNotQualified:  "not_qualified",
	DropNotTeredoDst:  "not_teredo_dst",
	DropProhibited:    "prohibited",
	DropNonGlobal:     "nonglobal_ipv4",
	DropTableFull:     "table_full",
	DropQueueFull:     "queue_full",
	DropUnreachable:   "unreachable",
	DropLinkLocalSrc:  "link_local_src",
	DropNotTeredoSrc:  "not_teredo_src",
	DropUnknownPeer:   "unknown_peer",
	DropMismatch:      "mapping_mismatch",
	DropBadDst:        "bad_dst",
	DropQueueExpired:  "queue_expired",
	DropQueueMismatch: "queue_mismatch",
	DropNativeBubble:  "native_bubble",
	DropProbeLimited:  "probe_limited",
	DropQueueEvicted:  "queue_evicted",
	DropQueueReset:    "queue_reset",
	DropPeerLimited:   "peer_limited",
	DropTrailer:       "trailer",
}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats are the Engine's counters since New. Gauges (Peers, QueuedBytes)
// are current values; everything else only grows.
type Stats struct {
	FromTunnel uint64 // packets the host sent into the tunnel
	FromUDP    uint64 // datagrams handed to FromUDP

	Encapsulated uint64 // host packets sent straight to a trusted peer
	Delivered    uint64 // Teredo packets written to the host
	Queued       uint64 // packets queued while a peer is being verified
	Dequeued     uint64 // queued packets sent or delivered once it was

	BubblesIn       uint64 // bubbles received (never delivered)
	IndirectBubbles uint64 // bubbles sent through a peer's server
	DirectBubbles   uint64 // bubbles sent to a peer's mapping
	ReplyBubbles    uint64 // client: bubbles sent to an origin indication
	RepliesLimited  uint64 // client: bubbles to an origin indication not sent (2 s spacing, global budget)
	Pings           uint64 // client: connectivity-test echo requests sent
	PingReplies     uint64 // client: authentic echo replies received
	PingsLimited    uint64 // client: connectivity tests the global budgets refused

	Unreachables        uint64 // ICMPv6 errors written to the host
	UnreachablesLimited uint64 // ICMPv6 errors suppressed by the rate limit

	Trusted uint64 // times a peer's mapping was verified
	Created uint64 // peer entries created
	Evicted uint64 // entries evicted to make room
	Expired uint64 // entries removed after being idle

	Peers       uint64 // entries in the table now
	QueuedBytes uint64 // memory held by packets waiting in queues now (see Config.MaxQueueBytes)

	// RFC 6081 (client).
	NonceVerified  uint64 // peer mappings verified by a bubble echoing our nonce (§5.2.4.4)
	CompatBubbles  uint64 // indirect bubbles sent the Miredo way too (HMAC link-local source)
	AltBubbles     uint64 // direct bubbles to a peer's alternate addresses (§5.6.4.2)
	RandomPorts    uint64 // random local ports opened (§5.4.4.2, §5.5.4.1)
	PortsLimited   uint64 // random ports not opened: maxRandomPorts open, or the socket failed
	EchoTests      uint64 // echo tests started (§5.5.4.1.1)
	Predictions    uint64 // echo tests that predicted a port (§5.5.4.4)
	Solicitations  uint64 // direct bubbles asking a silent peer for a direct answer (§5.7.4.1)
	Advertisements uint64 // direct answers to a peer's solicitation (§5.7.4.2)
	IndirectSaved  uint64 // refreshes a direct answer completed, with no indirect bubble through a server (§3.6)
	// SolicitationsUnanswered are refreshes whose solicitation got no
	// answer: the peer's NAT forgot the path in the silence, and the peer
	// was bubbled through its server (§5.7.2), as it will be from then on.
	SolicitationsUnanswered uint64

	Dropped [NumDropReasons]uint64
}

// LogValue prints the counters with stable keys; zero drop counters and
// RFC 6081 counters are left out.
func (s Stats) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Uint64("from_tunnel", s.FromTunnel),
		slog.Uint64("from_udp", s.FromUDP),
		slog.Uint64("encapsulated", s.Encapsulated),
		slog.Uint64("delivered", s.Delivered),
		slog.Uint64("queued", s.Queued),
		slog.Uint64("dequeued", s.Dequeued),
		slog.Uint64("bubbles_in", s.BubblesIn),
		slog.Uint64("indirect_bubbles", s.IndirectBubbles),
		slog.Uint64("direct_bubbles", s.DirectBubbles),
		slog.Uint64("reply_bubbles", s.ReplyBubbles),
		slog.Uint64("replies_limited", s.RepliesLimited),
		slog.Uint64("pings", s.Pings),
		slog.Uint64("ping_replies", s.PingReplies),
		slog.Uint64("pings_limited", s.PingsLimited),
		slog.Uint64("unreachables", s.Unreachables),
		slog.Uint64("unreachables_limited", s.UnreachablesLimited),
		slog.Uint64("trusted", s.Trusted),
		slog.Uint64("created", s.Created),
		slog.Uint64("evicted", s.Evicted),
		slog.Uint64("expired", s.Expired),
		slog.Uint64("peers", s.Peers),
		slog.Uint64("queued_bytes", s.QueuedBytes),
	}
	// RFC 6081's, when they moved (a relay's never do).
	for _, c := range []struct {
		key string
		n   uint64
	}{{"nonce_verified", s.NonceVerified}, {"compat_bubbles", s.CompatBubbles}, {"alt_bubbles", s.AltBubbles},
		{"random_ports", s.RandomPorts}, {"ports_limited", s.PortsLimited}, {"echo_tests", s.EchoTests},
		{"predictions", s.Predictions}, {"solicitations", s.Solicitations}, {"advertisements", s.Advertisements},
		{"indirect_saved", s.IndirectSaved}, {"solicitations_unanswered", s.SolicitationsUnanswered}} {
		if c.n != 0 {
			attrs = append(attrs, slog.Uint64(c.key, c.n))
		}
	}
	for r := DropReason(1); r < NumDropReasons; r++ {
		if s.Dropped[r] != 0 {
			attrs = append(attrs, slog.Uint64("drop_"+r.String(), s.Dropped[r]))
		}
	}
	return slog.GroupValue(attrs...)
}

// counters is the live form of Stats for one side of the engine (host
// side, Teredo side, timer), padded so the two data-path goroutines do not
// share cache lines.
type counters struct {
	in, encapsulated, delivered, queued, dequeued      atomic.Uint64
	bubblesIn, indirect, direct, reply, pings, replies atomic.Uint64
	pingsLimited, replyLimited                         atomic.Uint64
	unreach, unreachLimited                            atomic.Uint64
	trusted, created, evicted, expired                 atomic.Uint64
	nonceVerified, compat, alts, randomPorts           atomic.Uint64
	portsLimited, echoTests, predictions               atomic.Uint64
	solicitations, advertisements, saved               atomic.Uint64
	solicitFailed                                      atomic.Uint64
	dropped                                            [NumDropReasons]atomic.Uint64
	_                                                  [64]byte
}

type engineCounters struct {
	tun, udp, tick counters
}

func (c *counters) addTo(s *Stats) {
	s.Encapsulated += c.encapsulated.Load()
	s.Delivered += c.delivered.Load()
	s.Queued += c.queued.Load()
	s.Dequeued += c.dequeued.Load()
	s.BubblesIn += c.bubblesIn.Load()
	s.IndirectBubbles += c.indirect.Load()
	s.DirectBubbles += c.direct.Load()
	s.ReplyBubbles += c.reply.Load()
	s.RepliesLimited += c.replyLimited.Load()
	s.Pings += c.pings.Load()
	s.PingReplies += c.replies.Load()
	s.PingsLimited += c.pingsLimited.Load()
	s.Unreachables += c.unreach.Load()
	s.UnreachablesLimited += c.unreachLimited.Load()
	s.Trusted += c.trusted.Load()
	s.Created += c.created.Load()
	s.Evicted += c.evicted.Load()
	s.Expired += c.expired.Load()
	s.NonceVerified += c.nonceVerified.Load()
	s.CompatBubbles += c.compat.Load()
	s.AltBubbles += c.alts.Load()
	s.RandomPorts += c.randomPorts.Load()
	s.PortsLimited += c.portsLimited.Load()
	s.EchoTests += c.echoTests.Load()
	s.Predictions += c.predictions.Load()
	s.Solicitations += c.solicitations.Load()
	s.Advertisements += c.advertisements.Load()
	s.IndirectSaved += c.saved.Load()
	s.SolicitationsUnanswered += c.solicitFailed.Load()
	for i := range c.dropped {
		s.Dropped[i] += c.dropped[i].Load()
	}
}

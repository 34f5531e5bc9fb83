// SPDX-License-Identifier: MIT

package server

import (
	"net/netip"

	"github.com/miredo-go/miredo/pkg/proto"
)

// The packet rules of a Teredo server (RFC 4380 §5.3) as a pure function:
// one datagram in, one decision out. The socket loops do the I/O; every rule
// is table-tested without sockets.
//
// Pipeline for each datagram received on either server address:
//
//	loop guard (from our own addresses, port 3544)       -> drop
//	§5.3.1 case 1: well-formed Teredo envelope + IPv6     else drop
//	§5.3.1 case 2: a bubble or ICMPv6                     else drop
//	§5.3.1 case 3: IPv4 source is global unicast          else drop
//	§5.3.1 case 4: RS from link-local to ff02::2          -> RA (same or other address)
//	§5.3.1 case 5: Teredo source matching the UDP source  -> accepted
//	§5.3.1 case 6: other source, to a client of ours      -> accepted
//	         case 7: anything else                        -> drop
//	accepted: to ff02::2 or link-local                    -> drop (only RSs are answered)
//	          to a non-global IPv6 destination            -> drop
//	          not a bubble or echo, or payload > 88 bytes -> drop (no open relay)
//	          to native IPv6: echo request from a client  -> raw IPv6 (connectivity test)
//	          to a Teredo client of this server           -> UDP from the primary address,
//	                                                         with an origin indication
//
// Stricter than Miredo 1.2.6: Teredo destinations must be clients of this
// server (bits 32-63 equal our primary address), because an indirect bubble
// always goes through the destination's own server (RFC 4380 §5.2.6), so a
// server has no reason to send anything to another server's clients; only
// echo requests go to native IPv6 (Miredo forwards any small ICMPv6); the
// 240/4 block counts as non-global.

// Verdict says what to do with a datagram.
type Verdict uint8

// Verdicts.
const (
	Drop     Verdict = iota
	SendUDP          // send Result.Packet over UDP from socket Result.Via to Result.To
	SendIPv6         // send Result.Packet (an IPv6 packet) to the native IPv6 network
)

// Via names which server address a UDP reply leaves from.
type Via uint8

// Server addresses.
const (
	ViaPrimary Via = iota
	ViaSecondary
)

// Other returns the other address.
func (v Via) Other() Via { return 1 - v }

// DropReason says why a datagram was dropped; the server counts each.
type DropReason uint8

// Drop reasons, in rule order.
const (
	NotDropped          DropReason = iota
	DropLoop                       // from one of our own addresses at port 3544 (MTFL-SA-0603)
	DropMalformed                  // not a well-formed Teredo IPv6 packet (case 1)
	DropNotBubbleOrICMP            // neither a bubble nor ICMPv6 (case 2)
	DropSourceNotGlobal            // IPv4 source not global unicast (case 3)
	DropBadRS                      // link-local to ff02::2 but not a valid router solicitation
	DropNotAccepted                // none of cases 4-6 (case 7)
	DropLocalDst                   // to ff02::2 or a link-local address, not an RS
	DropDstNotGlobal               // IPv6 destination not global unicast
	DropNotAllowed                 // ICMPv6 other than echo, or echo reply to native IPv6
	DropTooBig                     // payload over 88 bytes or oversized trailer
	DropNotOurClient               // Teredo destination served by another server
	DropClientNotGlobal            // Teredo destination whose mapped IPv4 is not global
	DropRateLimited                // over the per-/24 send budget (see sendLimiter)
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	NotDropped:          "none",
	DropLoop:            "loop",
	DropMalformed:       "malformed",
	DropNotBubbleOrICMP: "not_bubble_or_icmpv6",
	DropSourceNotGlobal: "source_not_global",
	DropBadRS:           "bad_rs",
	DropNotAccepted:     "not_accepted",
	DropLocalDst:        "local_destination",
	DropDstNotGlobal:    "destination_not_global",
	DropNotAllowed:      "not_allowed",
	DropTooBig:          "too_big",
	DropNotOurClient:    "not_our_client",
	DropClientNotGlobal: "client_not_global",
	DropRateLimited:     "rate_limited",
}

// String returns the stable name used in logs and counters.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Limits on what the server forwards.
const (
	// maxForwardPayload is the largest IPv6 payload forwarded, as in Miredo:
	// enough for bubbles and connectivity-test echoes, useless for traffic.
	maxForwardPayload = 88
	// maxTrailer bounds the RFC 6081 trailers kept on forwarded bubbles
	// (nonce, alternate addresses and random port trailers are far smaller).
	maxTrailer = 64
)

// Result is the decision for one datagram. For SendUDP, Packet aliases the
// out buffer given to Handle; for SendIPv6 it aliases the input datagram
// (the raw send is synchronous, so no copy is needed).
type Result struct {
	Verdict Verdict
	Reason  DropReason     // when Verdict is Drop
	Via     Via            // SendUDP: the address to send from
	To      netip.AddrPort // SendUDP: destination
	Packet  []byte
}

// Handler holds what the rules need to know about this server. It is
// immutable after NewHandler, so socket loops share it without locks.
type Handler struct {
	addr   [2]netip.Addr // primary, secondary
	prefix uint32
	// ra is the advertisement every RS gets (prefix, primary address, MTU),
	// built once: the per-RS fields are patched into a copy.
	ra *proto.RATemplate
}

// NewHandler returns the rules of a server on primary and secondary, with
// the advertised prefix (first 32 bits) and MTU.
func NewHandler(primary, secondary netip.Addr, prefix uint32, mtu uint32) *Handler {
	return &Handler{
		addr:   [2]netip.Addr{primary, secondary},
		prefix: prefix,
		ra:     proto.NewRATemplate(primary, prefix, mtu),
	}
}

func drop(r DropReason) Result { return Result{Verdict: Drop, Reason: r} }

// Handle applies the server rules to datagram b, received from "from" on the
// server address "on". Replies are written into out (which needs room for
// 1280 bytes to avoid allocating). e is scratch space owned by the caller.
func (h *Handler) Handle(b []byte, from netip.AddrPort, on Via, out []byte, e *proto.Envelope) Result {
	if from.Port() == proto.Port && (from.Addr() == h.addr[0] || from.Addr() == h.addr[1]) {
		return drop(DropLoop)
	}
	if err := proto.ParseEnvelope(b, e); err != nil {
		return drop(DropMalformed)
	}
	pkt := e.IPv6
	isBubble := pkt.IsBubble()
	if !isBubble && pkt.NextHeader() != proto.ProtoICMPv6 {
		return drop(DropNotBubbleOrICMP)
	}
	if !proto.IsGlobalUnicastIPv4(from.Addr()) {
		return drop(DropSourceNotGlobal)
	}
	src, dst := pkt.Src(), pkt.Dst()

	// Case 4: router solicitation.
	if !isBubble && proto.IsLinkLocalIPv6(src) && dst == proto.AllRouters() {
		rs, err := proto.ParseRouterSolicitation(pkt)
		if err != nil {
			return drop(DropBadRS)
		}
		var nonce [proto.NonceLen]byte
		if e.HasAuth {
			nonce = e.Auth.Nonce
		}
		via := on
		if rs.Cone {
			via = on.Other()
		}
		out = h.ra.Append(out[:0], nonce, from, rs.Src)
		return Result{Verdict: SendUDP, Via: via, To: from, Packet: out}
	}

	// Cases 5 and 6.
	srcTeredo := proto.HasPrefix(src, h.prefix)
	switch {
	case srcTeredo:
		a, _ := proto.ParseAddress(src)
		if a.Mapping() != from {
			return drop(DropNotAccepted)
		}
	case h.ours(dst):
	default:
		return drop(DropNotAccepted)
	}

	if !dst.Is4In6() && (dst.IsMulticast() || dst.IsLinkLocalUnicast()) {
		return drop(DropLocalDst)
	}
	if !dst.IsGlobalUnicast() || dst.Is4In6() {
		return drop(DropDstNotGlobal)
	}
	if len(pkt.Payload()) > maxForwardPayload || len(e.Trailer) > maxTrailer {
		return drop(DropTooBig)
	}
	var icmpType uint8
	if !isBubble {
		m, err := proto.ParseICMPv6(pkt)
		if err != nil {
			return drop(DropMalformed)
		}
		icmpType = m.Type()
		if icmpType != proto.ICMPv6EchoRequest && icmpType != proto.ICMPv6EchoReply {
			return drop(DropNotAllowed)
		}
	}

	if !proto.HasPrefix(dst, h.prefix) {
		// Native IPv6: only a client's direct connectivity test (§5.2.9).
		if isBubble || icmpType != proto.ICMPv6EchoRequest || !srcTeredo {
			return drop(DropNotAllowed)
		}
		return Result{Verdict: SendIPv6, Packet: pkt} // sent at once, from the input buffer
	}
	if !h.ours(dst) {
		return drop(DropNotOurClient)
	}
	client, _ := proto.ParseAddress(dst)
	if !proto.IsGlobalUnicastIPv4(client.MappedAddr) || client.MappedPort == 0 {
		return drop(DropClientNotGlobal)
	}
	out = proto.AppendOrigin(out[:0], from)
	out = append(out, pkt...)
	out = append(out, e.Trailer...)
	return Result{Verdict: SendUDP, Via: ViaPrimary, To: client.Mapping(), Packet: out}
}

// ours reports whether a is a Teredo address allocated through this server
// (RFC 4380 §5.3.1: bits 32-63 equal the server's IPv4 address).
func (h *Handler) ours(a netip.Addr) bool {
	if !proto.HasPrefix(a, h.prefix) {
		return false
	}
	t, _ := proto.ParseAddress(a)
	return t.Server == h.addr[0]
}

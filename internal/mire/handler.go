// SPDX-License-Identifier: MIT

package mire

import (
	"encoding/binary"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/proto"
)

// The responder's rules as a pure function: one datagram in, one decision
// out; the socket loops do the I/O. Pipeline for each datagram:
//
//	from our own address, port 3544 or 3545              -> drop (loop)
//	IPv4 source not global unicast, or port 0             -> drop
//	not a Teredo envelope around a whole IPv6 packet      -> drop (malformed)
//	IPv6 destination not our Teredo address               -> drop
//	IPv6 source multicast, unspecified or loopback        -> drop
//	on 3544: a bubble                                     -> bubble back, from 3545
//	         anything else                                -> drop
//	on 3545: next header 59 (a direct bubble)             -> drop (needs no answer)
//	         ICMPv6 echo request, checksum right           -> echo reply
//	         other or broken ICMPv6                       -> drop
//	         any other next header                        -> parameter problem, pointer 6
//
// Every reply leaves from UDP 3545 to the datagram's source.

// MappedPort is the UDP port of the responder's Teredo address: its mapped
// port, where peers send their packets. Port 3544 (proto.Port) is its
// server's.
const MappedPort = 3545

// Port names the socket a datagram came in on.
type Port uint8

// The two sockets.
const (
	OnServerPort Port = iota // UDP 3544: the responder as its own server
	OnMappedPort             // UDP 3545: the responder's Teredo mapping
)

// Verdict says what to do with a datagram.
type Verdict uint8

// Verdicts.
const (
	Drop  Verdict = iota
	Reply         // send Result.Packet from UDP 3545 to Result.To
)

// Kind says what a reply is, for the counters.
type Kind uint8

// Reply kinds.
const (
	EchoReply Kind = iota
	Bubble
	ParamProblem
	NumKinds
)

var kindNames = [NumKinds]string{"echo_replies", "bubbles", "param_problems"}

// String returns the counter name of the kind.
func (k Kind) String() string {
	if k < NumKinds {
		return kindNames[k]
	}
	return "unknown"
}

// DropReason says why a datagram was not answered; the responder counts
// each.
type DropReason uint8

// Drop reasons, in rule order.
const (
	NotDropped       DropReason = iota
	DropLoop                    // from our own address at 3544 or 3545
	DropSource                  // IPv4 source not global unicast, or port 0
	DropMalformed               // not a well-formed Teredo envelope around IPv6, or truncated
	DropNotOurs                 // IPv6 destination is not our Teredo address
	DropIPv6Source              // IPv6 source multicast, unspecified or loopback: no one to answer
	DropNotBubble               // on 3544: anything but a bubble
	DropDirectBubble            // on 3545: next header 59 (a peer's direct bubble needs no answer)
	DropBadICMPv6               // ICMPv6 shorter than 8 bytes or with a bad checksum
	DropNotEcho                 // ICMPv6 other than an echo request
	DropRateLimited             // over the reply budget (see limiter)
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	NotDropped:       "none",
	DropLoop:         "loop",
	DropSource:       "source_not_global",
	DropMalformed:    "malformed",
	DropNotOurs:      "not_ours",
	DropIPv6Source:   "ipv6_source",
	DropNotBubble:    "not_bubble",
	DropDirectBubble: "direct_bubble",
	DropBadICMPv6:    "bad_icmpv6",
	DropNotEcho:      "not_echo",
	DropRateLimited:  "rate_limited",
}

// String returns the stable name used in logs and counters.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Result is the decision for one datagram. Packet aliases the out buffer
// given to Handle.
type Result struct {
	Verdict Verdict
	Reason  DropReason // when Verdict is Drop
	Kind    Kind       // when Verdict is Reply
	To      netip.AddrPort
	Packet  []byte
}

func drop(r DropReason) Result { return Result{Verdict: Drop, Reason: r} }

// Handler holds the responder's IPv4 address. It is immutable, so socket
// loops share it without locks.
type Handler struct {
	addr netip.Addr
	// obfuscated is the last 6 bytes of our Teredo address: ~3545 and ~addr.
	obfuscated [6]byte
	server     [4]byte
}

// NewHandler returns the rules of a responder on the IPv4 address addr.
func NewHandler(addr netip.Addr) *Handler {
	h := &Handler{addr: addr.Unmap(), server: addr.Unmap().As4()}
	binary.BigEndian.PutUint16(h.obfuscated[0:2], ^uint16(MappedPort))
	for i, b := range h.server {
		h.obfuscated[2+i] = ^b
	}
	return h
}

// Address returns the responder's Teredo address with the global prefix
// and no flags: the one to ping.
func (h *Handler) Address() netip.Addr {
	return proto.Address{Prefix: proto.DefaultPrefix, Server: h.addr, MappedPort: MappedPort, MappedAddr: h.addr}.Addr()
}

// ours reports whether a is the responder's Teredo address under any prefix
// and flags: server and mapped address both ours, mapped port 3545. It must
// be a global unicast address, so a prefix that makes it multicast or
// link-local does not count.
func (h *Handler) ours(a netip.Addr) bool {
	b := a.As16()
	return [4]byte(b[4:8]) == h.server && [6]byte(b[10:16]) == h.obfuscated && a.IsGlobalUnicast() && !a.Is4In6()
}

// Handle applies the rules to datagram b, received from "from" on port on.
// A reply is written into out (which needs room for the datagram, or 1280
// bytes for a parameter problem, to avoid allocating). e is scratch space
// owned by the caller.
func (h *Handler) Handle(b []byte, from netip.AddrPort, on Port, out []byte, e *proto.Envelope) Result {
	if from.Addr() == h.addr && (from.Port() == proto.Port || from.Port() == MappedPort) {
		return drop(DropLoop)
	}
	if !proto.IsGlobalUnicastIPv4(from.Addr()) || from.Port() == 0 {
		return drop(DropSource)
	}
	if err := proto.ParseEnvelope(b, e); err != nil {
		return drop(DropMalformed)
	}
	pkt := e.IPv6
	src, dst := pkt.Src(), pkt.Dst()
	if !h.ours(dst) {
		return drop(DropNotOurs)
	}
	if src.IsMulticast() || src.IsUnspecified() || src.IsLoopback() {
		return drop(DropIPv6Source)
	}
	if on == OnServerPort {
		if !pkt.IsBubble() {
			return drop(DropNotBubble)
		}
		return Result{Verdict: Reply, Kind: Bubble, To: from, Packet: proto.AppendBubble(out[:0], dst, src, 0)}
	}
	switch pkt.NextHeader() {
	case proto.ProtoNoNext:
		return drop(DropDirectBubble)
	case proto.ProtoICMPv6:
		return h.echo(pkt, from, out)
	}
	// RFC 8200 §4: a next header we do not know. teredo-mire says so for
	// every header but ICMPv6 and "no next header", extension headers
	// included.
	return Result{Verdict: Reply, Kind: ParamProblem, To: from,
		Packet: proto.AppendParamProblem(out[:0], dst, proto.ParamProblemNextHeader, 6, pkt)}
}

// echo answers an ICMPv6 echo request: the request with its addresses
// swapped, hop limit 255, type and code of a reply, checksum recomputed.
func (h *Handler) echo(pkt proto.IPv6, from netip.AddrPort, out []byte) Result {
	m, err := proto.ParseICMPv6(pkt)
	if err != nil || len(m) < 8 {
		return drop(DropBadICMPv6)
	}
	if m.Type() != proto.ICMPv6EchoRequest {
		return drop(DropNotEcho)
	}
	src, dst := pkt.Src(), pkt.Dst()
	out = append(out[:0], pkt...)
	r := proto.IPv6(out)
	r.SetHopLimit(255)
	r.SetSrc(dst)
	r.SetDst(src)
	msg := out[proto.IPv6HeaderLen:]
	msg[0], msg[1], msg[2], msg[3] = proto.ICMPv6EchoReply, 0, 0, 0
	binary.BigEndian.PutUint16(msg[2:4], proto.ICMPv6Checksum(dst, src, msg))
	return Result{Verdict: Reply, Kind: EchoReply, To: from, Packet: out}
}

// SPDX-License-Identifier: MIT

// Package mire is a stateless Teredo test responder with the behaviour of
// Debian's teredo-mire (Miredo 1.2.6): a host with a public IPv4 address A
// answers ICMPv6 echo requests sent over Teredo to the address that names A
// as its server and as its mapped address with mapped port 3545, so clients
// and relays can be tested without a real peer. It is run by
// `miredo-server mire A` and imported only by cmd/miredo-server; it links no
// other role (internal/archtest checks both).
//
// What teredo-mire does, as seen on the wire in the lab (its man page and
// its packets, not its source), and what this package does the same:
//
//   - UDP 3545 (the mapped port): an ICMPv6 echo request, after any
//     authentication header or origin indication, is answered from 3545 to
//     the datagram's source with an echo reply: the request's packet with
//     source and destination swapped, hop limit 255, type 129, code 0 and
//     the checksum computed afresh; traffic class, flow label and data are
//     kept, bytes after the IPv6 payload dropped. A packet whose next
//     header is neither ICMPv6 nor 59 (no next header) gets an ICMPv6
//     parameter problem (code 1, pointer 6) quoting it, cut to fit 1280
//     bytes. Other ICMPv6 messages, messages shorter than 8 bytes and
//     bubbles are not answered.
//   - UDP 3544 (the responder acts as its own Teredo server): a bubble is
//     what a peer sends to a destination's server to open the way (RFC 4380
//     §5.2.4); it is answered from 3545 with a bubble back (hop limit 0,
//     addresses swapped), which lets the peer's NAT and the peer itself
//     trust the responder's mapping before the echo requests come.
//     Anything else on 3544 is not answered.
//   - The Teredo prefix and flags of the destination are ignored.
//
// Where this package is stricter than teredo-mire, on purpose (the replay
// test in this package lists each case with teredo-mire's answer):
//
//   - teredo-mire answers an echo request (and sends its parameter
//     problems, and answers bubbles) whatever the destination, taking that
//     destination as the reply's source, multicast and link-local included:
//     we answer only for our own Teredo address, so nothing leaves with a
//     source that is not ours;
//   - it answers echo requests with a bad ICMPv6 checksum (RFC 4443 §2.4
//     asks to discard them), replies towards multicast, unspecified and
//     loopback IPv6 sources, and answers echo requests from IPv4 sources
//     that are not global, such as 10/8 (bubbles from most of those it
//     leaves alone): we drop all of these and count them;
//   - it binds 0.0.0.0 and answers from the host's primary address even
//     when asked on another, which a NAT in front of the asker drops: we
//     bind the address we answer for;
//   - it answers as fast as it is asked: we bound the replies per second
//     (one budget for all askers: no state is kept per peer), so it cannot
//     be turned into a flood source towards a spoofed address.
//
// handler.go holds the rules as a pure function (datagram in, decision out);
// mire.go the sockets, the loops and the counters around it.
package mire

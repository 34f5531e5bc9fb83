// SPDX-License-Identifier: MIT

// Package proto reads and writes Teredo packets (RFC 4380 §4, §5.1.1, §5.2,
// updated by RFC 5991 and RFC 6081) byte for byte as Miredo 1.2.6 and Windows
// put them on the wire.
//
// It knows bytes, not sockets. Parsing is done through typed byte-slice views
// (IPv6, ICMPv6, Envelope) whose accessors read fields in place, so the hot
// path of the client, relay and server neither copies nor allocates. Builders
// append to a caller-owned buffer, so callers choose where packets live.
//
// Views do not check bounds on their own: call the matching Parse or Valid
// function first, as gVisor's header package asks.
package proto

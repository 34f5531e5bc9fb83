// SPDX-License-Identifier: MIT

// Package tunnel is the Teredo data path shared by the client and the relay
// (never the server): the peer table with its trust state and per-peer
// queues, the bubble and direct-connectivity-test budgets, and the rules of
// RFC 4380 §5.2.3 and §5.2.4 (client) and §5.4 (relay) as an Engine that
// takes packets in and returns decisions, so every rule is table-tested on a
// fake clock without sockets or a tunnel device.
//
// The role packages own the I/O: they read IPv6 packets from the tunnel and
// datagrams from the UDP socket in batches, hand each to the Engine, and
// write what it put in Out in batches.
//
//	tunnel (host -> Teredo):  dev.Read(batch) -> Engine.FromTunnel -> Out.UDP  -> udp.WriteBatch
//	                                                               -> Out.Local -> dev.Write (ICMPv6 errors)
//	socket (Teredo -> host):  udp.ReadBatch   -> Engine.FromUDP    -> Out.Local -> dev.Write
//	                                                               -> Out.UDP   -> udp.WriteBatch (bubbles, dequeued packets)
//	timer (every second):                        Engine.Tick       -> Out.UDP   (bubble and ping retries, expiry)
package tunnel

import (
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// Mode says which rules the Engine applies.
type Mode uint8

// Modes.
const (
	// Client applies RFC 4380 §5.2.3/§5.2.4: direct connectivity tests
	// through our server for native IPv6 peers, bubbles for Teredo peers.
	Client Mode = iota
	// ConeRelay applies §5.4 with indirect bubbles only (Miredo "cone").
	ConeRelay
	// RestrictedRelay also sends direct bubbles, for a relay behind a NAT
	// (Miredo "restricted").
	RestrictedRelay
)

// Config is fixed for the Engine's life.
type Config struct {
	Mode Mode
	// Prefix is the Teredo prefix (first 32 bits), normally
	// proto.DefaultPrefix.
	Prefix uint32
	// MaxPeers bounds the peer table (Miredo: 1,048,576). A flood of new
	// peers evicts untrusted and idle entries first, never trusted active
	// ones.
	MaxPeers int
	// Now is the clock; tests pass a fake one. Nil means time.Now.
	Now func() time.Time
	// Rand fills nonces (connectivity tests) and the secret keys; nil means
	// crypto/rand.
	Rand func([]byte)
	// PeerQueueBytes bounds the packets waiting for one peer to answer a
	// bubble or connectivity test; 0 means 4096. The bound counts the
	// memory each packet holds (a buffer of 128 to 2048 bytes, or its own
	// size if larger, and about 70 bytes of bookkeeping), so 4096 holds one
	// full-size packet and two or three smaller ones, or 20 of up to 128
	// bytes (Miredo: 1280 bytes of packets).
	PeerQueueBytes int
	// MaxQueueBytes bounds the memory of the packets waiting for all peers
	// together, counted the same way; 0 means 4 MiB.
	MaxQueueBytes int
	// Disable turns RFC 6081 extensions off (client only; a relay uses
	// none). The zero value runs them all.
	Disable Extensions
	// Ports opens the random local ports of the Port-Preserving and
	// Sequential extensions (RFC 6081 §5.4, §5.5); nil leaves them out.
	Ports PortOpener
}

// Extensions is a set of RFC 6081 extensions.
type Extensions uint8

// The extensions (RFC 6081 §3). UPnP, port-preserving and sequential
// depend on symmetric NAT support (§3): without it they are off too.
const (
	ExtSymmetric      Extensions = 1 << iota // §5.2 Symmetric NAT Support
	ExtUPnP                                  // §5.3 UPnP-Enabled Symmetric NAT
	ExtPortPreserving                        // §5.4 Port-Preserving Symmetric NAT
	ExtSequential                            // §5.5 Sequential Port-Symmetric NAT
	ExtHairpin                               // §5.6 Hairpinning
	ExtLoadReduction                         // §5.7 Server Load Reduction
	AllExtensions     = ExtSymmetric | ExtUPnP | ExtPortPreserving | ExtSequential | ExtHairpin | ExtLoadReduction
)

// PortOpener opens and closes the client's random local ports (RFC 6081
// §5.4.4.2, §5.5.4.1): UDP sockets on an ephemeral port whose datagrams
// the caller hands to Engine.FromRandomPort, and from which it sends
// Out.Via. The Engine calls it with a peer table lock held, so it must not
// call back into the Engine.
type PortOpener interface {
	Open() (port uint16, err error)
	Close(port uint16)
}

// Self is what a client knows about itself once qualified. A relay leaves
// it zero.
type Self struct {
	// Addr is our Teredo address; the zero Addr means not qualified (the
	// engine then answers host packets with ICMPv6 address unreachable).
	Addr netip.Addr
	// Server is our Teredo server's primary address and port 3544: where
	// connectivity tests and indirect bubbles to our own clients go, and
	// whose origin indications trigger direct bubbles.
	Server netip.AddrPort
	// Cone says our own NAT is a cone NAT (we then need no direct bubbles).
	Cone bool

	// What RFC 6081's extensions need to know.

	// Server2 is the secondary server address and port 3544, where the
	// Sequential extension's echo tests send their second solicitation
	// (§5.5.4.1.1).
	Server2 netip.AddrPort
	// Symmetric: our NAT maps each destination to its own external port
	// (§5.2, §5.3.3).
	Symmetric bool
	// PortPreserving: the primary server saw our local port (§5.4.3).
	PortPreserving bool
	// UPnP: a UPnP port mapping on our only NAT makes the mapping in our
	// address reachable by anyone (§5.3.3: UPnP-Enabled, mapping zeroed).
	UPnP bool
	// UPnPMapping is the UPnP mapping when it differs from the mapping the
	// server saw (nested NATs, §5.3.3, §5.6.3); zero otherwise.
	UPnPMapping netip.AddrPort
	// Local is our own IPv4 address and port, the alternate a peer behind
	// the same NAT reaches us at (§5.6.4.1); zero when unknown.
	Local netip.AddrPort
	// Probing: our NAT's behaviour is still being probed, so the fields
	// above may not hold yet. Meanwhile no bubble round goes to a Teredo
	// peer (packets for it wait; Tick or the next packet starts the round
	// once it is known): an indirect bubble tells the peer how to reach
	// us, and one without a Random Port trailer from a client that turns
	// out to be behind a port-preserving NAT makes such a peer spend its
	// random port's one preserved mapping on the mapping in our address,
	// where no packet of ours will come from (§5.4.4.3): the two never
	// connect.
	Probing bool
}

// Out collects what processing produced. The Engine appends to it; the
// caller sends and writes everything, then calls Reset before the next
// batch. The Engine reads its clock once per batch: the first packet
// after a Reset fixes the time for the rest. Packets in Local and UDP may alias the input buffers of the same
// batch, or buffers Out owns; they stay valid until Reset.
type Out struct {
	// UDP holds datagrams to send on the Teredo socket (Buf[:N] to Addr),
	// ready for udpio.Conn.WriteBatch.
	UDP []udpio.Message
	// Local holds IPv6 packets to write to the tunnel interface.
	Local [][]byte
	// Via holds datagrams to send from one of the random local ports
	// (RFC 6081 §5.4, §5.5) rather than the Teredo socket: a client's
	// slow path, empty on a relay.
	Via []ViaMessage

	outBuffers
}

// The Engine's methods (engine.go; FromTunnel in send.go, FromUDP in
// receive.go):
//
//	New(cfg Config) *Engine
//	(*Engine).SetSelf(s Self)                                 // client: after (re)qualification; a new address resets the peer table
//	(*Engine).FromTunnel(pkt []byte, out *Out)                // one IPv6 packet the host sent into the tunnel
//	(*Engine).FromUDP(b []byte, from netip.AddrPort, out *Out) // one datagram from the socket (maintenance traffic already taken out by the client)
//	(*Engine).FromRandomPort(b, from, port, out)               // client: one datagram from a random port (rfc6081.go)
//	(*Engine).Tick(out *Out)                                  // once a second: retries, queue timeouts, expiry
//	(*Engine).Stats() Stats                                   // counters by disposition and drop reason
//	(*Out).Reset()                                            // after the batch was sent: recycles Out's buffers
//
// FromTunnel and FromUDP may run at the same time on different goroutines
// (one per direction), each with its own Out; Tick runs on a third, with
// its own Out too (the relay's timer loop, the client's maintenance
// goroutine); FromRandomPort on the random ports' reader goroutines.

// ViaMessage is a datagram to send from a random local port.
type ViaMessage struct {
	Port uint16 // the local port, as PortOpener.Open returned it
	udpio.Message
}

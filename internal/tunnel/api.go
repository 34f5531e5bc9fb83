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

	outBuffers
}

// The Engine's methods (engine.go; FromTunnel in send.go, FromUDP in
// receive.go):
//
//	New(cfg Config) *Engine
//	(*Engine).SetSelf(s Self)                                 // client: after (re)qualification; a new address resets the peer table
//	(*Engine).FromTunnel(pkt []byte, out *Out)                // one IPv6 packet the host sent into the tunnel
//	(*Engine).FromUDP(b []byte, from netip.AddrPort, out *Out) // one datagram from the socket (maintenance traffic already taken out by the client)
//	(*Engine).Tick(out *Out)                                  // once a second: retries, queue timeouts, expiry
//	(*Engine).Stats() Stats                                   // counters by disposition and drop reason
//	(*Out).Reset()                                            // after the batch was sent: recycles Out's buffers
//
// FromTunnel and FromUDP may run at the same time on different goroutines
// (one per direction), each with its own Out; Tick runs on a third, with
// its own Out too (the relay's timer loop, the client's maintenance
// goroutine).

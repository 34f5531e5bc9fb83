// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"

	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// Out's unexported part: where generated packets (bubbles, echo requests,
// ICMPv6 errors) are built, and the pooled buffers of dequeued packets,
// which go back to their pool at Reset.
type outBuffers struct {
	arena []byte
	held  []*qbuf

	// The engine's clock as the batch read it first: a batch takes
	// microseconds and a tick is 100 ms, so one read serves every packet
	// in it (time.Now per datagram was ~3 % of a relay's CPU).
	clockOf *Engine // whose tick clockAt is; nil until the first read
	clockAt tick
}

// arenaChunk is the first arena size: room for a dozen generated packets,
// which is more than one batch normally makes.
const arenaChunk = 16 << 10

// Out keeps what it grew to between batches, up to these sizes: a data
// batch is at most udpio.MaxBatch packets, but one Tick after a flood can
// probe thousands of peers at once, and that need not stay allocated.
const (
	keepMessages = 1024
	keepArena    = 4 * arenaChunk
)

// Reset empties o for the next batch and recycles the buffers it owned.
// Packets it held must not be used after Reset.
func (o *Out) Reset() {
	clear(o.UDP) // drop references to the batch's buffers
	o.UDP = trim(o.UDP)
	clear(o.Local)
	o.Local = trim(o.Local)
	clear(o.Via)
	o.Via = trim(o.Via)
	for i, b := range o.held {
		b.pool.Put(b)
		o.held[i] = nil
	}
	o.held = trim(o.held)
	o.arena = o.arena[:0]
	if cap(o.arena) > keepArena {
		o.arena = nil
	}
	o.clockOf = nil
}

// trim empties s, keeping its backing array unless it grew past
// keepMessages.
func trim[S ~[]E, E any](s S) S {
	if cap(s) > keepMessages {
		return nil
	}
	return s[:0]
}

// space returns an empty slice with room for n bytes at the end of the
// arena, for an Append builder to fill in place; commit then claims what
// was built. When the arena is full a new chunk replaces it: packets
// already built keep the old one alive until Reset.
func (o *Out) space(n int) []byte {
	if cap(o.arena)-len(o.arena) < n {
		o.arena = make([]byte, 0, max(2*cap(o.arena), arenaChunk, n))
	}
	return o.arena[len(o.arena):len(o.arena)]
}

// commit claims b, built in place at the end of the arena by space.
func (o *Out) commit(b []byte) []byte {
	o.arena = o.arena[:len(o.arena)+len(b)]
	return b
}

// sendUDP queues b for to. It refuses any destination that is not a global
// unicast IPv4 address (RFC 4380 §5.2.4): every path that sends goes
// through here, so the rule holds whatever the packet said.
func (o *Out) sendUDP(b []byte, to netip.AddrPort) bool {
	if !proto.IsGlobalUnicastIPv4(to.Addr()) || to.Port() == 0 {
		return false
	}
	o.UDP = append(o.UDP, udpio.Message{Buf: b, N: len(b), Addr: to})
	return true
}

// route is where packets to a peer go: its mapping, the random local port
// they leave from (0: the Teredo socket), and whether the mapping may be a
// non-global address (a peer behind our own NAT reached at its local
// address, RFC 6081 §5.6, as RFC 4380 §5.2.4 allows for local peers).
type route struct {
	to    netip.AddrPort
	via   uint16
	local bool
}

// send queues b along r. Only a local route may lead to an address that is
// not global unicast, and never to 0/8, loopback, multicast or broadcast.
func (o *Out) send(b []byte, r route) bool {
	if !r.local {
		if !proto.IsGlobalUnicastIPv4(r.to.Addr()) || r.to.Port() == 0 {
			return false
		}
	} else if !unicastIPv4(r.to.Addr()) || r.to.Port() == 0 {
		return false
	}
	m := udpio.Message{Buf: b, N: len(b), Addr: r.to}
	if r.via != 0 {
		o.Via = append(o.Via, ViaMessage{Port: r.via, Message: m})
	} else {
		o.UDP = append(o.UDP, m)
	}
	return true
}

// unicastIPv4 is an IPv4 address a datagram may go to at all: not 0/8,
// loopback, multicast, reserved or broadcast (RFC 6081 §4.3's "valid
// unicast" for alternate addresses).
func unicastIPv4(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return b[0] != 0 && b[0] != 127 && b[0] < 224
}

// hold keeps a pooled buffer until Reset.
func (o *Out) hold(b *qbuf) {
	if b != nil {
		o.held = append(o.held, b)
	}
}

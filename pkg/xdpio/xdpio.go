// SPDX-License-Identifier: MIT

package xdpio

import (
	"errors"
	"net/netip"
	"time"
)

// MaxBatch is the most datagrams one ReadBatch returns, as in pkg/udpio.
const MaxBatch = 64

// DefaultPort is the Teredo port (RFC 4380 §2.2), what Config.Port 0 means.
const DefaultPort = 3544

// Mode says how the steering program is attached to the interface.
type Mode uint8

// Attach modes.
const (
	// ModeAuto tries the driver's hook and falls back to generic.
	ModeAuto Mode = iota
	// ModeDriver runs the program in the driver, before any socket buffer
	// exists (veth, and most 10G+ NIC drivers). Only this mode allows
	// zero-copy sockets.
	ModeDriver
	// ModeGeneric runs it in the kernel's receive path after the socket
	// buffer is built (any driver): AF_XDP still saves the UDP stack and
	// the system calls, but copies twice.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeDriver:
		return "driver"
	case ModeGeneric:
		return "generic"
	}
	return "unknown"
}

// Config says what to steer.
type Config struct {
	// Interface is the name of the interface that carries Addrs.
	Interface string
	// Addrs are the local IPv4 addresses whose UDP port Port is served
	// (1 to 16, each configured on Interface).
	Addrs []netip.Addr
	// Port is the UDP port; 0 means DefaultPort.
	Port uint16
	// Mode is how the program attaches; ModeAuto by default.
	Mode Mode
	// CopyOnly keeps the sockets in copy mode even where the driver offers
	// zero-copy.
	CopyOnly bool
	// Queues caps how many receive queues get a socket (a Conn each),
	// starting at queue 0; 0 means all of them. Frames that arrive on a
	// queue without a socket go to the kernel socket of a Conn instead.
	Queues int
	// Frames is the number of UMEM frames of 2 KiB per Conn, a power of
	// two: half receive, half send, and each ring holds half. 0 means
	// 4096 (8 MiB per Conn).
	Frames int
	// HopTTL is how long a resolved next hop is used before the kernel
	// is asked again (and one datagram goes through the kernel socket,
	// which makes the kernel confirm its neighbour entry); 0 means 5 s.
	HopTTL time.Duration
	// MaxHops bounds the next-hop cache (destinations); 0 means 65536.
	MaxHops int
	// NoUDPChecksum sends datagrams with a zero UDP checksum, which
	// RFC 768 allows over IPv4, instead of computing it.
	NoUDPChecksum bool
}

// Defaults of Config.
const (
	defaultFrames  = 4096
	defaultHopTTL  = 5 * time.Second
	defaultMaxHops = 65536
)

// Message is one datagram, as pkg/udpio's, plus the local address.
type Message struct {
	// Buf holds the datagram. ReadBatch copies the payload into
	// Buf[:len(Buf)]; WriteBatch sends Buf[:N].
	Buf []byte
	// N is the datagram's length: set by ReadBatch, read by WriteBatch.
	N int
	// Addr is the peer: the source after ReadBatch, the destination for
	// WriteBatch. Always IPv4.
	Addr netip.AddrPort
	// Local is our address: the one the datagram was sent to after
	// ReadBatch, the one to send from for WriteBatch (one of
	// Config.Addrs; the zero Addr means the first).
	Local netip.Addr
	// Truncated is set by ReadBatch when the datagram was longer than
	// Buf, which then holds its first N bytes.
	Truncated bool
}

// Stats are counters of one Conn since it was opened. They only grow.
type Stats struct {
	// Queue is the receive queue the Conn serves, and ZeroCopy whether its
	// socket is in zero-copy mode.
	Queue    int
	ZeroCopy bool

	// ReadCalls counts ReadBatch calls that returned datagrams, and
	// ReadDatagrams the datagrams, both paths together.
	ReadCalls, ReadDatagrams uint64
	// KernelReads counts datagrams that came through the kernel socket:
	// those the program passed (fragments, IP options, frames too long
	// for a UMEM frame, a queue without a socket).
	KernelReads uint64
	// Truncated counts datagrams longer than the buffer given for them.
	Truncated uint64
	// RXDropped counts frames from the ring that were not handed over, by
	// reason.
	RXDropped [NumRXDrops]uint64

	// WriteDatagrams counts datagrams sent, both paths together;
	// TXFrames those sent through the TX ring and TXKicks the sendto
	// calls that asked the kernel to send them.
	WriteDatagrams, TXFrames, TXKicks uint64
	// KernelSends counts datagrams sent through the kernel socket, by
	// reason: no next hop known (yet), a route through another interface
	// or to a non-unicast destination (counted with NoHop), too long for
	// a frame or the link MTU, no free TX frame.
	KernelSendsNoHop, KernelSendsTooLong, KernelSendsRingFull uint64
	// WriteErrors counts datagrams refused (not IPv4, bad length, a local
	// address not ours, a kernel send that failed).
	WriteErrors uint64

	// The socket's own counters (XDP_STATISTICS): frames dropped by the
	// kernel because the RX ring was full or no fill-ring frame was
	// free, and invalid descriptors.
	RingRXDropped, RingRXFull, RingFillEmpty, RingRXInvalid, RingTXInvalid, RingTXEmpty uint64
}

// Errors.
var (
	// ErrNotIPv4 is wrapped by errors for addresses that are not IPv4.
	ErrNotIPv4 = errors.New("not an IPv4 address")
	// ErrNotLocal is wrapped by errors for a Message.Local that is not
	// one of the Conn's addresses.
	ErrNotLocal = errors.New("not one of the steered addresses")
)

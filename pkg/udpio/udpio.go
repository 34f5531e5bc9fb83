// SPDX-License-Identifier: MIT

// Package udpio moves IPv4 UDP datagrams in batches. It is the one place in
// the tree that knows recvmmsg/sendmmsg, socket options and SO_REUSEPORT; the
// Teredo server, relay and client all send and receive through a [Conn].
//
// # Contracts
//
// Buffers: the caller owns every Message and every Buf. A Conn never keeps a
// reference to them after ReadBatch or WriteBatch returns, so the caller may
// reuse them at once. ReadBatch reads into Buf[:len(Buf)] (not its capacity);
// a caller that needs headroom in front of a datagram (the server prepends an
// 8-byte origin indication when it forwards) slices Buf out of a larger array.
//
// Batch size: one ReadBatch fills at most [MaxBatch] messages, however long
// msgs is. WriteBatch takes any number and sends them MaxBatch at a time.
//
// Concurrency: ReadBatch, WriteBatch, LocalAddr, Stats and Close may all be
// called from different goroutines at once. Concurrent calls of ReadBatch are
// serialised (they share one set of kernel headers), and so are concurrent
// calls of WriteBatch; to read in parallel, use several sockets
// ([ListenGroup]), one goroutine each.
//
// Shutdown: Close unblocks a pending ReadBatch or WriteBatch. After Close,
// both return an error for which errors.Is(err, net.ErrClosed) is true, which
// is how read loops tell a shutdown from a failure. Any other error from
// ReadBatch is about that one call: the socket is still usable.
//
// Allocation: on success, ReadBatch and WriteBatch allocate nothing, on the
// batch path and on the NoBatch path alike, with or without offloads (the
// tests check it). Errors do allocate.
//
// # Segmentation offload
//
// A relay or client relaying a TCP stream sends bursts of equal-sized
// datagrams to one peer and receives bursts from one peer. On Linux, two
// opt-in [Options] let such bursts cross the kernel's UDP stack once instead
// of once per datagram; callers still see one datagram per Message:
//
//   - GSO (UDP_SEGMENT, Linux ≥ 4.18): WriteBatch sends each run of
//     consecutive messages to the same destination, all the same length but
//     the last, which may be shorter, as one sendmmsg entry whose iovecs
//     point at the caller's buffers (no copy); the kernel, or the NIC, cuts
//     it into the original datagrams. If the kernel refuses such a send,
//     the run is sent again datagram by datagram and, if that works, the
//     Conn adapts for the rest of its life (Stats.GSOFallbacks): after
//     EMSGSIZE (a segment longer than the device MTU; plain datagrams get
//     fragmented instead, DF being off) it coalesces only shorter
//     segments, after EIO or EINVAL (no checksum offload, IPsec, an old
//     kernel) it turns GSO off (Stats.GSO).
//   - GRO (UDP_GRO, Linux ≥ 5.12): the kernel may hand ReadBatch several
//     datagrams of one sender as one read, with their segment size, and
//     ReadBatch splits it into consecutive Messages. Each read lands in the
//     caller's buffer (its first 2 KiB) with a 64 KiB spill region of the
//     Conn's behind it, so a datagram the kernel did not coalesce costs
//     nothing extra; a coalesced one is copied out a segment per Message.
//     What does not fit in msgs stays queued in the Conn and the next
//     ReadBatch returns it without a system call. The spill regions take
//     4.1 MiB per Conn (touched only as far as coalesced reads reach).
//
// Both are off in the zero Options: a server answering many peers, one
// datagram each, gains nothing from them and GRO costs memory. NoBatch turns
// both off. Off Linux they are ignored.
//
// Measured on loopback (BenchmarkLoopback*, 2-vCPU VM shared with other
// work, 1200-byte datagrams to one peer, CPU time per datagram for sender
// and receiver together, three runs each, 2026-11): batch 4.9–6.2 µs, GSO
// 1.4–1.7 µs (about 3.5× less), GRO alone 5.0–5.1 µs (no cost, and nothing
// to coalesce: loopback keeps only GSO sends whole), GSO and GRO 0.5–0.6 µs
// (about 10× less). Wall time per datagram moves the same way.
//
// Platforms: the batch path and the socket options are Linux-only. Elsewhere
// a Conn moves one datagram per system call, cannot share a port, and leaves
// the DF bit and SO_BROADCAST as the system and Go's net package set them.
package udpio

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"
)

// MaxBatch is the largest number of datagrams one ReadBatch returns and one
// recvmmsg/sendmmsg moves. 64 messages of 2 KiB (a Teredo datagram without
// GRO fits in that) are 128 KiB per read loop. Measured on these 2-vCPU
// machines with small request/reply datagrams, batches of 8 already gave
// most of the gain (+15-35 % per core over one datagram per call) and 64
// little more; the kernel also caps a UDP GSO run at 64 segments.
const MaxBatch = 64

// Options tune a socket. The zero value is a plain socket with the kernel's
// default buffers, batching on.
type Options struct {
	// ReusePort sets SO_REUSEPORT, so that several sockets (one per core)
	// can bind the same address and port; the kernel then spreads incoming
	// datagrams over them by a hash of the 4-tuple, so one peer always lands
	// on the same socket. ListenGroup sets it itself.
	ReusePort bool

	// RecvBuffer and SendBuffer are the socket buffer sizes in bytes, or 0
	// for the kernel's default. SO_RCVBUFFORCE/SO_SNDBUFFORCE are tried
	// first (they need CAP_NET_ADMIN and ignore net.core.rmem_max), then the
	// plain options, which the kernel silently caps at rmem_max/wmem_max.
	// Stats reports what the kernel granted, so callers can warn.
	RecvBuffer, SendBuffer int

	// NoBatch turns recvmmsg/sendmmsg off: one recvmsg/sendto per datagram.
	// It is a kill switch for kernels or sandboxes that refuse the batch
	// calls, and the baseline for benchmarks. It also turns GSO and GRO
	// off.
	NoBatch bool

	// GSO lets WriteBatch send runs of equal-sized datagrams to one
	// destination as one UDP_SEGMENT send (see "Segmentation offload" in
	// the package doc). Ignored where the kernel lacks UDP_SEGMENT; check
	// Stats.GSO.
	GSO bool

	// RawSyscalls makes the batch calls (recvmmsg, sendmmsg, and sendto
	// for a batch of one, all with MSG_DONTWAIT, so they never wait, and
	// the waits of BlockingReads) without telling the Go scheduler
	// that a system call is under way (RawSyscall instead of Syscall).
	// Normally a call that runs longer than 20 µs, as a sendmmsg does that
	// delivers its datagrams on a veth or a loopback inside the call, has
	// its P taken by sysmon and handed to another thread, which wakes a
	// spinning thread and keeps sysmon polling every 20 µs; for a server
	// whose loops spend most of their time in such calls, that was 7-10 %
	// of its CPU (issue 14). With RawSyscalls the loop keeps its P for the
	// call, as a C program keeps its CPU; the price is that other
	// goroutines of that P, and a stop-the-world, wait for the call (at
	// most one batch, well under a millisecond). For processes with one
	// busy loop per core and little else; waiting for data still goes
	// through the netpoller, unless BlockingReads. Ignored off Linux and with NoBatch.
	RawSyscalls bool

	// BlockingReads makes ReadEach wait for datagrams inside recvmmsg
	// itself, its thread asleep in the kernel as a C server's is, instead
	// of in Go's netpoller; the socket is opened in blocking mode and kept
	// out of the poller. Below saturation a loop wakes for every datagram
	// or two, and through the netpoller each wake-up cost more than
	// answering: epoll_wait returns on the poller's thread, the goroutine
	// gets a P, parks again, and its thread spins looking for work before
	// it sleeps (issue 14: 1.25 µs of user time per datagram at a quarter
	// of the server's peak, three times Miredo's; 0.6-0.75 µs this way).
	// With RawSyscalls the loop also keeps its P while it waits, so that
	// sysmon finds no P in a system call to take and hand over at every
	// wait longer than 20 µs; the runtime's preemption signal interrupts
	// the wait (SO_RCVTIMEO makes it return EINTR) and ReadEach yields.
	// Either way, give the process one P more than it has such loops
	// (GOMAXPROCS) for its other goroutines. After a wait that found one
	// datagram, ReadEach reads the next few singly (recvfrom), which costs
	// the kernel less than a recvmmsg that finds the queue empty after the
	// first; see lightSingles. ReadBatch and WriteBatch keep their meaning;
	// Close wakes a waiting read. Ignored with NoBatch or GRO, and off
	// Linux.
	BlockingReads bool

	// Coalesce, with BlockingReads, lets ReadEach sleep up to this long
	// after handing over a batch that emptied the queue, and then read
	// what came meanwhile as one batch. A loop that wakes for each
	// datagram pays a wake-up and two system calls per datagram, which
	// below saturation is a third of a server's CPU per answer (issue
	// 14); coalesced, a dozen datagrams share them, and each waits at
	// most this long (plus the kernel's timer slack). ReadEach sleeps
	// only while its sleeps gather two datagrams or more, sizing each to
	// gather about sixteen; an idle or lightly used loop reads each
	// datagram as soon as it comes. Stats.Sleeps counts the sleeps. Close
	// ends ReadEach once a sleep under way is over, so callers bound
	// Coalesce (the server at 10 ms). 0 never sleeps; ignored where
	// BlockingReads is (NoBatch, GRO, off Linux).
	Coalesce time.Duration

	// GRO turns UDP_GRO on, so that the kernel may deliver a burst from one
	// sender as one read, which ReadBatch splits again (see "Segmentation
	// offload" in the package doc). It costs 4.1 MiB of spill buffers per
	// Conn and a copy per datagram that arrived coalesced. Ignored on
	// kernels before 5.12; check Stats.GRO.
	GRO bool
}

// Message is one datagram.
type Message struct {
	// Buf holds the datagram. ReadBatch reads into Buf[:len(Buf)];
	// WriteBatch sends Buf[:N].
	Buf []byte
	// N is the datagram's length: set by ReadBatch, read by WriteBatch.
	N int
	// Addr is the peer: the source after ReadBatch, the destination for
	// WriteBatch. Always IPv4 (an IPv4-mapped IPv6 destination is accepted
	// and unmapped).
	Addr netip.AddrPort
	// Truncated is set by ReadBatch when the datagram was longer than Buf:
	// Buf[:N] then holds only its first N bytes, and callers normally drop
	// it. Stats counts these too.
	Truncated bool
}

// NewMessages returns n messages for ReadBatch, each with a buffer of size
// bytes carved from one allocation, a read loop's buffers for its whole
// life. Each buffer's capacity ends where the next begins.
func NewMessages(n, size int) []Message {
	msgs := make([]Message, n)
	backing := make([]byte, n*size)
	for i := range msgs {
		msgs[i].Buf = backing[i*size : (i+1)*size : (i+1)*size]
	}
	return msgs
}

// PacketConn is a batched datagram socket as the daemons' loops use it:
// a *Conn, or a fake in their tests.
type PacketConn interface {
	// ReadBatch blocks until at least one datagram arrives and reads up to
	// len(msgs); it returns an error wrapping net.ErrClosed once closed.
	ReadBatch(msgs []Message) (int, error)
	// WriteBatch sends msgs[i].Buf[:N] to msgs[i].Addr and returns how
	// many were sent.
	WriteBatch(msgs []Message) (int, error)
	LocalAddr() netip.AddrPort
	Close() error
}

var _ PacketConn = (*Conn)(nil)

// Stats are counters of one socket since it was opened. They only grow.
type Stats struct {
	// ReadCalls counts receive system calls that returned datagrams, and
	// ReadDatagrams the datagrams they returned; their ratio is the mean
	// batch size.
	ReadCalls, ReadDatagrams uint64
	// Truncated counts datagrams longer than the buffer given for them.
	Truncated uint64
	// WriteCalls counts send system calls that sent datagrams, and
	// WriteDatagrams the datagrams they sent.
	WriteCalls, WriteDatagrams uint64
	// WriteErrors counts datagrams the kernel or WriteBatch refused
	// (unreachable network, firewall, non-IPv4 destination, ...).
	WriteErrors uint64
	// Drops counts datagrams the kernel dropped for this socket before we
	// read them, mostly because its receive queue was full (the socket's
	// sk_drops, the "drops" column of /proc/net/udp). 0 where unknown.
	Drops uint64
	// RecvBuffer and SendBuffer are the buffer sizes the kernel granted, as
	// getsockopt reports them (Linux doubles the requested value to leave
	// room for its bookkeeping). 0 where unknown.
	RecvBuffer, SendBuffer int

	// GSO and GRO say whether each offload is in effect now: asked for in
	// Options, supported by the kernel and, for GSO, not given up after a
	// refusal.
	GSO, GRO bool
	// GSOSends counts UDP_SEGMENT sends that went out, and GSOSegments the
	// datagrams they carried (also counted in WriteDatagrams); their ratio
	// is the mean run length.
	GSOSends, GSOSegments uint64
	// GSOFallbacks counts the times the kernel refused a UDP_SEGMENT send
	// that it then accepted as plain datagrams. Each lowers the largest
	// segment GSO may carry or, mostly, turns GSO off, so it stays small.
	GSOFallbacks uint64
	// GROReads counts datagrams the kernel delivered coalesced (more than
	// one datagram in one read), and GROSegments the datagrams inside them
	// (also counted in ReadDatagrams).
	GROReads, GROSegments uint64
	// Sleeps counts the sleeps of a ReadEach with Options.Coalesce, each
	// once the read after it has returned: with ReadCalls and
	// ReadDatagrams it shows how often a loop coalesces and what that
	// gathers.
	Sleeps uint64
}

// ErrNotIPv4 is wrapped by errors for addresses that are not IPv4: Teredo
// runs over IPv4 only (RFC 4380 §2.2).
var ErrNotIPv4 = errors.New("not an IPv4 address")

// GroupSize is a good socket count for ListenGroup: one per usable core (it
// follows GOMAXPROCS, which honours cgroup CPU limits, rather than NumCPU),
// at most MaxGroup.
func GroupSize() int {
	return min(runtime.GOMAXPROCS(0), MaxGroup)
}

// ListenGroup opens n sockets bound to the same address and port with
// SO_REUSEPORT (set whatever opt says), so that n goroutines can each read
// their own socket. If addr's port is 0 the first socket picks an ephemeral
// port and the others join it. n is capped at MaxGroup, which is 1 off
// Linux. It returns all n sockets or none: on error every socket opened so
// far is closed.
func ListenGroup(addr netip.AddrPort, n int, opt Options) ([]*Conn, error) {
	return listenGroup(addr, n, opt, Listen)
}

// listenGroup is ListenGroup with the socket opener as a parameter, so a
// test can make a later socket fail.
func listenGroup(addr netip.AddrPort, n int, opt Options, listen func(netip.AddrPort, Options) (*Conn, error)) ([]*Conn, error) {
	if n < 1 {
		return nil, fmt.Errorf("udpio: listen group on %v: need at least 1 socket, got %d", addr, n)
	}
	n = min(n, MaxGroup)
	opt.ReusePort = n > 1 || opt.ReusePort
	first, err := listen(addr, opt)
	if err != nil {
		return nil, err
	}
	conns := make([]*Conn, 1, n)
	conns[0] = first
	bound := first.LocalAddr() // the port the first one got, if addr's was 0
	for len(conns) < n {
		c, err := listen(bound, opt)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("udpio: listen group socket %d of %d: %w", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// checkListenAddr returns addr with its address unmapped, or an error if it
// is not an IPv4 address.
func checkListenAddr(addr netip.AddrPort) (netip.AddrPort, error) {
	ip := addr.Addr().Unmap()
	if !ip.Is4() {
		return netip.AddrPort{}, fmt.Errorf("udpio: listen on %v: %w", addr, ErrNotIPv4)
	}
	return netip.AddrPortFrom(ip, addr.Port()), nil
}

// sendable checks one outgoing message and returns its payload and its
// destination, unmapped.
func sendable(m *Message) ([]byte, netip.AddrPort, error) {
	if m.N < 0 || m.N > len(m.Buf) {
		return nil, netip.AddrPort{}, fmt.Errorf("udpio: send to %v: length %d outside buffer of %d bytes", m.Addr, m.N, len(m.Buf))
	}
	ip := m.Addr.Addr().Unmap()
	if !ip.Is4() {
		return nil, netip.AddrPort{}, fmt.Errorf("udpio: send to %v: %w", m.Addr, ErrNotIPv4)
	}
	return m.Buf[:m.N], netip.AddrPortFrom(ip, m.Addr.Port()), nil
}

// counters are the live form of Stats, updated without locks.
type counters struct {
	readCalls, readDatagrams, truncated     atomic.Uint64
	writeCalls, writeDatagrams, writeErrors atomic.Uint64
	gsoSends, gsoSegments, gsoFallbacks     atomic.Uint64
	groReads, groSegments                   atomic.Uint64
	sleeps                                  atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		ReadCalls:      c.readCalls.Load(),
		ReadDatagrams:  c.readDatagrams.Load(),
		Truncated:      c.truncated.Load(),
		WriteCalls:     c.writeCalls.Load(),
		WriteDatagrams: c.writeDatagrams.Load(),
		WriteErrors:    c.writeErrors.Load(),
		GSOSends:       c.gsoSends.Load(),
		GSOSegments:    c.gsoSegments.Load(),
		GSOFallbacks:   c.gsoFallbacks.Load(),
		GROReads:       c.groReads.Load(),
		GROSegments:    c.groSegments.Load(),
		Sleeps:         c.sleeps.Load(),
	}
}

// Limits of one UDP GSO send.
const (
	// maxGSOSegments is the kernel's UDP_MAX_SEGMENTS as of Linux 4.18
	// (later kernels allow more; 64 is also MaxBatch).
	maxGSOSegments = 64
	// maxUDPPayload is the largest IPv4 UDP payload: 65535 minus 20 bytes
	// of IPv4 header and 8 of UDP header. A GSO send carries all its
	// segments in one such payload.
	maxUDPPayload = 65535 - 20 - 8
)

// gsoRun returns how many messages, from msgs[0] on, one UDP GSO send can
// carry: consecutive messages to msgs[0]'s destination (compared unmapped)
// whose length is msgs[0].N, at most maxSize, except the last, which may be
// shorter but not empty, at most maxSegs of them and maxUDPPayload bytes in
// all. msgs[0] must be sendable. 1 means "send it alone".
func gsoRun(msgs []Message, maxSegs, maxSize int) int {
	size := msgs[0].N
	if size == 0 || size > maxSize {
		return 1 // a GSO segment size of 0 means "no segmentation"
	}
	dst := unmapped(msgs[0].Addr)
	total, n := size, 1
	for n < len(msgs) && n < maxSegs {
		m := &msgs[n]
		if m.N <= 0 || m.N > size || m.N > len(m.Buf) || total+m.N > maxUDPPayload || unmapped(m.Addr) != dst {
			break
		}
		total += m.N
		n++
		if m.N < size {
			break // a short segment can only be the last
		}
	}
	return n
}

// unmapped returns ap with its address unmapped (::ffff:a.b.c.d to
// a.b.c.d).
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// readEachBatch is ReadEach as a loop around read (ReadBatch), for the
// paths that cannot stay inside one wait.
func readEachBatch(read func([]Message) (int, error), msgs []Message, handle func(n int) error) error {
	for {
		n, err := read(msgs)
		if err != nil {
			return err
		}
		if err := handle(n); err != nil {
			return err
		}
	}
}

// SPDX-License-Identifier: MIT

package server

import (
	"runtime"
	"sync"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// socketCounts is how many SO_REUSEPORT sockets each server address gets
// (n) and to how many of them datagrams go at first (narrow; see
// steering). With Config.Sockets set, that many, all used. By default one
// per usable core, steered to one per two cores (at least one) while the
// loops keep up: every datagram the server answers costs as much kernel
// time outside the loops as inside them (the receive path in softirq, the
// send path finishing on the wire), so below saturation loops on every core
// only compete with that work and wake for fewer datagrams each, while at
// saturation a second loop per address takes a second core's share.
// With NoBatch every read is one datagram, so batches cannot say when the
// loops fall behind: one per two cores, all used, as before steering.
func socketCounts(set int, noBatch bool) (n, narrow int) {
	if set > 0 {
		return set, set
	}
	cores := min(max(runtime.GOMAXPROCS(0), 1), udpio.MaxGroup)
	if noBatch {
		return max(cores/2, 1), max(cores/2, 1)
	}
	return cores, max(cores/2, 1)
}

// socketOptions are the options of the server's UDP sockets.
//
// RawSyscalls: the loops spend most of their time in sendmmsg, and on a
// veth or a fast NIC driver a batch takes tens to hundreds of
// microseconds in the kernel; as ordinary system calls, sysmon took the
// loop's P during each one and handed it to a fresh spinning thread, and
// stayed awake every 20 µs doing so: 7-10 % of the server's CPU in
// perf(1) profiles (runtime.sysmon, runtime.usleep, handoffp/startm), which
// is most of what the server spent beyond Miredo's single-threaded loop.
// The batch calls never wait (MSG_DONTWAIT); a loop waits for data only
// in its own recvmmsg (see BlockingReads below).
//
// BlockingReads: below saturation each loop wakes for a datagram or two,
// and a wake-up through Go's netpoller cost more user time than answering
// (issue 14); waiting in recvmmsg costs what it costs Miredo's loop.
// spareProcs gives those waits the P they need.
//
// Coalesce (--coalesce): a loop that still wakes for each datagram at a
// quarter of the peak rate spends a third of its CPU per answer on the
// wake-up and the two system calls around each datagram; sleeping up to
// cfg.Coalesce after a batch answers a dozen per wake-up instead (the
// answers wait that long at most, only while solicitations keep coming).
func socketOptions(cfg Config) udpio.Options {
	return udpio.Options{ReusePort: true, RecvBuffer: 4 << 20, SendBuffer: 4 << 20, NoBatch: cfg.NoBatch,
		RawSyscalls: true, BlockingReads: true, Coalesce: cfg.Coalesce}
}

// spareProcs raises GOMAXPROCS to one more than the socket loops, which
// wait in system calls (udpio.Options.BlockingReads): with a P idle, the
// runtime leaves a waiting loop's P alone; with none, sysmon takes it
// after 20 µs to run other goroutines, and does so on every wait. A P is
// only a scheduling slot: the loops are asleep in the kernel most of the
// time, and the process still runs no more threads at once than it has
// work for.
func spareProcs(loops int) {
	if loops > 0 && runtime.GOMAXPROCS(0) <= loops {
		runtime.GOMAXPROCS(loops + 1)
	}
}

// eachReader is a socket that hands batches over in one call
// (udpio.Conn.ReadEach), which after a batch that emptied the queue waits
// for more instead of reading nothing: below saturation, where the loops
// wake for a datagram or two, that is one system call in three saved.
type eachReader interface {
	ReadEach(msgs []udpio.Message, handle func(n int) error) error
}

// closeConns closes the sockets all at once. A loop handles its batches
// inside ReadEach, and closing its socket waits for that to return; one
// socket's loop may be writing to the other address's socket, blocked
// while that socket's buffer is full, until it too is closed: closed one
// after the other, the first Close could wait for the second forever.
func closeConns(conns [2][]udpio.PacketConn) {
	var wg sync.WaitGroup
	for _, cs := range conns {
		for _, c := range cs {
			wg.Go(func() { c.Close() })
		}
	}
	wg.Wait()
}

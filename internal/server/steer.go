// SPDX-License-Identifier: MIT

package server

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// Steering the load over an address's sockets (the default socket count).
//
// Below saturation, one loop per two cores answers for less CPU per
// datagram than one per core: each loop wakes for fewer datagrams when the
// load is split, its batches shrink, and the loops' threads take turns with
// the kernel's work on the same cores (issue 14: two sockets per address
// cost 10-18 % more per answer at a quarter of the peak). At saturation the
// opposite holds: a single loop's thread gets one thread's share of the
// CPU, and on a small machine that shares its cores with other work (the
// lab's load generator, the kernel's delivery) that share was 0.67-0.8 of a
// core, with hundreds of datagrams waiting in its socket. So a server opens
// a socket per core but steers the datagrams (udpio.Steer) to the first
// half while its loops keep up, and to all of them while they do not.
//
// What says a loop does not keep up is the size of its batches: a loop that
// keeps up reads what came since its last read, a few datagrams, or about
// 16 when it coalesces (--coalesce); one that falls behind finds its queue
// longer than a batch at every read. Every steerEvery the server looks at
// the last interval's reads of each address: spread wider when they
// averaged widenBatch datagrams or more, narrower when they averaged less
// than narrowBatch (the wide spread's loops then each wake for a few).
const (
	steerEvery  = 100 * time.Millisecond
	widenBatch  = 48
	narrowBatch = 8
)

// nextActive is the number of sockets to steer to after an interval in
// which the active ones read datagrams in calls system calls.
func nextActive(active, narrow, wide int, calls, datagrams uint64) int {
	switch {
	case active < wide && calls > 0 && datagrams >= widenBatch*calls:
		return wide
	case active > narrow && (calls == 0 || datagrams < narrowBatch*calls):
		return narrow
	}
	return active
}

// steering is the spread of each server address's sockets.
type steering struct {
	narrow int
	addrs  [2]steered
	log    *slog.Logger
	// widened counts the times an address's spread went wide.
	widened atomic.Uint64
}

// steered is one address's socket group.
type steered struct {
	conns           []*udpio.Conn
	active          atomic.Int64
	calls, datagram uint64 // totals at the last look
}

// newSteering steers each address's sockets to the first narrow, or
// returns nil where there is nothing to steer: a group no larger than
// narrow (--sockets, one core), or sockets that are not udpio's.
func newSteering(conns [2][]udpio.PacketConn, narrow int, log *slog.Logger) *steering {
	if narrow <= 0 || len(conns[0]) <= narrow {
		return nil
	}
	st := &steering{narrow: narrow, log: log}
	for via, cs := range conns {
		a := &st.addrs[via]
		for _, c := range cs {
			uc, ok := c.(*udpio.Conn)
			if !ok {
				return nil
			}
			a.conns = append(a.conns, uc)
		}
		if err := udpio.Steer(a.conns[0], narrow); err != nil {
			// The kernel spreads over all of them, as before steering.
			log.Warn("cannot steer datagrams over the sockets; using all of them", "err", err)
			return nil
		}
		a.active.Store(int64(narrow))
		a.calls, a.datagram = a.reads()
	}
	return st
}

// reads sums the read system calls and datagrams of the address's sockets.
func (a *steered) reads() (calls, datagrams uint64) {
	for _, c := range a.conns {
		s := c.Stats()
		calls += s.ReadCalls
		datagrams += s.ReadDatagrams
	}
	return calls, datagrams
}

// look is the periodic check: it widens or narrows each address's spread
// as the last interval's batches say.
func (st *steering) look() error {
	for via := range st.addrs {
		a := &st.addrs[via]
		calls, datagrams := a.reads()
		dc, dd := calls-a.calls, datagrams-a.datagram
		a.calls, a.datagram = calls, datagrams
		active := int(a.active.Load())
		next := nextActive(active, st.narrow, len(a.conns), dc, dd)
		if next == active {
			continue
		}
		if err := udpio.Steer(a.conns[0], next); err != nil {
			st.log.Warn("cannot change the spread of datagrams over the sockets", "addr", a.conns[0].LocalAddr(), "err", err)
			continue
		}
		a.active.Store(int64(next))
		if next > active {
			st.widened.Add(1)
		}
		st.log.Debug("datagrams steered over more or fewer sockets", "addr", a.conns[0].LocalAddr(),
			"sockets", next, "mean_batch", float64(dd)/float64(max(dc, 1)))
	}
	return nil
}

// inUse is how many of the primary address's sockets take datagrams.
func (st *steering) inUse() int {
	if st == nil {
		return 0
	}
	return int(st.addrs[0].active.Load())
}

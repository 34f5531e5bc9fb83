// SPDX-License-Identifier: MIT

package server

import (
	"errors"
	"log/slog"
	"net"
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
// the last interval's reads of each socket in use, and spreads wider when
// any of them averaged widenBatch datagrams or more. It narrows again when
// every socket averaged fewer than narrowBatch, or when the address's rate
// stayed below narrowShare of what the narrow spread carried when it
// widened (its capacity) for narrowAfter intervals in a row: coalescing
// loops gather about 16 per read at any rate, so batches alone would keep
// the spread wide at half the load after one burst of saturation.
const (
	steerEvery  = 100 * time.Millisecond
	widenBatch  = 48
	narrowBatch = 8
	narrowShare = 0.6
	narrowAfter = 3
)

// interval is what the sockets of one address read in one interval.
type interval struct {
	datagrams uint64 // by all the address's sockets
	fullest   uint64 // the largest mean batch of a socket in use
	heaviest  uint64 // the largest mean batch of any socket
}

// spread is an address's steering state: the sockets in use, the rate the
// narrow spread carried when it last widened, and how many intervals in a
// row the rate has stayed below narrowShare of that.
type spread struct {
	active, narrow, wide int
	capacity             uint64
	low                  int
}

// next is the spread after an interval.
func (sp spread) next(iv interval) spread {
	switch {
	case sp.active < sp.wide && iv.fullest >= widenBatch:
		sp.active, sp.capacity, sp.low = sp.wide, iv.datagrams, 0
	case sp.active > sp.narrow && iv.heaviest < narrowBatch:
		sp.active, sp.low = sp.narrow, 0
	case sp.active > sp.narrow && float64(iv.datagrams) < narrowShare*float64(sp.capacity):
		if sp.low++; sp.low >= narrowAfter {
			sp.active, sp.low = sp.narrow, 0
		}
	default:
		sp.low = 0
	}
	return sp
}

// steering is the spread of each server address's sockets.
type steering struct {
	addrs [2]steered
	log   *slog.Logger
	// widened counts the times an address's spread went wide.
	widened atomic.Uint64
}

// steered is one address's socket group.
type steered struct {
	conns  []*udpio.Conn
	sp     spread       // only look touches it
	active atomic.Int64 // sp.active, for status
	// Each socket's read calls and datagrams at the last look.
	calls, datagrams []uint64
	failed           bool // the last change failed (logged once)
}

// newSteering steers each address's sockets to the first narrow, or
// returns nil where there is nothing to steer: a group no larger than
// narrow (--sockets, one core), or sockets that are not udpio's.
func newSteering(conns [2][]udpio.PacketConn, narrow int, log *slog.Logger) *steering {
	if narrow <= 0 || len(conns[0]) <= narrow {
		return nil
	}
	st := &steering{log: log}
	for via, cs := range conns {
		for _, c := range cs {
			uc, ok := c.(*udpio.Conn)
			if !ok {
				return nil
			}
			st.addrs[via].conns = append(st.addrs[via].conns, uc)
		}
	}
	for via := range st.addrs {
		a := &st.addrs[via]
		if err := udpio.Steer(a.conns[0], narrow); err != nil {
			// The kernel spreads over all of them, as before steering.
			log.Warn("cannot steer datagrams over the sockets; using all of them", "err", err)
			for i := range via { // back to the kernel's spread
				_ = udpio.Steer(st.addrs[i].conns[0], len(st.addrs[i].conns))
			}
			return nil
		}
		a.sp = spread{active: narrow, narrow: narrow, wide: len(a.conns)}
		a.active.Store(int64(narrow))
		a.calls, a.datagrams = make([]uint64, len(a.conns)), make([]uint64, len(a.conns))
		a.measure()
	}
	return st
}

// measure returns the reads since the last call.
func (a *steered) measure() interval {
	var iv interval
	for i, c := range a.conns {
		s := c.Stats()
		dc, dd := s.ReadCalls-a.calls[i], s.ReadDatagrams-a.datagrams[i]
		a.calls[i], a.datagrams[i] = s.ReadCalls, s.ReadDatagrams
		iv.datagrams += dd
		mean := dd / max(dc, 1)
		iv.heaviest = max(iv.heaviest, mean)
		if i < a.sp.active {
			iv.fullest = max(iv.fullest, mean)
		}
	}
	return iv
}

// look is the periodic check: it widens or narrows each address's spread
// as the last interval's reads say.
func (st *steering) look() error {
	for via := range st.addrs {
		a := &st.addrs[via]
		iv := a.measure()
		next := a.sp.next(iv)
		if next.active != a.sp.active {
			if err := udpio.Steer(a.conns[0], next.active); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil // shutting down
				}
				if !a.failed {
					st.log.Warn("cannot change the spread of datagrams over the sockets", "addr", a.conns[0].LocalAddr(), "err", err)
				}
				a.failed = true
				continue
			}
			a.failed = false
			if next.active > a.sp.active {
				st.widened.Add(1)
			}
			st.log.Debug("datagrams steered over more or fewer sockets", "addr", a.conns[0].LocalAddr(),
				"sockets", next.active, "datagrams", iv.datagrams, "fullest_batch", iv.fullest)
			a.active.Store(int64(next.active))
		}
		a.sp = next
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

// SPDX-License-Identifier: MIT

//go:build linux

package server

import (
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/udpio"
)

func TestSpread(t *testing.T) {
	narrow := spread{active: 1, narrow: 1, wide: 2}
	wide := spread{active: 2, narrow: 1, wide: 2, capacity: 10000}
	low := func(sp spread, n int) spread { sp.low = n; return sp }
	for _, tc := range []struct {
		name string
		sp   spread
		iv   interval
		want spread
	}{
		{"idle stays narrow", narrow, interval{}, narrow},
		{"coalescing batches stay narrow", narrow, interval{datagrams: 3000, fullest: 16, heaviest: 16}, narrow},
		{"just below the widening batch", narrow, interval{datagrams: 9000, fullest: widenBatch - 1, heaviest: widenBatch - 1}, narrow},
		{"full batches widen, the rate kept", narrow, interval{datagrams: 12000, fullest: 64, heaviest: 64},
			spread{active: 2, narrow: 1, wide: 2, capacity: 12000}},
		{"a full socket outside the spread does not widen", narrow, interval{datagrams: 500, fullest: 4, heaviest: 64}, narrow},
		{"widen all of a larger group", spread{active: 2, narrow: 2, wide: 4}, interval{datagrams: 640, fullest: 60, heaviest: 60},
			spread{active: 4, narrow: 2, wide: 4, capacity: 640}},
		{"saturated wide stays wide", low(wide, 2), interval{datagrams: 11000, fullest: 64, heaviest: 64}, wide},
		{"one light socket does not narrow", wide, interval{datagrams: 9000, fullest: 64, heaviest: 64}, wide},
		{"light batches narrow at once", wide, interval{datagrams: 9000, fullest: narrowBatch - 1, heaviest: narrowBatch - 1},
			spread{active: 1, narrow: 1, wide: 2, capacity: 10000}},
		{"idle wide narrows", wide, interval{}, spread{active: 1, narrow: 1, wide: 2, capacity: 10000}},
		{"a lower rate counts", wide, interval{datagrams: 5000, fullest: 16, heaviest: 16}, low(wide, 1)},
		{"a lower rate for long narrows", low(wide, narrowAfter-1), interval{datagrams: 5000, fullest: 16, heaviest: 16},
			spread{active: 1, narrow: 1, wide: 2, capacity: 10000}},
		{"the rate back up resets the count", low(wide, 2), interval{datagrams: 7000, fullest: 16, heaviest: 16}, wide},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.sp.next(tc.iv); got != tc.want {
				t.Errorf("%+v.next(%+v) = %+v, want %+v", tc.sp, tc.iv, got, tc.want)
			}
		})
	}
}

// TestSteering drives a steering over real socket groups on loopback: full
// batches on the one socket in use widen the spread, after which the kernel
// hands each sender's datagrams to the socket its address and port pick;
// reads of a datagram at a time narrow it again, after which all go to the
// first socket. Datagrams are sent before they are read (loopback queues
// them within the send), so that each read's batch is known.
func TestSteering(t *testing.T) {
	var conns [2][]udpio.PacketConn
	// A read that waits for datagrams that never come fails the test
	// rather than hang it: closing the sockets ends the read.
	stop := time.AfterFunc(time.Minute, func() {
		for _, cs := range conns {
			for _, c := range cs {
				c.Close()
			}
		}
	})
	defer stop.Stop()
	for via, a := range []string{"127.0.0.1:0", "127.0.0.2:0"} {
		// Room for every datagram a step sends before it reads.
		g, err := udpio.ListenGroup(netip.MustParseAddrPort(a), 2, udpio.Options{RecvBuffer: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range g {
			defer c.Close()
			conns[via] = append(conns[via], c)
		}
	}
	log := slog.New(slog.DiscardHandler)
	if st := newSteering(conns, 2, log); st != nil {
		t.Fatal("steering with as many sockets in use as open")
	}
	st := newSteering(conns, 1, log)
	if st == nil || st.inUse() != 1 {
		t.Fatalf("steering %v: want one socket in use", st)
	}
	primary := conns[0][0].LocalAddr()
	senders := make([]*udpio.Conn, 64)
	for i := range senders {
		// From addresses other than the group's, so that a program that
		// read the destination would be caught.
		c, err := udpio.Listen(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(3 + i%2)}), 0), udpio.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		senders[i] = c
	}
	sendAll := func() {
		t.Helper()
		for _, s := range senders {
			if _, err := s.WriteBatch([]udpio.Message{{Buf: []byte("rs"), N: 2, Addr: primary}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// want is the socket a sender's datagrams go to over two sockets.
	want := func(src netip.AddrPort) int { return udpio.SteerIndex(src, 2) }
	in := udpio.NewMessages(udpio.MaxBatch, 64)
	// read reads n datagrams from socket i of the primary, batch at a time,
	// and returns their sources.
	read := func(i, n, batch int) []netip.AddrPort {
		t.Helper()
		var from []netip.AddrPort
		for len(from) < n {
			k, err := conns[0][i].ReadBatch(in[:min(batch, n-len(from))])
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range in[:k] {
				from = append(from, m.Addr)
			}
		}
		return from
	}

	// Full batches on the one socket in use: widen. (A busy machine may
	// defer loopback delivery past the send, and a read then finds part
	// of a batch: the step is tried again.)
	for try := 0; st.inUse() == 1 && try < 5; try++ {
		for range 4 {
			sendAll()
		}
		read(0, 4*len(senders), udpio.MaxBatch)
		if err := st.look(); err != nil {
			t.Fatal(err)
		}
	}
	if st.inUse() != 2 || st.widened.Load() != 1 {
		t.Fatalf("after full batches: %d in use, widened %d times, want 2 and once", st.inUse(), st.widened.Load())
	}
	if st.addrs[1].active.Load() != 1 {
		t.Errorf("the secondary address, which read nothing, went to %d sockets", st.addrs[1].active.Load())
	}

	// Now each sender lands on the socket its address and port pick.
	sendAll()
	var per [2]int
	for _, s := range senders {
		per[want(s.LocalAddr())]++
	}
	if per[0] == 0 || per[1] == 0 {
		t.Fatalf("senders pick sockets %v: want both used", per)
	}
	for i := range per {
		for _, src := range read(i, per[i], 1) { // one at a time: a light load
			if want(src) != i {
				t.Errorf("%v read from socket %d, want %d", src, i, want(src))
			}
		}
	}
	if err := st.look(); err != nil || st.inUse() != 1 {
		t.Fatalf("after single reads: %d in use (%v), want 1", st.inUse(), err)
	}

	// Narrow again: all on the first socket.
	sendAll()
	if got := read(0, len(senders), udpio.MaxBatch); len(got) != len(senders) {
		t.Fatalf("read %d of %d", len(got), len(senders))
	}
}

func TestSocketCounts(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		procs, set int
		noBatch    bool
		n, narrow  int
	}{
		{1, 0, false, 1, 1},
		{2, 0, false, 2, 1},
		{3, 0, false, 3, 1},
		{8, 0, false, 8, 4},
		{64, 0, false, udpio.MaxGroup, udpio.MaxGroup / 2},
		{2, 1, false, 1, 1},
		{2, 3, false, 3, 3},
		{8, 0, true, 4, 4}, // --no-batch: nothing to steer by
		{2, 2, true, 2, 2},
	} {
		runtime.GOMAXPROCS(tc.procs)
		if n, narrow := socketCounts(tc.set, tc.noBatch); n != tc.n || narrow != tc.narrow {
			t.Errorf("%d cores, --sockets %d, no batch %v: %d sockets, %d in use; want %d, %d",
				tc.procs, tc.set, tc.noBatch, n, narrow, tc.n, tc.narrow)
		}
	}
}

// SPDX-License-Identifier: MIT

//go:build linux

package server

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"

	"github.com/miredo-go/miredo/pkg/udpio"
)

func TestNextActive(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		active, narrow, wide int
		calls, datagrams     uint64
		want                 int
	}{
		{"idle stays narrow", 1, 1, 2, 0, 0, 1},
		{"light load stays narrow", 1, 1, 2, 1000, 1500, 1},
		{"coalescing batches stay narrow", 1, 1, 2, 100, 1600, 1},
		{"just below the widening batch", 1, 1, 2, 100, 100*widenBatch - 1, 1},
		{"full batches widen", 1, 1, 2, 100, 100 * widenBatch, 2},
		{"widen to all of a larger group", 2, 2, 4, 10, 640, 4},
		{"saturated wide stays wide", 2, 1, 2, 100, 6400, 2},
		{"moderate wide stays wide", 2, 1, 2, 100, 100 * narrowBatch, 2},
		{"light wide narrows", 2, 1, 2, 100, 100*narrowBatch - 1, 1},
		{"idle wide narrows", 2, 1, 2, 0, 0, 1},
		{"narrow to half of a larger group", 4, 2, 4, 10, 10, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextActive(tc.active, tc.narrow, tc.wide, tc.calls, tc.datagrams); got != tc.want {
				t.Errorf("nextActive(%d, %d, %d, %d, %d) = %d, want %d", tc.active, tc.narrow, tc.wide, tc.calls, tc.datagrams, got, tc.want)
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
	for via, a := range []string{"127.0.0.1:0", "127.0.0.2:0"} {
		g, err := udpio.ListenGroup(netip.MustParseAddrPort(a), 2, udpio.Options{})
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
		c, err := udpio.Listen(netip.MustParseAddrPort("127.0.0.1:0"), udpio.Options{})
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
	want := func(src netip.AddrPort) int {
		a := src.Addr().As4()
		return int((uint64(binary.BigEndian.Uint32(a[:])) + uint64(src.Port())) % 2)
	}
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

	// Full batches on the one socket in use: widen.
	for range 4 {
		sendAll()
	}
	read(0, 4*len(senders), udpio.MaxBatch)
	if err := st.look(); err != nil || st.inUse() != 2 || st.widened.Load() != 1 {
		t.Fatalf("after full batches: %d in use, widened %d times (%v), want 2 and once", st.inUse(), st.widened.Load(), err)
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
		procs, set, n, narrow int
	}{
		{1, 0, 1, 1},
		{2, 0, 2, 1},
		{3, 0, 3, 1},
		{8, 0, 8, 4},
		{64, 0, udpio.MaxGroup, udpio.MaxGroup / 2},
		{2, 1, 1, 1},
		{2, 3, 3, 3},
	} {
		runtime.GOMAXPROCS(tc.procs)
		if n, narrow := socketCounts(tc.set); n != tc.n || narrow != tc.narrow {
			t.Errorf("%d cores, --sockets %d: %d sockets, %d in use; want %d, %d", tc.procs, tc.set, n, narrow, tc.n, tc.narrow)
		}
	}
}

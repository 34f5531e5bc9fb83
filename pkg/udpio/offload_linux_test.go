// SPDX-License-Identifier: MIT

//go:build linux

package udpio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needOffloads skips the test unless c has the offloads it asked for.
func needOffloads(t *testing.T, c *Conn, opt Options) {
	t.Helper()
	s := c.Stats()
	if opt.GSO && !s.GSO {
		t.Skip("kernel without UDP_SEGMENT")
	}
	if opt.GRO && !s.GRO {
		t.Skip("kernel without UDP_GRO (or before 5.12)")
	}
}

// check compares received datagrams with the ids and lengths sent, as
// fill and pattern wrote them.
func check(t *testing.T, got []Message, from netip.AddrPort, ids, sizes []int) {
	t.Helper()
	if len(got) != len(ids) {
		t.Fatalf("got %d datagrams, want %d", len(got), len(ids))
	}
	for i, m := range got {
		want := make([]byte, sizes[i])
		pattern(want, ids[i])
		if !bytes.Equal(m.Buf, want) || m.Truncated || m.Addr != from {
			t.Fatalf("datagram %d: %d bytes % x... from %v truncated=%v; want message %d, %d bytes % x... from %v",
				i, m.N, head(m.Buf), m.Addr, m.Truncated, ids[i], sizes[i], head(want), from)
		}
	}
}

// seq returns 0, 1, ..., n-1 plus base.
func seq(base, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = base + i
	}
	return s
}

func repeat(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// TestOffloads sends runs to one peer with GSO on and off to a receiver with
// GRO on and off: the datagrams must arrive whole and in order whatever
// the kernel did with them, and the counters must say what it did. On
// loopback a GSO send stays one buffer up to a GRO socket and is cut up
// for any other; nothing is coalesced without GSO.
func TestOffloads(t *testing.T) {
	const count, size = 2*MaxBatch + 5, 1200
	for _, gso := range []bool{false, true} {
		for _, gro := range []bool{false, true} {
			t.Run(fmt.Sprintf("gso=%v/gro=%v", gso, gro), func(t *testing.T) {
				topt, ropt := Options{GSO: gso}, Options{GRO: gro, RecvBuffer: 4 << 20}
				a, b := listen(t, topt), listen(t, ropt)
				needOffloads(t, a, topt)
				needOffloads(t, b, ropt)
				out := newMsgs(count, size)
				fill(out, size, b.LocalAddr(), 0)
				out[count-1].N = 300 // a short last one
				if n, err := a.WriteBatch(out); n != count || err != nil {
					t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, count)
				}
				got := readN(t, b, count, 2048)
				sizes := repeat(size, count)
				sizes[count-1] = 300
				check(t, got, a.LocalAddr(), seq(0, count), sizes)

				sa, sb := a.Stats(), b.Stats()
				if sa.WriteDatagrams != count || sb.ReadDatagrams != count || sa.WriteErrors != 0 {
					t.Errorf("sender %+v, receiver %+v", sa, sb)
				}
				if gso {
					// Chunks of 64: runs of 54 (the payload cap) and 10,
					// twice, then a run of 5.
					if sa.GSOSends != 5 || sa.GSOSegments != count || sa.WriteCalls != 3 {
						t.Errorf("sender: %d GSO sends of %d datagrams in %d calls, want 5 of %d in 3",
							sa.GSOSends, sa.GSOSegments, sa.WriteCalls, count)
					}
				} else if sa.GSOSends != 0 || sa.GSOSegments != 0 {
					t.Errorf("sender without GSO: %+v", sa)
				}
				if gso && gro {
					if sb.GROReads != 5 || sb.GROSegments != count {
						t.Errorf("receiver: %d coalesced reads of %d datagrams, want 5 of %d", sb.GROReads, sb.GROSegments, count)
					}
				} else if sb.GROReads != 0 || sb.GROSegments != 0 {
					t.Errorf("receiver: %d coalesced reads, want none", sb.GROReads)
				}
			})
		}
	}
}

// TestGSOMixedRuns interleaves two destinations and several sizes: only
// the eligible runs may be coalesced, and each receiver must get its
// datagrams in the order sent.
func TestGSOMixedRuns(t *testing.T) {
	topt, ropt := Options{GSO: true}, Options{GRO: true, RecvBuffer: 4 << 20}
	a, b, c := listen(t, topt), listen(t, ropt), listen(t, ropt)
	needOffloads(t, a, topt)
	needOffloads(t, b, ropt)
	bb, cc := b.LocalAddr(), c.LocalAddr()
	bad := netip.MustParseAddrPort("[2001:db8::1]:3544")
	out := []struct {
		to netip.AddrPort
		n  int
	}{
		{bb, 500}, {bb, 500}, {bb, 500}, // run of 3
		{cc, 500},            // alone: the next is to b
		{bb, 500}, {bb, 200}, // run of 2, last short
		{bb, 500},                        // alone: after a short one
		{bb, 800}, {bb, 800}, {bad, 800}, // run of 2, then a refused one
		{bb, 800},        // alone
		{cc, 0}, {cc, 0}, // empty datagrams never coalesce
		{cc, 100}, {cc, 100}, {cc, 100}, // run of 3
	}
	msgs := make([]Message, len(out))
	var toB, toC, sizeB, sizeC []int
	for i, o := range out {
		msgs[i] = Message{Buf: make([]byte, o.n), N: o.n, Addr: o.to}
		pattern(msgs[i].Buf, i)
		switch o.to {
		case bb:
			toB, sizeB = append(toB, i), append(sizeB, o.n)
		case cc:
			toC, sizeC = append(toC, i), append(sizeC, o.n)
		}
	}
	n, err := a.WriteBatch(msgs)
	if n != len(out)-1 || !errors.Is(err, ErrNotIPv4) {
		t.Fatalf("WriteBatch = %d, %v; want %d and ErrNotIPv4", n, err, len(out)-1)
	}
	// pattern writes the id into the first four bytes: short ones carry
	// only part of it, so compare whole contents instead of ids.
	check(t, readN(t, b, len(toB), 2048), a.LocalAddr(), toB, sizeB)
	check(t, readN(t, c, len(toC), 2048), a.LocalAddr(), toC, sizeC)
	if s := a.Stats(); s.GSOSends != 4 || s.GSOSegments != 10 || s.WriteErrors != 1 || s.WriteCalls != 1 {
		t.Errorf("sender: %d GSO sends of %d datagrams, %d errors, %d calls; want 4 of 10, 1, 1",
			s.GSOSends, s.GSOSegments, s.WriteErrors, s.WriteCalls)
	}
	if s := b.Stats(); s.GROReads != 3 || s.GROSegments != 7 {
		t.Errorf("receiver b: %d coalesced reads of %d datagrams, want 3 of 7", s.GROReads, s.GROSegments)
	}
}

// TestGROSplitAcrossReads: a coalesced read longer than the caller's
// messages is handed out over several ReadBatch calls, from one system
// call, and a truncated segment is reported as such.
func TestGROSplitAcrossReads(t *testing.T) {
	topt, ropt := Options{GSO: true}, Options{GRO: true}
	a, b := listen(t, topt), listen(t, ropt)
	needOffloads(t, a, topt)
	needOffloads(t, b, ropt)
	watchdog(t, b, 10*time.Second)
	const count = 10
	out := newMsgs(count, 500)
	fill(out, 500, b.LocalAddr(), 100)
	out[count-1].N = 40
	if n, err := a.WriteBatch(out); n != count || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	in := newMsgs(3, 500)
	in[1].Buf = in[1].Buf[:100] // too short for its datagram
	var ns []int
	for got := 0; got < count; {
		n, err := b.ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range in[:n] {
			id := 100 + got + i
			want := make([]byte, out[id-100].N)
			pattern(want, id)
			short := len(m.Buf) < len(want)
			if short {
				want = want[:len(m.Buf)]
			}
			if !bytes.Equal(m.Buf[:m.N], want) || m.Truncated != short || m.Addr != a.LocalAddr() {
				t.Fatalf("datagram %d: %d bytes % x... truncated=%v from %v", got+i, m.N, head(m.Buf[:m.N]), m.Truncated, m.Addr)
			}
		}
		ns = append(ns, n)
		got += n
	}
	if fmt.Sprint(ns) != "[3 3 3 1]" {
		t.Errorf("ReadBatch returned %v datagrams, want [3 3 3 1]", ns)
	}
	s := b.Stats()
	if s.ReadCalls != 1 || s.ReadDatagrams != count || s.GROReads != 1 || s.GROSegments != count || s.Truncated != 3 {
		t.Errorf("receiver stats %+v: want 1 call, %d datagrams in 1 coalesced read, 3 truncated", s, count)
	}
}

// TestGROClosedWithPending: Close wins over datagrams still queued.
func TestGROClosedWithPending(t *testing.T) {
	topt, ropt := Options{GSO: true}, Options{GRO: true}
	a, b := listen(t, topt), listen(t, ropt)
	needOffloads(t, a, topt)
	needOffloads(t, b, ropt)
	watchdog(t, b, 10*time.Second)
	out := newMsgs(4, 100)
	fill(out, 100, b.LocalAddr(), 0)
	if _, err := a.WriteBatch(out); err != nil {
		t.Fatal(err)
	}
	in := newMsgs(1, 100)
	if n, err := b.ReadBatch(in); n != 1 || err != nil {
		t.Fatalf("ReadBatch = %d, %v", n, err)
	}
	b.Close()
	if _, err := b.ReadBatch(in); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadBatch after Close with datagrams queued = %v, want net.ErrClosed", err)
	}
}

// TestGSOFallback: when the kernel refuses UDP_SEGMENT sends, WriteBatch
// resends the runs datagram by datagram, loses nothing, and turns GSO off
// for good. A refusal that plain sends share (a bad destination) must not
// turn it off.
func TestGSOFallback(t *testing.T) {
	for _, errno := range []syscall.Errno{unix.EIO, unix.EINVAL} {
		t.Run(errno.Error(), func(t *testing.T) {
			a, b := listen(t, Options{GSO: true}), listen(t, Options{})
			needOffloads(t, a, Options{GSO: true})
			a.refuseGSO = errno
			const count = 20
			out := newMsgs(count, 300)
			fill(out, 300, b.LocalAddr(), 0)
			out[0].N = 100 // alone, before the run: goes out in the first call
			for i := 0; i < 2; i++ {
				if n, err := a.WriteBatch(out); n != count || err != nil {
					t.Fatalf("WriteBatch %d = %d, %v; want %d, nil", i, n, err, count)
				}
			}
			sizes := repeat(300, count)
			sizes[0] = 100
			got := readN(t, b, 2*count, 2048)
			check(t, got[:count], a.LocalAddr(), seq(0, count), sizes)
			check(t, got[count:], a.LocalAddr(), seq(0, count), sizes)
			s := a.Stats()
			if s.GSO || s.GSOFallbacks != 1 || s.GSOSends != 0 || s.WriteErrors != 0 || s.WriteDatagrams != 2*count {
				t.Errorf("stats %+v: want GSO off after 1 fallback, no GSO sends, no errors", s)
			}
		})
	}
	// EMSGSIZE: a segment too long for the device MTU. GSO stays on for
	// shorter segments.
	t.Run("message too long", func(t *testing.T) {
		a, b := listen(t, Options{GSO: true}), listen(t, Options{})
		needOffloads(t, a, Options{GSO: true})
		a.refuseGSO = unix.EMSGSIZE
		var ids, sizes []int
		for _, size := range []int{300, 300, 200} { // refused, not tried (over the cap), refused
			out := newMsgs(5, size)
			fill(out, size, b.LocalAddr(), len(ids))
			if n, err := a.WriteBatch(out); n != len(out) || err != nil {
				t.Fatalf("WriteBatch of %d bytes = %d, %v; want %d, nil", size, n, err, len(out))
			}
			ids, sizes = append(ids, seq(len(ids), len(out))...), append(sizes, repeat(size, len(out))...)
		}
		check(t, readN(t, b, len(ids), 2048), a.LocalAddr(), ids, sizes)
		if s := a.Stats(); !s.GSO || s.GSOFallbacks != 2 || s.GSOSends != 0 || s.WriteErrors != 0 {
			t.Errorf("stats %+v: want GSO still on after 2 fallbacks, no errors", s)
		}
		if got := a.gsoMax.Load(); got != 199 {
			t.Errorf("largest GSO segment = %d, want 199", got)
		}
	})
	t.Run("bad destination", func(t *testing.T) {
		a := listen(t, Options{GSO: true})
		needOffloads(t, a, Options{GSO: true})
		a.refuseGSO = unix.EINVAL
		out := newMsgs(3, 100)
		fill(out, 100, netip.MustParseAddrPort("127.0.0.1:0"), 0) // port 0: EINVAL with or without GSO
		if n, err := a.WriteBatch(out); n != 0 || !errors.Is(err, unix.EINVAL) {
			t.Fatalf("WriteBatch to port 0 = %d, %v; want 0, EINVAL", n, err)
		}
		if s := a.Stats(); !s.GSO || s.GSOFallbacks != 0 || s.WriteErrors != 3 {
			t.Errorf("stats %+v: want GSO still on, no fallback, 3 errors", s)
		}
	})
}

// TestGSORefusedByKernel makes the real kernel refuse: with SO_NO_CHECK
// (no UDP checksum) it accepts plain datagrams but fails UDP_SEGMENT sends
// with EINVAL.
func TestGSORefusedByKernel(t *testing.T) {
	a, b := listen(t, Options{GSO: true}), listen(t, Options{})
	needOffloads(t, a, Options{GSO: true})
	var serr error
	if err := a.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) }); err != nil || serr != nil {
		t.Skipf("SO_NO_CHECK: %v %v", err, serr)
	}
	out := newMsgs(8, 200)
	fill(out, 200, b.LocalAddr(), 0)
	if n, err := a.WriteBatch(out); n != 8 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 8, nil", n, err)
	}
	check(t, readN(t, b, 8, 2048), a.LocalAddr(), seq(0, 8), repeat(200, 8))
	if s := a.Stats(); s.GSO || s.GSOFallbacks != 1 {
		t.Errorf("stats %+v: want GSO off after 1 fallback", s)
	}
}

// TestOffloadAllocs: the offload paths allocate nothing in the steady
// state, including a GRO read handed out over several calls.
func TestOffloadAllocs(t *testing.T) {
	topt, ropt := Options{GSO: true}, Options{GRO: true, RecvBuffer: 1 << 20}
	a, b := listen(t, topt), listen(t, ropt)
	needOffloads(t, a, topt)
	needOffloads(t, b, ropt)
	watchdog(t, b, 30*time.Second)
	const k = 40
	out, in := newMsgs(k, 1200), newMsgs(16, 2048)
	fill(out, 1200, b.LocalAddr(), 0)
	out[k-1].N = 10
	var werr, rerr error
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.WriteBatch(out); err != nil {
			werr = err
			return
		}
		for got := 0; got < k; {
			n, err := b.ReadBatch(in)
			if err != nil {
				rerr = err
				return
			}
			got += n
		}
	})
	if werr != nil || rerr != nil {
		t.Fatalf("write: %v, read: %v", werr, rerr)
	}
	if allocs != 0 {
		t.Errorf("%d datagrams through GSO and GRO: %v allocations, want 0", k, allocs)
	}
	if s := b.Stats(); s.GROReads == 0 {
		t.Errorf("no coalesced reads: %+v", s)
	}
}

func TestParseRelease(t *testing.T) {
	tests := []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v669", 6, 18, true},
		{"5.12.0", 5, 12, true},
		{"5.4.0-150-generic", 5, 4, true},
		{"4.19", 4, 19, true},
		{"6.1-rc3", 6, 1, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
		{"x.y", 0, 0, false},
	}
	for _, tt := range tests {
		major, minor, ok := parseRelease(tt.in)
		if ok != tt.ok || ok && (major != tt.major || minor != tt.minor) {
			t.Errorf("parseRelease(%q) = %d, %d, %v; want %d, %d, %v", tt.in, major, minor, ok, tt.major, tt.minor, tt.ok)
		}
	}
}

// TestGROSize reads control messages as the kernel writes them.
func TestGROSize(t *testing.T) {
	var c cmsg
	c.hdr.Level, c.hdr.Type = unix.SOL_UDP, unix.UDP_GRO
	c.hdr.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(c.data[:], 1200)
	if got := c.groSize(unix.CmsgSpace(4)); got != 1200 {
		t.Errorf("groSize = %d, want 1200", got)
	}
	if got := c.groSize(0); got != 0 {
		t.Errorf("groSize without control data = %d, want 0", got)
	}
	c.hdr.Type = unix.UDP_SEGMENT
	if got := c.groSize(unix.CmsgSpace(4)); got != 0 {
		t.Errorf("groSize of another message = %d, want 0", got)
	}
	c.setSegment(1280)
	if c.hdr.Level != unix.SOL_UDP || c.hdr.Type != unix.UDP_SEGMENT || int(c.hdr.Len) != unix.CmsgLen(2) ||
		binary.NativeEndian.Uint16(c.data[:]) != 1280 {
		t.Errorf("setSegment(1280) wrote %+v % x", c.hdr, c.data)
	}
}

// TestGROMixedReads: one recvmmsg returns plain reads before and after
// coalesced ones, some longer than the part of the caller's buffer the
// kernel writes directly (groHead): every datagram must come out whole and
// in order, over several calls.
func TestGROMixedReads(t *testing.T) {
	topt, ropt := Options{GSO: true}, Options{GRO: true}
	a, b := listen(t, topt), listen(t, ropt)
	needOffloads(t, a, topt)
	needOffloads(t, b, ropt)
	watchdog(t, b, 10*time.Second)
	batches := [][]int{
		{100, 3000, 3500, 3500, 3500}, // plain, plain past groHead, a run of 3
		{200, 2500, 2500, 1000, 4000}, // plain, a run of 3 (last short), plain
	}
	var ids, sizes []int
	for _, batch := range batches {
		out := make([]Message, len(batch))
		for i, n := range batch {
			id := len(ids)
			out[i] = Message{Buf: make([]byte, n), N: n, Addr: b.LocalAddr()}
			pattern(out[i].Buf, id)
			ids, sizes = append(ids, id), append(sizes, n)
		}
		if n, err := a.WriteBatch(out); n != len(out) || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	}
	if s := a.Stats(); s.GSOSends != 2 || s.GSOSegments != 6 {
		t.Fatalf("sender: %d GSO sends of %d datagrams, want 2 of 6", s.GSOSends, s.GSOSegments)
	}
	in := newMsgs(5, 4096)
	var got []Message
	var ns []int
	for len(got) < len(ids) {
		n, err := b.ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range in[:n] {
			m.Buf = bytes.Clone(m.Buf[:m.N])
			got = append(got, m)
		}
		ns = append(ns, n)
	}
	check(t, got, a.LocalAddr(), ids, sizes)
	// Five messages, so the first call reads five of the six kernel
	// datagrams (9 of ours) and hands out the two plain ones and the
	// first run; the second drains the other four from the queue without
	// a system call; the third reads the last one.
	if fmt.Sprint(ns) != "[5 4 1]" {
		t.Errorf("ReadBatch returned %v datagrams, want [5 4 1]", ns)
	}
	if s := b.Stats(); s.ReadCalls != 2 || s.GROReads != 2 || s.GROSegments != 6 {
		t.Errorf("receiver stats %+v: want 2 calls, 2 coalesced reads of 6 datagrams", s)
	}
}

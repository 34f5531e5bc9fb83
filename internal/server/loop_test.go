// SPDX-License-Identifier: MIT

package server

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// socketFD finds the descriptor of the IPv4 socket bound to local.
func socketFD(t *testing.T, local netip.AddrPort) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		if in4, ok := sa.(*unix.SockaddrInet4); ok && in4.Port == int(local.Port()) && netip.AddrFrom4(in4.Addr) == local.Addr() {
			return fd
		}
	}
	t.Fatalf("no descriptor bound to %v", local)
	return -1
}

// TestLoopGivesUp: a socket whose reads fail for good (here its descriptor
// replaced by a pipe, so every read says ENOTSOCK) ends the loop with the
// error after a bounded run of failures, instead of spinning.
func TestLoopGivesUp(t *testing.T) {
	c, err := udpio.Listen(netip.MustParseAddrPort("127.0.0.1:0"), udpio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if err := unix.Dup3(p[0], socketFD(t, c.LocalAddr()), unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[0])

	cfg, err := Config{Primary: netip.MustParseAddr("192.0.2.1")}.Check()
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(cfg, [2][]udpio.PacketConn{{c}, {c}}, &fakeRaw{entered: make(chan struct{})}, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.loop(t.Context(), c, ViaPrimary, [2]udpio.PacketConn{c, c}, new(loopStats)) }()
	select {
	case err := <-done:
		if !errors.Is(err, unix.ENOTSOCK) {
			t.Errorf("loop ended with %v, want ENOTSOCK", err)
		}
		// The pauses between failures add up to about a second.
		if took := time.Since(start); took < 500*time.Millisecond {
			t.Errorf("gave up after %v: no pause between failed reads", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loop still running on a broken socket") // Cleanup's Close ends it
	}
}

// TestSpareProcs: the socket loops wait in system calls holding their P
// (udpio.Options.BlockingReads), so the process needs one P more than it
// has loops, and keeps more if it has them.
func TestSpareProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct{ procs, loops, want int }{
		{1, 2, 3},
		{2, 2, 3},
		{4, 2, 4},
		{3, 2, 3},
		{2, 0, 2},
		{8, 16, 17},
	} {
		runtime.GOMAXPROCS(tc.procs)
		spareProcs(tc.loops)
		if got := runtime.GOMAXPROCS(0); got != tc.want {
			t.Errorf("GOMAXPROCS %d, %d loops: got %d, want %d", tc.procs, tc.loops, got, tc.want)
		}
	}
}

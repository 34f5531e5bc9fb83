// SPDX-License-Identifier: MIT

//go:build linux

package udpio

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockopt reads an integer socket option of c.
func sockopt(t *testing.T, c *Conn, level, name int) int {
	t.Helper()
	var v int
	var gerr error
	if err := c.rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, name) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt(%d, %d): %v", level, name, gerr)
	}
	return v
}

// TestSocketOptions checks what every socket must carry, however opened.
func TestSocketOptions(t *testing.T) {
	for _, opt := range []Options{{}, {ReusePort: true}, {NoBatch: true}} {
		c := listen(t, opt)
		// DF must stay clear on Teredo datagrams (RFC 4380 §5.1.2).
		if got := sockopt(t, c, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER); got != unix.IP_PMTUDISC_DONT {
			t.Errorf("%+v: IP_MTU_DISCOVER = %d, want IP_PMTUDISC_DONT (%d)", opt, got, unix.IP_PMTUDISC_DONT)
		}
		// Teredo never sends to broadcast addresses: the kernel must refuse.
		if got := sockopt(t, c, unix.SOL_SOCKET, unix.SO_BROADCAST); got != 0 {
			t.Errorf("%+v: SO_BROADCAST = %d, want 0", opt, got)
		}
		want := 0
		if opt.ReusePort {
			want = 1
		}
		if got := sockopt(t, c, unix.SOL_SOCKET, unix.SO_REUSEPORT); got != want {
			t.Errorf("%+v: SO_REUSEPORT = %d, want %d", opt, got, want)
		}
	}
}

func TestBuffers(t *testing.T) {
	rmemMax, wmemMax := sysctlInt(t, "net/core/rmem_max"), sysctlInt(t, "net/core/wmem_max")
	for _, size := range []int{150_000, 8 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			c := listen(t, Options{RecvBuffer: size, SendBuffer: size})
			s := c.Stats()
			// The kernel doubles what it grants. With CAP_NET_ADMIN the
			// FORCE options grant everything; without, rmem_max caps it.
			check := func(name string, got, max int) {
				capped := 2 * min(size, max)
				if got != 2*size && got != capped {
					t.Errorf("%s = %d, want %d (forced) or %d (capped at %d)", name, got, 2*size, capped, max)
				}
			}
			check("RecvBuffer", s.RecvBuffer, rmemMax)
			check("SendBuffer", s.SendBuffer, wmemMax)
			if os.Geteuid() == 0 && s.RecvBuffer != 2*size {
				t.Logf("root but RecvBuffer capped at %d: no CAP_NET_ADMIN here?", s.RecvBuffer)
			}
		})
	}
}

func sysctlInt(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Skipf("cannot read %s: %v", name, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// TestDrops overflows a tiny receive queue and checks that Stats accounts
// for every datagram: read or dropped.
func TestDrops(t *testing.T) {
	a := listen(t, Options{})
	b := listen(t, Options{RecvBuffer: 1}) // the kernel rounds up to its minimum
	const sent = 200
	out := newMsgs(sent, 1000)
	fill(out, 1000, b.LocalAddr(), 0)
	if n, err := a.WriteBatch(out); n != sent || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	watchdog(t, b, 10*time.Second)
	in := newMsgs(MaxBatch, 2048)
	read := 0
	for read+int(b.Stats().Drops) < sent {
		n, err := b.ReadBatch(in)
		if err != nil {
			t.Fatalf("read %d, dropped %d of %d: %v", read, b.Stats().Drops, sent, err)
		}
		read += n
	}
	s := b.Stats()
	if s.Drops == 0 || read+int(s.Drops) != sent {
		t.Errorf("read %d + dropped %d, want some drops and %d in all", read, s.Drops, sent)
	}
	b.Close()
	if got := b.Stats().Drops; got != s.Drops {
		t.Errorf("Drops after Close = %d, want the last value %d", got, s.Drops)
	}
}

func TestListenGroup(t *testing.T) {
	const n, senders = 4, 64
	group, err := ListenGroup(loopback, n, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range group {
			c.Close()
		}
	})
	if len(group) != n {
		t.Fatalf("ListenGroup opened %d sockets, want %d", len(group), n)
	}
	addr := group[0].LocalAddr()
	for i, c := range group {
		if c.LocalAddr() != addr {
			t.Fatalf("socket %d bound to %v, want %v", i, c.LocalAddr(), addr)
		}
	}

	// One reader per socket counts what it gets until all have arrived;
	// then closing the group ends the readers.
	var mu sync.Mutex
	counts := make([]int, n)
	total := 0
	all := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range group {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := newMsgs(MaxBatch, 64)
			for {
				k, err := c.ReadBatch(in)
				if err != nil {
					return
				}
				mu.Lock()
				counts[i] += k
				total += k
				if total == senders {
					close(all)
				}
				mu.Unlock()
			}
		}()
	}

	// Each datagram from its own source port: the kernel hashes the
	// 4-tuple, so they spread over the group.
	for i := range senders {
		s := listen(t, Options{})
		out := newMsgs(1, 8)
		fill(out, 8, addr, i)
		if _, err := s.WriteBatch(out); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(10 * time.Second):
	}
	for _, c := range group {
		c.Close()
	}
	wg.Wait()
	used := 0
	for _, k := range counts {
		if k > 0 {
			used++
		}
	}
	if total != senders || used < 2 {
		t.Errorf("per-socket counts %v: want %d datagrams spread over at least 2 sockets", counts, senders)
	}
}

func TestListenGroupErrors(t *testing.T) {
	if _, err := ListenGroup(loopback, 0, Options{}); err == nil {
		t.Error("ListenGroup of 0 sockets succeeded")
	}
	// A port held without SO_REUSEPORT cannot be joined; nothing may leak.
	plain := listen(t, Options{})
	if _, err := ListenGroup(plain.LocalAddr(), 2, Options{}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("ListenGroup on a taken port: %v, want EADDRINUSE", err)
	}
	// More than MaxGroup is capped, not refused.
	group, err := ListenGroup(loopback, MaxGroup+5, Options{NoBatch: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range group {
		c.Close()
	}
	if len(group) != MaxGroup {
		t.Errorf("ListenGroup(MaxGroup+5) opened %d sockets, want %d", len(group), MaxGroup)
	}
	if g := GroupSize(); g < 1 || g > MaxGroup {
		t.Errorf("GroupSize() = %d, want 1..%d", g, MaxGroup)
	}
}

// TestGroupRollback: when a later socket of the group fails, the ones
// opened before it are closed.
func TestGroupRollback(t *testing.T) {
	var opened []*Conn
	failThird := func(addr netip.AddrPort, opt Options) (*Conn, error) {
		if len(opened) == 2 {
			return nil, syscall.EADDRINUSE
		}
		c, err := Listen(addr, opt)
		if err == nil {
			opened = append(opened, c)
		}
		return c, err
	}
	if _, err := listenGroup(loopback, 4, Options{}, failThird); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listenGroup = %v, want the third socket's error", err)
	}
	for i, c := range opened {
		if _, err := c.ReadBatch(newMsgs(1, 8)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("socket %d left open after a failed group: ReadBatch = %v", i, err)
		}
	}
}

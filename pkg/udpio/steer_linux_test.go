// SPDX-License-Identifier: MIT

package udpio

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestSteer sends from many source ports to a group of two and checks that
// each datagram lands on the socket the steering says: the first one only,
// then (address + port) mod 2.
func TestSteer(t *testing.T) {
	group, err := ListenGroup(netip.MustParseAddrPort("127.0.0.1:0"), 2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[netip.AddrPort]int{} // source -> socket index that read it
	var wg sync.WaitGroup
	for i, c := range group {
		wg.Go(func() {
			in := NewMessages(MaxBatch, 64)
			for {
				n, err := c.ReadBatch(in)
				if errors.Is(err, net.ErrClosed) {
					return
				}
				mu.Lock()
				for _, m := range in[:n] {
					if prev, ok := got[m.Addr]; ok && prev != i {
						t.Errorf("%v landed on socket %d and %d", m.Addr, prev, i)
					}
					got[m.Addr] = i
				}
				mu.Unlock()
			}
		})
	}
	defer func() {
		for _, c := range group {
			c.Close()
		}
		wg.Wait()
	}()
	dst := group[0].LocalAddr()
	tests := []struct {
		active int
		want   func(src netip.AddrPort) int
	}{
		{1, func(netip.AddrPort) int { return 0 }},
		{2, func(src netip.AddrPort) int { return SteerIndex(src, 2) }},
		{1, func(netip.AddrPort) int { return 0 }}, // back to one
	}
	for _, tt := range tests {
		if err := Steer(group[1], tt.active); err != nil { // any socket of the group sets it
			t.Fatal(err)
		}
		mu.Lock()
		clear(got)
		mu.Unlock()
		const senders = 32
		var srcs []netip.AddrPort
		for i := range senders {
			// From two addresses other than the group's, so that a program
			// that read the wrong one would be caught.
			from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i%2)}), 0)
			s, err := Listen(from, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.WriteBatch([]Message{{Buf: []byte("x"), N: 1, Addr: dst}}); err != nil {
				t.Fatal(err)
			}
			srcs = append(srcs, s.LocalAddr())
			defer s.Close() // open until the end: a closed one's port may come back
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n == senders {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("active %d: %d of %d datagrams arrived", tt.active, n, senders)
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		per := [2]int{}
		for _, src := range srcs {
			if got[src] != tt.want(src) {
				t.Errorf("active %d: %v landed on socket %d, want %d", tt.active, src, got[src], tt.want(src))
			}
			per[got[src]]++
		}
		mu.Unlock()
		if tt.active == 2 && (per[0] == 0 || per[1] == 0) {
			t.Errorf("active 2: spread %v, want both sockets used", per)
		}
	}
	if err := Steer(group[0], 0); err == nil {
		t.Error("Steer(0) worked")
	}
}

func TestSteerProgram(t *testing.T) {
	for _, active := range []int{1, 2, 3, 64} {
		p := steerProgram(active)
		if last := p[len(p)-1]; last.Code&0x07 != 0x06 { // BPF_RET
			t.Errorf("active %d: program does not end in a return: %+v", active, last)
		}
		if active > 1 && p[4].K != uint32(active) {
			t.Errorf("active %d: mod %d", active, p[4].K)
		}
	}
}

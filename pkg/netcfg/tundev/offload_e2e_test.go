// SPDX-License-Identifier: MIT

//go:build e2e

package tundev

// End-to-end tests of the backends with the kernel's own TCP: a reflector
// reads every packet the kernel sends into the TUN and writes it back with
// source and destination swapped, so a connection from the tunnel address
// to a host "behind" the tunnel comes back to a listener on the tunnel
// address. Swapping the addresses leaves every checksum valid, and every
// byte crosses the device twice: once read (TSO super-segments split here)
// and once written (segments coalesced here). Nothing leaves the test's
// namespace.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/internal/nstest"
)

// reflect swaps the addresses of TCP packets from self to far; it reports
// whether pkt is one.
func reflect(pkt []byte, self, far [16]byte) bool {
	if len(pkt) < 60 || pkt[0]>>4 != 6 || pkt[6] != unix.IPPROTO_TCP ||
		[16]byte(pkt[8:24]) != self || [16]byte(pkt[24:40]) != far {
		return false
	}
	copy(pkt[8:24], far[:])
	copy(pkt[24:40], self[:])
	return true
}

// runReflector moves packets until dev is closed; it returns the first
// other error.
func runReflector(dev Device, self, far netip.Addr) error {
	const offset = 16
	bs := dev.BatchSize()
	bufs := make([][]byte, bs)
	for i := range bufs {
		bufs[i] = make([]byte, offset+1500)
	}
	sizes := make([]int, bs)
	out := make([][]byte, 0, bs)
	s, f := self.As16(), far.As16()
	for {
		n, err := dev.Read(bufs, sizes, offset)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		out = out[:0]
		for i := range n {
			if reflect(bufs[i][offset:offset+sizes[i]], s, f) {
				out = append(out, bufs[i][:offset+sizes[i]])
			}
		}
		for len(out) > 0 {
			w, err := dev.Write(out, offset)
			if err == nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			out = out[w+1:] // the kernel refused one: go on with the rest
		}
	}
}

// loopback is a namespace with a configured TUN of the given backend and a
// reflector running on it.
type loopback struct {
	dev    Device
	dial   func(ctx context.Context) (net.Conn, error)
	listen net.Listener
}

func startLoopback(t testing.TB, backend Backend) *loopback {
	t.Helper()
	nsh, nlh, _ := nstest.NewNetNS(t)
	devs, err := OpenInNetNS(nsh, "", Options{Backend: backend})
	if err != nil {
		t.Fatalf("Open(%s): %v", backend, err)
	}
	dev := devs[0]
	t.Cleanup(func() { dev.Close() })
	l, err := netcfg.NewLink(nlh, dev.Name())
	if err != nil {
		t.Fatal(err)
	}
	nstest.Configure(t, nlh, l)
	done := make(chan error, 1)
	go func() { done <- runReflector(dev, nstest.TunAddr, nstest.Native) }()
	t.Cleanup(func() {
		dev.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("reflector: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("reflector still running 5s after Close")
		}
	})
	lb := &loopback{dev: dev}
	err = netcfg.RunInNetNS(nsh, func() error {
		lb.listen, err = net.Listen("tcp6", net.JoinHostPort(nstest.TunAddr.String(), "0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.listen.Close() })
	port := lb.listen.Addr().(*net.TCPAddr).Port
	lb.dial = func(ctx context.Context) (net.Conn, error) {
		var c net.Conn
		err := netcfg.RunInNetNS(nsh, func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: nstest.TunAddr.AsSlice()}}
			var err error
			c, err = d.DialContext(ctx, "tcp6", net.JoinHostPort(nstest.Native.String(), fmt.Sprint(port)))
			return err
		})
		return c, err
	}
	return lb
}

// transfer sends data over a fresh connection through the reflector and
// returns what the listener received.
func (lb *loopback) transfer(ctx context.Context, data []byte) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := lb.listen.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		got <- result{b, err}
	}()
	c, err := lb.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial through the reflector: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(data); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case r := <-got:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestE2EBackendsCarryTCP(t *testing.T) {
	for _, backend := range Backends() {
		t.Run(string(backend), func(t *testing.T) {
			lb := startLoopback(t, backend)
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			for _, size := range []int{1, 1000, 4 << 20} {
				data := make([]byte, size)
				rand.Read(data)
				got, err := lb.transfer(ctx, data)
				if err != nil {
					t.Fatalf("%d bytes: %v", size, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%d bytes sent, %d received or different", size, len(got))
				}
			}
			st := OffloadStats{}
			if s, ok := lb.dev.(OffloadStatser); ok {
				st = s.OffloadStats()
			}
			t.Logf("%s: %+v", backend, st)
			if backend == BackendOffload && (st.SuperRead == 0 || st.RunsWritten == 0 || st.Dropped != 0) {
				t.Errorf("offloads unused or dropping: %+v", st)
			}
		})
	}
}

// BenchmarkE2ETCPThroughput is bulk TCP through the reflector: every byte
// is read from and written to the TUN once. MB/s counts the payload.
func BenchmarkE2ETCPThroughput(b *testing.B) {
	for _, backend := range Backends() {
		b.Run(string(backend), func(b *testing.B) {
			lb := startLoopback(b, backend)
			data := make([]byte, 16<<20)
			rand.Read(data)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for range b.N {
				got, err := lb.transfer(b.Context(), data)
				if err != nil || len(got) != len(data) {
					b.Fatalf("%d of %d bytes: %v", len(got), len(data), err)
				}
			}
		})
	}
}

// Multi-queue: two queues of one interface, a reflector on each; several
// connections at once all arrive intact, wherever the kernel put their
// flows, and closing both queues removes the interface.
func TestE2EMultiQueue(t *testing.T) {
	for _, backend := range []Backend{BackendOffload, BackendBatch} {
		t.Run(string(backend), func(t *testing.T) {
			nsh, nlh, _ := nstest.NewNetNS(t)
			devs, err := OpenInNetNS(nsh, "teredo", Options{Backend: backend, Queues: 2})
			if err != nil {
				t.Fatalf("Open 2 queues: %v", err)
			}
			if len(devs) != 2 || devs[0].Name() != "teredo" || devs[1].Name() != "teredo" {
				t.Fatalf("queues %d, names %q", len(devs), []string{devs[0].Name(), devs[len(devs)-1].Name()})
			}
			l, err := netcfg.NewLink(nlh, "teredo")
			if err != nil {
				t.Fatal(err)
			}
			nstest.Configure(t, nlh, l)
			done := make(chan error, len(devs))
			for _, d := range devs {
				go func() { done <- runReflector(d, nstest.TunAddr, nstest.Native) }()
			}
			var ln net.Listener
			if err := netcfg.RunInNetNS(nsh, func() (err error) {
				ln, err = net.Listen("tcp6", net.JoinHostPort(nstest.TunAddr.String(), "0"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			lb := &loopback{dev: devs[0], listen: ln}
			port := ln.Addr().(*net.TCPAddr).Port
			lb.dial = func(ctx context.Context) (c net.Conn, err error) {
				err = netcfg.RunInNetNS(nsh, func() error {
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: nstest.TunAddr.AsSlice()}}
					c, err = d.DialContext(ctx, "tcp6", net.JoinHostPort(nstest.Native.String(), fmt.Sprint(port)))
					return err
				})
				return c, err
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			// One connection at a time: the listener's Accept pairs with
			// the dial.
			for i := range 6 {
				data := make([]byte, 1<<20+i)
				rand.Read(data)
				got, err := lb.transfer(ctx, data)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("connection %d: %d of %d bytes, %v", i, len(got), len(data), err)
				}
			}
			for i, d := range devs {
				if s, ok := d.(OffloadStatser); ok {
					t.Logf("queue %d: %+v", i, s.OffloadStats())
				}
				d.Close()
			}
			for range devs {
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("reflector: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("reflector still running 5s after Close")
				}
			}
			nstest.WaitLinkGone(t, nlh, "teredo")
		})
	}
}

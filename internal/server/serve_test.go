// SPDX-License-Identifier: MIT

package server

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/internal/fakeio"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// fakeRaw is the raw IPv6 socket of a server under test. send can be made
// to block, to hold a loop in the middle of a batch.
type fakeRaw struct {
	mu          sync.Mutex
	closed      int  // close calls
	sentClosed  bool // a send ran on a closed socket
	sent        int
	block       chan struct{} // if set, send waits for it to close
	blockedOnce sync.Once
	entered     chan struct{} // closed when a send starts
}

func (f *fakeRaw) send(pkt []byte, dst netip.Addr) error {
	f.blockedOnce.Do(func() { close(f.entered) })
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed > 0 {
		f.sentClosed = true
		return net.ErrClosed
	}
	f.sent++
	return nil
}

func (f *fakeRaw) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

// testServer is a server on fake sockets: one pair, primary and secondary.
func testServer(t *testing.T, rate uint32) (*Server, [2]*fakeio.Conn, *fakeRaw) {
	t.Helper()
	cfg, err := Config{Primary: primary, RateLimit: rate}.Check()
	if err != nil {
		t.Fatal(err)
	}
	conns := [2]*fakeio.Conn{fakeio.NewConn(), fakeio.NewConn()}
	conns[0].Local = netip.AddrPortFrom(cfg.Primary, proto.Port)
	conns[1].Local = netip.AddrPortFrom(cfg.Secondary, proto.Port)
	raw := &fakeRaw{entered: make(chan struct{})}
	s := newServer(cfg, [2][]udpio.PacketConn{{conns[0]}, {conns[1]}}, raw, slog.New(slog.DiscardHandler))
	t.Cleanup(s.Close)
	return s, conns, raw
}

// TestStopWhileSending: a loop in the middle of a batch when the server
// stops finishes it on an open raw socket, which is closed once, after
// every loop has returned. It used to be closed at once, while the loop
// could still send on it, and closed again by Run's deferred Close.
func TestStopWhileSending(t *testing.T) {
	s, conns, raw := testServer(t, 0)
	raw.block = make(chan struct{})
	test := echo(teredoOf(primary, clientUDP), native, proto.ICMPv6EchoRequest, 8)
	once := false
	conns[0].ReadFunc = func(msgs []udpio.Message) (int, error) {
		if once {
			return 0, net.ErrClosed
		}
		once = true
		msgs[0].N, msgs[0].Addr = copy(msgs[0].Buf, test), clientUDP
		return 1, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-raw.entered // the loop is sending the connectivity test
	cancel()
	// Serve stops the loops by closing the UDP sockets; give it every
	// chance to (wrongly) close the raw socket too before the send ends.
	deadline := time.Now().Add(5 * time.Second)
	for conns[1].Reads() == 0 || !closed(conns[0]) || !closed(conns[1]) {
		if time.Now().After(deadline) {
			t.Fatal("Serve did not close its UDP sockets")
		}
		time.Sleep(time.Millisecond)
	}
	close(raw.block)
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	s.Close() // Run's deferred Close
	if raw.sentClosed || raw.sent != 1 {
		t.Errorf("connectivity test sent on a closed socket: %v, sent %d", raw.sentClosed, raw.sent)
	}
	if raw.closed != 1 {
		t.Errorf("raw socket closed %d times, want once", raw.closed)
	}
}

// closed reports whether c was closed.
func closed(c *fakeio.Conn) bool {
	_, err := c.WriteBatch(nil)
	return err == net.ErrClosed
}

// TestRawCloseOnce: closing the raw socket twice must not close a
// descriptor that took its number in between.
func TestRawCloseOnce(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	r := &rawIPv6{fd: p[0]}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	var q [2]int
	if err := unix.Pipe2(q[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(q[0])
	defer unix.Close(q[1])
	if q[0] != p[0] && q[1] != p[0] {
		t.Skipf("descriptor %d not reused (got %v)", p[0], q)
	}
	r.close()
	for _, fd := range q {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			t.Errorf("descriptor %d, which took the raw socket's number, was closed: %v", fd, err)
		}
	}
}

// TestRateLimitServerWide: solicitations from one /24 spread over the
// primary and the secondary sockets get at most the rate (its burst) of
// answers in all, not the rate per socket.
func TestRateLimitServerWide(t *testing.T) {
	const rate = 10
	s, conns, _ := testServer(t, rate)
	rs := proto.AppendRouterSolicitation(nil, nonce, false)
	for i, c := range conns {
		sent := false
		c.ReadFunc = func(msgs []udpio.Message) (int, error) {
			if sent {
				return 0, net.ErrClosed
			}
			sent = true
			for j := range msgs[:rate] {
				msgs[j].N = copy(msgs[j].Buf, rs)
				msgs[j].Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(j)}), uint16(40000+100*i+j))
			}
			return rate, nil
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	// Every solicitation is either answered (the answer sent) or limited.
	for uint64(len(conns[0].Sent())+len(conns[1].Sent()))+s.Stats().Dropped[DropRateLimited] < 2*rate {
		if time.Now().After(deadline) {
			t.Fatalf("solicitations not handled: %+v", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if got := len(conns[0].Sent()) + len(conns[1].Sent()); got != rate || st.Answered != rate || st.Dropped[DropRateLimited] != rate {
		t.Errorf("%d answers sent (answered %d, limited %d) to one /24 from both sockets, want %d", got, st.Answered, st.Dropped[DropRateLimited], rate)
	}
}

// eachConn is a socket read through ReadEach, whose Close waits for a
// ReadEach in progress to return, as a udpio.Conn's does (the net package
// waits for the descriptor's users), and whose writes block, once enter is
// closed, until Close: a send buffer that stays full.
type eachConn struct {
	fakeio.Conn
	give     []byte         // one datagram ReadEach hands over, then waits
	from     netip.AddrPort // its source
	inEach   sync.WaitGroup // held while ReadEach runs
	entered  chan struct{}  // closed when a write starts blocking
	block    bool
	enterOne sync.Once
	closed   chan struct{}
	once     sync.Once
}

func newEachConn(local netip.AddrPort) *eachConn {
	c := &eachConn{Conn: *fakeio.NewConn(), entered: make(chan struct{}), closed: make(chan struct{})}
	c.Local = local
	return c
}

func (c *eachConn) ReadEach(msgs []udpio.Message, handle func(int) error) error {
	c.inEach.Add(1)
	defer c.inEach.Done()
	if c.give != nil {
		msgs[0].N, msgs[0].Addr = copy(msgs[0].Buf, c.give), c.from
		c.give = nil
		if err := handle(1); err != nil {
			return err
		}
	}
	<-c.closed
	return net.ErrClosed
}

func (c *eachConn) WriteBatch(msgs []udpio.Message) (int, error) {
	if c.block {
		c.enterOne.Do(func() { close(c.entered) })
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.WriteBatch(msgs)
}

func (c *eachConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.inEach.Wait()
	return nil
}

// TestStopWhileWritingToTheOtherSocket: a loop answering a cone
// solicitation writes from the other address's socket, whose buffer is
// full, when the server stops. Its own socket's Close waits for it, and it
// waits for the other socket: closing them one after the other hung.
func TestStopWhileWritingToTheOtherSocket(t *testing.T) {
	cfg, err := Config{Primary: primary}.Check()
	if err != nil {
		t.Fatal(err)
	}
	a := newEachConn(netip.AddrPortFrom(cfg.Primary, proto.Port))
	b := newEachConn(netip.AddrPortFrom(cfg.Secondary, proto.Port))
	a.give, a.from = proto.AppendRouterSolicitation(nil, nonce, true), clientUDP
	b.block = true
	s := newServer(cfg, [2][]udpio.PacketConn{{a}, {b}}, &fakeRaw{entered: make(chan struct{})}, slog.New(slog.DiscardHandler))
	t.Cleanup(s.Close)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-b.entered // the answer is being sent from the secondary socket
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		b.Close() // unblock the loop, so that the test's own cleanup ends
		t.Fatal("Serve did not stop: closing the primary socket waits for its loop, which waits for the secondary")
	}
}

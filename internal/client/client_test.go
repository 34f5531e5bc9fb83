// SPDX-License-Identifier: MIT

package client

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// fakeConn is the Teredo socket of a Client under test: reads fail with
// readErr (or wait until Close), sends are recorded.
type fakeConn struct {
	mu      sync.Mutex
	readErr error
	reads   int
	sent    []udpio.Message
	closed  chan struct{}
	once    sync.Once
	// onWrite, if set, sees each datagram as it is sent, before
	// WriteBatch returns: a fast network's answer.
	onWrite func(udpio.Message)
}

func newFakeConn() *fakeConn { return &fakeConn{closed: make(chan struct{})} }

func (f *fakeConn) ReadBatch(msgs []udpio.Message) (int, error) {
	f.mu.Lock()
	f.reads++
	err := f.readErr
	f.mu.Unlock()
	select {
	case <-f.closed:
		return 0, net.ErrClosed
	default:
	}
	if err != nil {
		return 0, err
	}
	<-f.closed
	return 0, net.ErrClosed
}

func (f *fakeConn) WriteBatch(msgs []udpio.Message) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		f.sent = append(f.sent, udpio.Message{Buf: append([]byte(nil), m.Buf[:m.N]...), N: m.N, Addr: m.Addr})
		if f.onWrite != nil {
			f.onWrite(m)
		}
	}
	return len(msgs), nil
}

func (f *fakeConn) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("10.0.0.2:40000") }

func (f *fakeConn) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeConn) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// fakeDev is the tunnel device of a Client under test: reads fail with
// readErr (or wait until Close); writes are recorded, and the packets
// whose first byte is in refuse fail.
type fakeDev struct {
	mu      sync.Mutex
	readErr error
	reads   int
	written [][]byte
	refuse  map[byte]bool
	closed  chan struct{}
	once    sync.Once
}

func newFakeDev() *fakeDev { return &fakeDev{closed: make(chan struct{}), refuse: map[byte]bool{}} }

func (f *fakeDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	f.mu.Lock()
	f.reads++
	err := f.readErr
	f.mu.Unlock()
	select {
	case <-f.closed:
		return 0, net.ErrClosed
	default:
	}
	if err != nil {
		return 0, err
	}
	<-f.closed
	return 0, net.ErrClosed
}

func (f *fakeDev) Write(bufs [][]byte, offset int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range bufs {
		if len(b) > offset && f.refuse[b[offset]] {
			return i, syscall.EINVAL
		}
		f.written = append(f.written, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}

func (f *fakeDev) BatchSize() int    { return 1 }
func (f *fakeDev) MTU() (int, error) { return 1280, nil }
func (f *fakeDev) Name() string      { return "teredo" }
func (f *fakeDev) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeDev) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// newTestClient is a Client around fakes, with no helper: enough for its
// loops.
func newTestClient(t *testing.T) (*Client, *fakeConn, *fakeDev) {
	t.Helper()
	conn, dev := newFakeConn(), newFakeDev()
	c := &Client{
		log:   slog.New(slog.DiscardHandler),
		dev:   dev,
		conn:  conn,
		eng:   tunnel.New(tunnel.Config{Mode: tunnel.Client, Prefix: proto.DefaultPrefix}),
		start: time.Now(),
	}
	c.initMaintenance()
	c.servers.Store(&[2]netip.Addr{})
	c.status.Store(&Status{})
	t.Cleanup(func() { conn.Close(); dev.Close() })
	return c, conn, dev
}

// TestReadLoopsGiveUp: a read that fails for good ends the loop with the
// error after a bounded run, pausing between tries, instead of spinning.
func TestReadLoopsGiveUp(t *testing.T) {
	broken := errors.New("read: bad file descriptor")
	cases := []struct {
		name  string
		setup func(c *fakeConn, d *fakeDev)
		loop  func(c *Client) error
		reads func(c *fakeConn, d *fakeDev) int
	}{
		{"socket", func(c *fakeConn, _ *fakeDev) { c.readErr = broken }, (*Client).socketLoop,
			func(c *fakeConn, _ *fakeDev) int { return c.readCount() }},
		{"tunnel", func(_ *fakeConn, d *fakeDev) { d.readErr = broken }, (*Client).tunnelLoop,
			func(_ *fakeConn, d *fakeDev) int { return d.readCount() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, conn, dev := newTestClient(t)
			tc.setup(conn, dev)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- tc.loop(c) }()
			select {
			case err := <-done:
				if !errors.Is(err, broken) {
					t.Errorf("loop ended with %v, want the read error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("loop still running after %d failed reads", tc.reads(conn, dev))
			}
			took := time.Since(start)
			if n := tc.reads(conn, dev); n != maxErrorRun+1 {
				t.Errorf("%d reads, want %d", n, maxErrorRun+1)
			}
			if got := c.Stats().ReadErrors; got != maxErrorRun+1 {
				t.Errorf("ReadErrors %d, want %d", got, maxErrorRun+1)
			}
			// The pauses add up to about a second: no spinning.
			if took < 500*time.Millisecond {
				t.Errorf("gave up after %v: no pause between failed reads", took)
			}
			t.Logf("gave up after %d reads in %v", maxErrorRun+1, took.Round(time.Millisecond))
		})
	}
}

// TestErrorRun: the run gives up on failure maxErrorRun+1, and a good
// read starts it over.
func TestErrorRun(t *testing.T) {
	var r errorRun
	err := errors.New("ENOBUFS")
	r.n = maxErrorRun - 1 // skip most pauses
	if got := r.failed("read", err); got != nil {
		t.Fatalf("failure %d gave up: %v", maxErrorRun, got)
	}
	r.reset()
	if got := r.failed("read", err); got != nil {
		t.Fatalf("first failure after a good read gave up: %v", got)
	}
	r.n = maxErrorRun
	if got := r.failed("read", err); !errors.Is(got, err) {
		t.Errorf("failure %d: %v, want the error", maxErrorRun+1, got)
	}
}

// qualifiedClient is a test Client whose Engine is qualified with server
// 192.0.2.10 (secondary .11), mapped to 198.51.100.2:40000.
func qualifiedClient(t *testing.T) (c *Client, conn *fakeConn, dev *fakeDev, self netip.Addr, server netip.AddrPort) {
	c, conn, dev = newTestClient(t)
	primary, secondary := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	server = netip.AddrPortFrom(primary, proto.Port)
	self = proto.Address{Prefix: proto.DefaultPrefix, Server: primary, MappedPort: 40000,
		MappedAddr: netip.MustParseAddr("198.51.100.2")}.Addr()
	c.servers.Store(&[2]netip.Addr{primary, secondary})
	c.eng.SetSelf(tunnel.Self{Addr: self, Server: server})
	return c, conn, dev, self, server
}

// TestHeardAndReceived: only a datagram from our server that the Engine
// accepts counts as heard from the server (postponing the refresh), and
// only one it delivers to the host as received (answering host traffic,
// which otherwise asks for an early refresh); forged, malformed or refused
// datagrams count for neither.
func TestHeardAndReceived(t *testing.T) {
	peerMapping := netip.MustParseAddrPort("203.0.113.5:5000")
	peer := proto.Address{Prefix: proto.DefaultPrefix, Server: netip.MustParseAddr("192.0.2.10"),
		MappedPort: peerMapping.Port(), MappedAddr: peerMapping.Addr()}.Addr()
	other := proto.Address{Prefix: proto.DefaultPrefix, Server: netip.MustParseAddr("192.0.2.10"),
		MappedPort: 1234, MappedAddr: netip.MustParseAddr("198.51.100.9")}.Addr()
	stranger := netip.MustParseAddrPort("203.0.113.77:3544")
	type datagram struct {
		b    func(self netip.Addr) []byte
		from func(server netip.AddrPort) netip.AddrPort
	}
	fromServer := func(s netip.AddrPort) netip.AddrPort { return s }
	fromPeer := func(netip.AddrPort) netip.AddrPort { return peerMapping }
	fromStranger := func(netip.AddrPort) netip.AddrPort { return stranger }
	indirectBubble := func(self netip.Addr) []byte {
		return proto.AppendBubble(proto.AppendOrigin(nil, peerMapping), peer, self, 0)
	}
	cases := []struct {
		name            string
		in              datagram
		heard, received bool
		maintenance     bool
	}{
		{"bubble forwarded by our server", datagram{indirectBubble, fromServer}, true, false, false},
		{"malformed from our server", datagram{func(netip.Addr) []byte { return []byte{0, 0, 1, 2, 3} }, fromServer}, false, false, false},
		{"bubble for someone else from our server", datagram{func(netip.Addr) []byte {
			return proto.AppendBubble(proto.AppendOrigin(nil, peerMapping), peer, other, 0)
		}, fromServer}, false, false, false},
		{"advertisement-like from our server", datagram{func(netip.Addr) []byte { return []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} }, fromServer}, false, false, true},
		{"indirect bubble from a stranger", datagram{indirectBubble, fromStranger}, false, false, false},
		{"garbage from a stranger", datagram{func(netip.Addr) []byte { return []byte("hello") }, fromStranger}, false, false, false},
		{"packet from a Teredo peer", datagram{func(self netip.Addr) []byte {
			return proto.AppendEchoRequest(nil, proto.EchoFields{Src: peer, Dst: self, HopLimit: 64, ID: 1, Seq: 1})
		}, fromPeer}, false, true, false},
		{"packet from a peer, wrong mapping", datagram{func(self netip.Addr) []byte {
			return proto.AppendEchoRequest(nil, proto.EchoFields{Src: peer, Dst: self, HopLimit: 64, ID: 1, Seq: 1})
		}, fromStranger}, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, dev, self, server := qualifiedClient(t)
			b := tc.in.b(self)
			msgs := []udpio.Message{{Buf: b, N: len(b), Addr: tc.in.from(server)}}
			var out tunnel.Out
			c.receive(msgs, &out)
			if err := c.flush(&out); err != nil {
				t.Fatal(err)
			}
			if heard := c.lastHeard.Load() != 0; heard != tc.heard {
				t.Errorf("heard from the server: %v, want %v", heard, tc.heard)
			}
			if received := c.lastRecv.Load() != 0; received != tc.received {
				t.Errorf("received: %v, want %v", received, tc.received)
			}
			if got := len(c.maint) > 0; got != tc.maintenance {
				t.Errorf("handed to the state machine: %v, want %v", got, tc.maintenance)
			}
			t.Logf("engine: %v; written to the host: %d", c.eng.Stats(), len(dev.written))
		})
	}
}

// TestFlushRefusedPacket: a packet the tunnel refuses is skipped and the
// rest written, and Out keeps its whole backing array, cleared, for the
// next batch.
func TestFlushRefusedPacket(t *testing.T) {
	c, _, dev := newTestClient(t)
	dev.refuse[0xbb] = true
	var out tunnel.Out
	out.Local = make([][]byte, 0, 8)
	for _, first := range []byte{0xaa, 0xbb, 0xcc, 0xbb, 0xdd} {
		out.Local = append(out.Local, []byte{first, 1, 2})
	}
	if err := c.flush(&out); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, p := range dev.written {
		got = append(got, p[0])
	}
	if string(got) != "\xaa\xcc\xdd" {
		t.Errorf("written % x, want aa cc dd", got)
	}
	if n := c.Stats().TunWriteErrors; n != 2 {
		t.Errorf("TunWriteErrors %d, want 2", n)
	}
	if len(out.Local) != 0 || cap(out.Local) != 8 {
		t.Errorf("out.Local after flush: len %d cap %d, want 0 and 8", len(out.Local), cap(out.Local))
	}
	for i, p := range out.Local[:cap(out.Local)] {
		if p != nil {
			t.Errorf("out.Local[%d] still holds a packet", i)
		}
	}
}

// TestToMaintenance: advertisements are copied into preallocated buffers;
// once the queue is full the rest are counted and dropped, and nothing
// allocates either way.
func TestToMaintenance(t *testing.T) {
	c, _, _ := newTestClient(t)
	from := netip.MustParseAddrPort("192.0.2.10:3544")
	b := make([]byte, 120)
	b[1] = 1
	if n := testing.AllocsPerRun(10*maintQueue, func() { c.toMaintenance(b, from) }); n != 0 {
		t.Errorf("%.1f allocations per advertisement", n)
	}
	if len(c.maint) != maintQueue {
		t.Fatalf("%d queued, want %d", len(c.maint), maintQueue)
	}
	st := c.Stats()
	if st.Maintenance != st.MaintOverflow+maintQueue || st.MaintOverflow == 0 {
		t.Errorf("maintenance %d overflow %d, want %d queued and the rest counted", st.Maintenance, st.MaintOverflow, maintQueue)
	}
	// The maintenance goroutine takes one and gives its buffer back; the
	// next one fits and is a copy.
	d := <-c.maint
	c.maintDone(d)
	b[5] = 0x55
	c.toMaintenance(b, from)
	b[5] = 0
	var last datagram
	for len(c.maint) > 0 {
		last = <-c.maint
	}
	if len(last.b) != len(b) || last.b[5] != 0x55 || last.from != from {
		t.Errorf("queued %d bytes (byte 5 %#x) from %v, want a copy of the %d bytes from %v", len(last.b), last.b[5], last.from, len(b), from)
	}
}

// TestAnswerBeforeSendReturns: the server's answer can reach the socket loop
// before the maintenance goroutine has finished sending the solicitation.
// It must still be recognised as maintenance traffic and qualify the
// client; it used to go to the Engine (the server addresses were published
// only after the send) and qualification waited 4 s for the retry.
func TestAnswerBeforeSendReturns(t *testing.T) {
	c, conn, _ := newTestClient(t)
	primary, secondary := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	mapping := netip.MustParseAddrPort("198.51.100.2:40000")
	conn.onWrite = func(m udpio.Message) {
		var e proto.Envelope
		if err := proto.ParseEnvelope(m.Buf[:m.N], &e); err != nil {
			t.Errorf("solicitation: %v", err)
			return
		}
		ra := proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: e.Auth.Nonce, Client: mapping,
			Dst: e.IPv6.Src(), Server: primary, Prefix: proto.DefaultPrefix, MTU: 1280})
		var out tunnel.Out
		c.receive([]udpio.Message{{Buf: ra, N: len(ra), Addr: m.Addr}}, &out)
	}
	m := NewMachine(MachineConfig{Log: c.log})
	var (
		a       Actions
		applied Status
		msgs    []udpio.Message
	)
	now := time.Now()
	m.Start(now, &a)
	a.Reset()
	m.Resolved(now, primary, secondary, nil, &a)
	if err := c.act(t.Context(), m, &a, &applied, &msgs, nil); err != nil {
		t.Fatal(err)
	}
	if len(conn.sent) != 1 {
		t.Fatalf("sent %d datagrams, want the solicitation", len(conn.sent))
	}
	if s := c.eng.Stats(); s.FromUDP != 0 {
		t.Fatalf("the answer went to the Engine: %+v", s)
	}
	select {
	case d := <-c.maint:
		if err := m.Receive(d.at, d.b, d.from, &a); err != nil {
			t.Fatalf("answer refused: %v", err)
		}
	default:
		t.Fatal("the answer did not reach the state machine")
	}
	if st := m.Status(); st.Phase != PhaseQualified || st.Mapping != mapping {
		t.Fatalf("status %+v, want qualified with mapping %v", st, mapping)
	}
}

// SPDX-License-Identifier: MIT

package client

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/fakeio"
	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/loop"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// newTestClient is a Client around fakes, with no helper: enough for its
// loops.
func newTestClient(t *testing.T) (*Client, *fakeio.Conn, *fakeio.Dev) {
	t.Helper()
	conn, dev := fakeio.NewConn(), fakeio.NewDev()
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
		setup func(c *fakeio.Conn, d *fakeio.Dev)
		loop  func(c *Client, ctx context.Context) error
		reads func(c *fakeio.Conn, d *fakeio.Dev) int
	}{
		{"socket", func(c *fakeio.Conn, _ *fakeio.Dev) {
			c.ReadFunc = func([]udpio.Message) (int, error) { return 0, broken }
		}, (*Client).socketLoop, func(c *fakeio.Conn, _ *fakeio.Dev) int { return c.Reads() }},
		{"tunnel", func(_ *fakeio.Conn, d *fakeio.Dev) {
			d.ReadFunc = func([][]byte, []int, int) (int, error) { return 0, broken }
		}, (*Client).tunnelLoop, func(_ *fakeio.Conn, d *fakeio.Dev) int { return d.Reads() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, conn, dev := newTestClient(t)
			tc.setup(conn, dev)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- tc.loop(c, t.Context()) }()
			select {
			case err := <-done:
				if !errors.Is(err, broken) {
					t.Errorf("loop ended with %v, want the read error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("loop still running after %d failed reads", tc.reads(conn, dev))
			}
			took := time.Since(start)
			if n := tc.reads(conn, dev); n != loop.MaxErrorRun+1 {
				t.Errorf("%d reads, want %d", n, loop.MaxErrorRun+1)
			}
			if got := c.Stats().ReadErrors; got != loop.MaxErrorRun+1 {
				t.Errorf("ReadErrors %d, want %d", got, loop.MaxErrorRun+1)
			}
			t.Logf("gave up after %d reads in %v", loop.MaxErrorRun+1, took.Round(time.Millisecond))
		})
	}
}

// qualifiedClient is a test Client whose Engine is qualified with server
// 192.0.2.10 (secondary .11), mapped to 198.51.100.2:40000.
func qualifiedClient(t *testing.T) (c *Client, conn *fakeio.Conn, dev *fakeio.Dev, self netip.Addr, server netip.AddrPort) {
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
			t.Logf("engine: %v; written to the host: %d", c.eng.Stats(), len(dev.Written()))
		})
	}
}

// TestFlushRefusedPacket: a packet the tunnel refuses is skipped and the
// rest written, and Out keeps its whole backing array, cleared, for the
// next batch.
func TestFlushRefusedPacket(t *testing.T) {
	c, _, dev := newTestClient(t)
	dev.Refuse = func(pkt []byte) bool { return len(pkt) > 0 && pkt[0] == 0xbb }
	var out tunnel.Out
	out.Local = make([][]byte, 0, 8)
	for _, first := range []byte{0xaa, 0xbb, 0xcc, 0xbb, 0xdd} {
		out.Local = append(out.Local, []byte{first, 1, 2})
	}
	if err := c.flush(&out); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, p := range dev.Written() {
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
	conn.OnWrite = func(m udpio.Message) {
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
	apply := func(st Status) error { _, err := c.apply(st, &applied); return err }
	if err := c.act(t.Context(), m, &a, apply, &msgs, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(conn.Sent()); n != 1 {
		t.Fatalf("sent %d datagrams, want the solicitation", n)
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

// fakeHelper is the privileged helper of a Client under test: its first
// failUps Up calls fail.
type fakeHelper struct {
	mu      sync.Mutex
	failUps int
	ups     []netip.Addr
	downs   int
	done    chan struct{}
}

func (h *fakeHelper) Up(addr netip.Addr, mtu int) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ups = append(h.ups, addr)
	if len(h.ups) <= h.failUps {
		return hookNotRun, errors.New("privileged helper: netlink: resource temporarily unavailable")
	}
	return 0, nil
}

func (h *fakeHelper) Down() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.downs++
	return 0, nil
}

func (h *fakeHelper) Done() <-chan struct{}     { return h.done }
func (h *fakeHelper) Close(time.Duration) error { return nil }

func (h *fakeHelper) upCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ups)
}

// TestInterfaceRetried: when the helper cannot configure the interface of
// a qualified client, the failure is reported (not "interface up"), the
// status says the interface is not configured, the Engine is left alone,
// and the change is retried until it works.
func TestInterfaceRetried(t *testing.T) {
	c, conn, _ := newTestClient(t)
	var logs safeBuffer
	c.log = slog.New(slog.NewTextHandler(&logs, nil))
	c.cfg = Config{Server: "192.0.2.10", Refresh: 30 * time.Second}
	h := &fakeHelper{failUps: 2, done: make(chan struct{})}
	c.helper, c.applyRetryMin = h, 20*time.Millisecond
	primary := netip.MustParseAddr("192.0.2.10")
	mapping := netip.MustParseAddrPort("198.51.100.2:40000")
	conn.OnWrite = func(m udpio.Message) { // the server answers the qualifying solicitation
		var e proto.Envelope
		if proto.ParseEnvelope(m.Buf[:m.N], &e) != nil || m.Addr.Addr() != primary {
			return
		}
		if rs, err := proto.ParseRouterSolicitation(e.IPv6); err != nil || rs.Cone {
			return
		}
		ra := proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: e.Auth.Nonce, Client: mapping,
			Dst: e.IPv6.Src(), Server: primary, Prefix: proto.DefaultPrefix, MTU: 1280})
		var out tunnel.Out
		c.receive([]udpio.Message{{Buf: ra, N: len(ra), Addr: m.Addr}}, &out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.maintain(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("maintain: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	sawUnconfigured := false
	for !c.Status().Configured {
		if st := c.Status(); st.Phase == PhaseQualified && h.upCalls() > 0 {
			sawUnconfigured = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("interface never configured after %d attempts:\n%s", h.upCalls(), logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	st := c.Status()
	if n := h.upCalls(); n != 3 || !sawUnconfigured || st.Phase != PhaseQualified {
		t.Errorf("%d Up calls (want 2 failed and 1 good), saw unconfigured %v, status %+v", n, sawUnconfigured, st)
	}
	if got := c.Stats().HelperFailures; got != 2 {
		t.Errorf("HelperFailures %d, want 2", got)
	}
	// Reported up once, after the last failure.
	l := logs.String()
	if n := strings.Count(l, "Teredo interface up"); n != 1 ||
		strings.Index(l, "Teredo interface up") < strings.LastIndex(l, "cannot configure the tunnel interface") {
		t.Errorf("\"Teredo interface up\" logged %d times, want once after the failures:\n%s", n, l)
	}
	// The Engine knows our address now: a host packet is not refused as
	// unqualified.
	var out tunnel.Out
	c.eng.FromTunnel(proto.AppendEchoRequest(nil, proto.EchoFields{Src: st.Addr, Dst: netip.MustParseAddr("2001:db8:2::2"), HopLimit: 64, ID: 1, Seq: 1}), &out)
	if s := c.eng.Stats(); s.Dropped[tunnel.DropNotQualified] != 0 {
		t.Errorf("engine not qualified after the interface was configured: %+v", s)
	}
}

// safeBuffer is a bytes.Buffer for a logger written from one goroutine and
// read from another.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBuffersCarryMaxMTU: a datagram for the largest MTU the client
// applies, with the Teredo headers, fits the socket buffers.
func TestBuffersCarryMaxMTU(t *testing.T) {
	pkt := proto.AppendEchoRequest(nil, proto.EchoFields{Src: netip.MustParseAddr("2001:db8::1"),
		Dst: netip.MustParseAddr("2001::1"), HopLimit: 64, Data: make([]byte, maxMTU-proto.IPv6HeaderLen-8)})
	auth := proto.AppendNonceAuth(nil, [proto.NonceLen]byte{})
	d := append(proto.AppendOrigin(auth, netip.MustParseAddrPort("192.0.2.10:3544")), pkt...)
	if len(pkt) != maxMTU || len(d) > udpBufSize {
		t.Errorf("a %d-byte packet with headers is %d bytes; the buffers hold %d", len(pkt), len(d), udpBufSize)
	}
}

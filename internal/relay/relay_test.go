// SPDX-License-Identifier: MIT

package relay

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/fakeio"
	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// newTestRelay is a cone relay around fakes.
func newTestRelay(t *testing.T) (*Relay, *fakeio.Conn, *fakeio.Dev) {
	t.Helper()
	conn, dev := fakeio.NewConn(), fakeio.NewDev()
	cfg, err := Config{}.Check()
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{cfg: cfg, log: slog.New(slog.DiscardHandler), dev: dev, conn: conn,
		eng: tunnel.New(tunnel.Config{Mode: tunnel.ConeRelay, Prefix: proto.DefaultPrefix})}
	t.Cleanup(r.Close)
	return r, conn, dev
}

// TestReadBurstSurvived: a burst of ENOBUFS lasting 50 ms is a transient
// error: the socket loop pauses between reads and carries on (it used to
// give up after 100 failures, reached in microseconds).
func TestReadBurstSurvived(t *testing.T) {
	r, conn, _ := newTestRelay(t)
	start := time.Now()
	conn.ReadFunc = func([]udpio.Message) (int, error) {
		if time.Since(start) < 50*time.Millisecond {
			return 0, syscall.ENOBUFS
		}
		return 0, net.ErrClosed
	}
	if err := r.socketLoop(t.Context()); err != nil {
		t.Fatalf("socket loop gave up on a 50 ms burst after %d reads: %v", conn.Reads(), err)
	}
	if n := r.Stats().UDPReadErrors; n == 0 || n > 100 {
		t.Errorf("%d read errors counted, want 1-100", n)
	}
}

// TestLoopEndsWhenSocketCloses: once a flush finds the socket closed, the
// tunnel loop ends instead of reading on.
func TestLoopEndsWhenSocketCloses(t *testing.T) {
	r, conn, dev := newTestRelay(t)
	conn.WriteErr = net.ErrClosed
	peer := proto.Address{Prefix: proto.DefaultPrefix, Server: netip.MustParseAddr("192.0.2.10"),
		MappedPort: 40000, MappedAddr: netip.MustParseAddr("198.51.100.2")}.Addr()
	pkt := proto.AppendEchoRequest(nil, proto.EchoFields{Src: netip.MustParseAddr("2001:db8:2::2"), Dst: peer, HopLimit: 64, ID: 1, Seq: 1})
	dev.ReadFunc = func(bufs [][]byte, sizes []int, _ int) (int, error) {
		if dev.Reads() > 1 {
			t.Error("the tunnel loop read on after its socket was closed")
			return 0, net.ErrClosed
		}
		sizes[0] = copy(bufs[0], pkt)
		return 1, nil
	}
	if err := r.tunnelLoop(t.Context()); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("tunnel loop: %v", err)
	}
	if s := r.EngineStats(); s.IndirectBubbles != 1 {
		t.Errorf("engine %+v, want one bubble produced", s)
	}
}

// SPDX-License-Identifier: MIT

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/loop"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/xdpio"
)

// The AF_XDP path (--xdp IFACE): pkg/xdpio's program steers UDP 3544 on both
// server addresses into AF_XDP sockets, one per receive queue, and the
// server reads and answers each with a loop of its own. Everything else on
// the interface, and what the program passes (fragments, IP options), goes
// through the kernel as before; the Group's own kernel sockets on port 3544
// receive the latter, so the server opens no UDP sockets of its own on
// that path. Connectivity tests still leave through the raw IPv6 socket.
//
// Privileges: Attach needs CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and
// CAP_IPC_LOCK (or a large enough RLIMIT_MEMLOCK for the UMEM) and runs in
// Listen, before the drop; afterwards the rings, the kernel sockets and
// the next-hop resolver need none, so the server drops every capability on
// this path as on the socket path.

// xdpConn is what a loop needs of an xdpio.Conn: one receive queue's
// datagrams to and from either server address (Message.Local says which).
type xdpConn interface {
	ReadBatch(msgs []xdpio.Message) (int, error)
	WriteBatch(msgs []xdpio.Message) (int, error)
	Close() error
}

// xdpPath is the attached program and its queues' Conns.
type xdpPath struct {
	group interface{ Close() error } // *xdpio.Group; nil in tests
	conns []xdpConn
	stats []*loopStats
}

// attachXDP steers the server's UDP port on ifname into AF_XDP sockets. When
// it cannot (no such interface, a kernel or driver without XDP, missing
// privileges, the hook in use), it says why in one line and returns nil:
// the server then serves through UDP sockets.
func attachXDP(ifname string, cfg Config, log *slog.Logger) *xdpPath {
	g, err := xdpio.Attach(xdpio.Config{Interface: ifname, Addrs: []netip.Addr{cfg.Primary, cfg.Secondary}, Port: proto.Port})
	if err != nil {
		log.Warn("AF_XDP unavailable, serving through UDP sockets", "interface", ifname, "err", err)
		return nil
	}
	p := &xdpPath{group: g}
	zeroCopy := false
	for _, c := range g.Conns() {
		p.conns = append(p.conns, c)
		zeroCopy = c.Stats().ZeroCopy
	}
	log.Info("AF_XDP attached", "interface", ifname, "mode", g.Mode().String(), "queues", len(p.conns), "zero_copy", zeroCopy)
	return p
}

// close detaches the program and closes the Conns, waking their loops.
func (p *xdpPath) close() {
	if p == nil {
		return
	}
	if p.group != nil {
		_ = p.group.Close()
		return
	}
	for _, c := range p.conns {
		c.Close()
	}
}

// useXDP makes s serve p's Conns, with a loop and counters each.
func (s *Server) useXDP(p *xdpPath) {
	s.xdp = p
	for range p.conns {
		ls := new(loopStats)
		p.stats = append(p.stats, ls)
		s.stats = append(s.stats, ls)
	}
}

// serveXDP starts a loop per AF_XDP Conn in g.
func (s *Server) serveXDP(g *loop.Group) {
	if s.xdp == nil {
		return
	}
	for i, c := range s.xdp.conns {
		st := s.xdp.stats[i]
		g.Go(func(ctx context.Context) error {
			return s.xdpLoop(ctx, c, fmt.Sprintf("read on AF_XDP queue %d", i), st)
		})
	}
}

// xdpLoop is loop for an AF_XDP Conn: a batch may hold datagrams sent to
// either address, and each answer leaves from the address the handler
// chose (Local).
func (s *Server) xdpLoop(ctx context.Context, c xdpConn, what string, st *loopStats) error {
	in := make([]xdpio.Message, xdpio.MaxBatch)
	inBuf := make([]byte, xdpio.MaxBatch*bufSize)
	for i := range in {
		in[i].Buf = inBuf[i*bufSize : (i+1)*bufSize]
	}
	outBuf := make([]byte, xdpio.MaxBatch*bufSize)
	out := make([]xdpio.Message, 0, xdpio.MaxBatch)
	cfg := s.config() // its addresses stay: a reload does not move an XDP server
	local := [2]netip.Addr{cfg.Primary, cfg.Secondary}
	var e proto.Envelope
	return loop.Read(ctx, what,
		func() (int, error) { return c.ReadBatch(in) },
		func(n int) error {
			st.received.Add(uint64(n))
			out = out[:0]
			clk := newBatchClock(s.start)
			h := s.h.Load()
			for i := range n {
				m := &in[i]
				on := ViaPrimary
				if m.Local == local[ViaSecondary] {
					on = ViaSecondary
				}
				slot := outBuf[i*bufSize : i*bufSize : (i+1)*bufSize]
				if r, ok := s.apply(h, m.Buf[:m.N], m.Addr, on, slot, &clk, &e, st); ok {
					out = append(out, xdpio.Message{Buf: r.Packet, N: len(r.Packet), Addr: r.To, Local: local[r.Via]})
				}
			}
			if len(out) == 0 {
				return nil
			}
			if sent, err := c.WriteBatch(out); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return err
				}
				st.sendErrors.Add(uint64(len(out) - sent))
				s.log.Debug("send failed", "queue", what, "err", err)
			}
			return nil
		},
		func(err error) { s.log.Debug("read failed", "queue", what, "err", err) })
}

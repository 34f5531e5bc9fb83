// SPDX-License-Identifier: MIT

package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/dropprivs"
	"github.com/miredo-go/miredo/pkg/loop"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// Stats counts what the server did. Each socket loop owns one; Server.Stats
// sums them.
type Stats struct {
	Received   uint64
	Answered   uint64 // router advertisements sent
	Forwarded  uint64 // bubbles and echoes relayed over UDP
	ToIPv6     uint64 // connectivity tests sent to native IPv6
	SendErrors uint64
	Dropped    [NumDropReasons]uint64
}

// LogValue lets slog print the counters with stable keys.
func (s Stats) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Uint64("received", s.Received),
		slog.Uint64("answered", s.Answered),
		slog.Uint64("forwarded", s.Forwarded),
		slog.Uint64("to_ipv6", s.ToIPv6),
		slog.Uint64("send_errors", s.SendErrors),
	}
	for r := DropReason(1); r < NumDropReasons; r++ {
		if s.Dropped[r] != 0 {
			attrs = append(attrs, slog.Uint64("drop_"+r.String(), s.Dropped[r]))
		}
	}
	return slog.GroupValue(attrs...)
}

type loopStats struct {
	received, answered, forwarded, toIPv6, sendErrors atomic.Uint64
	dropped                                           [NumDropReasons]atomic.Uint64
	_                                                 [64]byte // keep loops off each other's cache lines
}

func (l *loopStats) addTo(s *Stats) {
	s.Received += l.received.Load()
	s.Answered += l.answered.Load()
	s.Forwarded += l.forwarded.Load()
	s.ToIPv6 += l.toIPv6.Load()
	s.SendErrors += l.sendErrors.Load()
	for i := range l.dropped {
		s.Dropped[i] += l.dropped[i].Load()
	}
}

// Server is a running Teredo server.
type Server struct {
	cfg   Config
	h     *Handler
	log   *slog.Logger
	conns [2][]udpio.PacketConn // primary, secondary; index i of each pairs up
	raw   ipv6Sender
	xdp   *xdpPath     // --xdp, when attached (no UDP sockets then)
	limit *sendLimiter // one for all loops: the bound is per /24, server-wide
	stats []*loopStats
	start time.Time // origin of the limiter's millisecond clock
	close sync.Once
}

// ipv6Sender sends connectivity tests to native IPv6: a raw socket, or a
// fake in tests.
type ipv6Sender interface {
	send(pkt []byte, dst netip.Addr) error
	close() error
}

// Listen opens the server's sockets: UDP 3544 on both addresses (several
// SO_REUSEPORT sockets each) and the raw IPv6 socket for connectivity tests.
// This is the part that needs privileges.
func Listen(cfg Config, log *slog.Logger) (*Server, error) {
	cfg, err := cfg.Check()
	if err != nil {
		return nil, err
	}
	n := cfg.Sockets
	if n <= 0 {
		n = defaultSockets()
	}
	var conns [2][]udpio.PacketConn
	var xdp *xdpPath
	if cfg.XDP != "" {
		xdp = attachXDP(cfg.XDP, cfg, log) // nil: sockets, as without --xdp
	}
	closeAll := func() {
		xdp.close()
		for _, cs := range conns {
			for _, c := range cs {
				c.Close()
			}
		}
	}
	addrs := []netip.Addr{cfg.Primary, cfg.Secondary}
	if xdp != nil {
		addrs = nil // xdpio's kernel sockets take what its program passes
	}
	opt := socketOptions(cfg.NoBatch)
	for i, a := range addrs {
		cs, err := udpio.ListenGroup(netip.AddrPortFrom(a, proto.Port), n, opt)
		if err != nil {
			closeAll()
			return nil, err
		}
		for _, c := range cs {
			conns[i] = append(conns[i], c)
		}
	}
	raw, err := openRawIPv6()
	if err != nil {
		closeAll()
		return nil, err
	}
	s := newServer(cfg, conns, raw, log)
	if xdp != nil {
		s.useXDP(xdp)
	}
	return s, nil
}

// newServer assembles a server around open sockets: pairs of primary and
// secondary sockets, and the IPv6 sender.
func newServer(cfg Config, conns [2][]udpio.PacketConn, raw ipv6Sender, log *slog.Logger) *Server {
	s := &Server{
		cfg:   cfg,
		start: time.Now(),
		h:     NewHandler(cfg.Primary, cfg.Secondary, proto.PrefixOf(cfg.Prefix), uint32(cfg.MTU)),
		log:   log,
		conns: conns,
		raw:   raw,
		limit: newSendLimiter(cfg.RateLimit),
	}
	for range len(conns[0]) + len(conns[1]) {
		s.stats = append(s.stats, new(loopStats))
	}
	return s
}

// closeSockets closes the UDP sockets: the loops' reads return.
func (s *Server) closeSockets() {
	s.xdp.close()
	closeConns(s.conns)
}

// Close closes every socket, once. The raw socket is a bare descriptor:
// closing it while a loop may still send on it, or twice, could hit
// another descriptor that took its number, so Serve closes it only after
// every loop has returned.
func (s *Server) Close() {
	s.close.Do(func() {
		s.closeSockets()
		if err := s.raw.close(); err != nil {
			s.log.Warn("closing the raw IPv6 socket", "err", err)
		}
	})
}

// Stats sums the counters of every loop.
func (s *Server) Stats() Stats {
	var st Stats
	for _, l := range s.stats {
		l.addTo(&st)
	}
	return st
}

// Serve runs one loop per socket until ctx ends or a loop fails for good,
// then closes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	g := loop.NewGroup(ctx)
	for via := range s.conns {
		for i, c := range s.conns[via] {
			ls := s.stats[via*len(s.conns[via])+i]
			out := [2]udpio.PacketConn{s.conns[ViaPrimary][i], s.conns[ViaSecondary][i]}
			g.Go(func(context.Context) error { return s.loop(c, Via(via), out, ls) })
		}
	}
	s.serveXDP(g)
	err := g.Wait(s.closeSockets)
	s.Close()
	return err
}

// bufSize holds any datagram the server reads or writes: it forwards only
// small packets, and reads larger ones only to drop them.
const bufSize = 2048

// loop reads datagrams from c (on server address "on") in batches, applies
// the handler, and writes the answers in batches from the address each one
// must leave from. Buffers are allocated once per loop.
func (s *Server) loop(c udpio.PacketConn, on Via, out [2]udpio.PacketConn, st *loopStats) error {
	in := make([]udpio.Message, udpio.MaxBatch)
	inBuf := make([]byte, udpio.MaxBatch*bufSize)
	for i := range in {
		in[i].Buf = inBuf[i*bufSize : (i+1)*bufSize]
	}
	outBuf := make([]byte, udpio.MaxBatch*bufSize)
	var batches [2][]udpio.Message
	for i := range batches {
		batches[i] = make([]udpio.Message, 0, udpio.MaxBatch)
	}
	var e proto.Envelope
	handle := func(n int) error {
		st.received.Add(uint64(n))
		batches[0], batches[1] = batches[0][:0], batches[1][:0]
		now := int64(time.Since(s.start) / time.Millisecond)
		for i := range n {
			m := &in[i]
			slot := outBuf[i*bufSize : i*bufSize : (i+1)*bufSize]
			if r, ok := s.apply(m.Buf[:m.N], m.Addr, on, slot, now, &e, st); ok {
				batches[r.Via] = append(batches[r.Via], udpio.Message{Buf: r.Packet, N: len(r.Packet), Addr: r.To})
			}
		}
		for via, b := range batches {
			if len(b) == 0 {
				continue
			}
			if sent, err := out[via].WriteBatch(b); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return err
				}
				st.sendErrors.Add(uint64(len(b) - sent))
				s.log.Debug("send failed", "addr", out[via].LocalAddr(), "err", err)
			}
		}
		return nil
	}
	what := "read on " + c.LocalAddr().String()
	failed := func(err error) { s.log.Debug("read failed", "addr", c.LocalAddr(), "err", err) }
	if r, ok := c.(eachReader); ok {
		return loop.ReadEach(what, func(h func(int) error) error { return r.ReadEach(in, h) }, handle, failed)
	}
	return loop.Read(what, func() (int, error) { return c.ReadBatch(in) }, handle, failed)
}

// Run runs the server until ctx ends: opens its sockets, writes the pid file,
// drops privileges and serves.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := Listen(cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	cfg = s.cfg
	// The sockets are open; sending on them needs no capability at all.
	release, err := daemon.Settle(cfg.PIDFile, dropprivs.Config{User: cfg.User, Chroot: cfg.Chroot}, log)
	if err != nil {
		return err
	}
	defer release()
	log.Info("Teredo server started", "primary", cfg.Primary, "secondary", cfg.Secondary,
		"prefix", cfg.Prefix, "mtu", cfg.MTU, "sockets", len(s.conns[0]))
	// SIGUSR1 logs the counters (Miredo 1.2.6 dies on it instead).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-usr1:
				log.Info("statistics", "stats", s.Stats())
			case <-ctx.Done():
				return
			}
		}
	}()
	err = s.Serve(ctx)
	log.Info("Teredo server stopped", "stats", s.Stats())
	return err
}

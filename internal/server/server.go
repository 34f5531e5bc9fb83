// SPDX-License-Identifier: MIT

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miredo-go/miredo/pkg/control"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/dropprivs"
	"github.com/miredo-go/miredo/pkg/loop"
	"github.com/miredo-go/miredo/pkg/metrics"
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
	log *slog.Logger
	h   atomic.Pointer[Handler] // a reload may replace it
	// mu guards cfg and conns, which a reload changes.
	mu    sync.Mutex
	cfg   Config
	conns [2][]udpio.PacketConn // primary, secondary; index i of each pairs up
	// rebind carries a configuration with other addresses from a reload
	// to Serve, which moves the sockets.
	rebind chan Config
	raw    ipv6Sender
	xdp    *xdpPath     // --xdp, when attached (no UDP sockets then)
	limit  *sendLimiter // one for all loops: the bound is per /24, server-wide
	stats  []*loopStats
	// notify, if set, hears the data path's health (the watchdog).
	notify *daemon.Notifier
	start  time.Time // origin of the limiter's millisecond clock
	close  sync.Once
	// narrow is how many sockets of each address take datagrams while the
	// loops keep up (0: all of them); steer is the spread now in force.
	narrow int
	steer  atomic.Pointer[steering]
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
	n, narrow := socketCounts(cfg.Sockets, cfg.NoBatch)
	var conns [2][]udpio.PacketConn
	var xdp *xdpPath
	if cfg.XDP != "" {
		xdp = attachXDP(cfg.XDP, cfg, log) // nil: sockets, as without --xdp
	}
	if xdp == nil { // with XDP, xdpio's kernel sockets take what its program passes
		if conns, err = listenPair(cfg, n); err != nil {
			return nil, err
		}
	}
	raw, err := openRawIPv6()
	if err != nil {
		xdp.close()
		closeConns(conns)
		return nil, err
	}
	s := newServer(cfg, conns, raw, log)
	s.narrow = narrow
	if xdp != nil {
		s.useXDP(xdp)
	}
	return s, nil
}

// newServer assembles a server around open sockets: pairs of primary and
// secondary sockets, and the IPv6 sender.
func newServer(cfg Config, conns [2][]udpio.PacketConn, raw ipv6Sender, log *slog.Logger) *Server {
	s := &Server{
		cfg:    cfg,
		start:  time.Now(),
		log:    log,
		conns:  conns,
		raw:    raw,
		limit:  newSendLimiter(cfg.RateLimit),
		rebind: make(chan Config, 1),
	}
	s.h.Store(NewHandler(cfg.Primary, cfg.Secondary, proto.PrefixOf(cfg.Prefix), uint32(cfg.MTU)))
	for range len(conns[0]) + len(conns[1]) {
		s.stats = append(s.stats, new(loopStats))
	}
	return s
}

// config is the configuration now in force.
func (s *Server) config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// sockets are the UDP sockets now in use.
func (s *Server) sockets() [2][]udpio.PacketConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// closeSockets closes the UDP sockets: the loops' reads return.
func (s *Server) closeSockets() {
	s.xdp.close()
	closeConns(s.sockets())
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
// then closes the sockets. A reload that moves the server to other
// addresses stops the loops, binds the new addresses (UDP 3544 needs no
// privilege) and starts the loops again.
func (s *Server) Serve(ctx context.Context) error {
	for {
		gctx, stopGen := context.WithCancel(ctx)
		g := loop.NewGroup(gctx)
		conns := s.sockets()
		if st := newSteering(conns, s.narrow, s.log); st != nil {
			s.steer.Store(st)
			g.Go(func(ctx context.Context) error { return loop.Every(ctx, steerEvery, st.look) })
		} else {
			s.steer.Store(nil)
		}
		for via := range conns {
			for i, c := range conns[via] {
				ls := s.stats[via*len(conns[via])+i]
				out := [2]udpio.PacketConn{conns[ViaPrimary][i], conns[ViaSecondary][i]}
				g.Go(func(ctx context.Context) error { return s.loop(ctx, c, Via(via), out, ls) })
			}
		}
		s.serveXDP(g)
		if s.notify != nil {
			go s.notify.Watchdog(g.Context(), g.Healthy)
		}
		var next *Config
		select {
		case <-g.Context().Done():
		case c := <-s.rebind:
			next = &c
			stopGen()
		}
		err := g.Wait(s.closeSockets)
		stopGen()
		if err != nil || next == nil || ctx.Err() != nil {
			s.Close()
			return err
		}
		if err := s.moveTo(*next); err != nil {
			s.Close()
			return err
		}
	}
}

// moveTo binds the sockets of next's addresses, the old ones closed, and
// makes next's handler the one in use. If the new addresses cannot be
// bound, the old ones are bound again; only if that fails too does the
// server stop.
func (s *Server) moveTo(next Config) error {
	cur := s.config()
	n := len(s.sockets()[0])
	conns, err := listenPair(next, n)
	if err != nil {
		s.log.Error("SIGHUP: cannot serve on the new addresses; staying on the old ones", "primary", next.Primary,
			"secondary", next.Secondary, "err", err)
		if conns, err = listenPair(cur, n); err != nil {
			return fmt.Errorf("rebinding the old addresses after a failed reload: %w", err)
		}
		next = cur
	}
	s.mu.Lock()
	s.conns = conns
	s.cfg.Primary, s.cfg.Secondary = next.Primary, next.Secondary
	cfg := s.cfg
	s.mu.Unlock()
	s.h.Store(NewHandler(cfg.Primary, cfg.Secondary, proto.PrefixOf(cfg.Prefix), uint32(cfg.MTU)))
	s.log.Info("serving on new addresses", "primary", cfg.Primary, "secondary", cfg.Secondary)
	if s.notify != nil {
		s.notify.Status(fmt.Sprintf("serving on %v and %v", cfg.Primary, cfg.Secondary))
	}
	return nil
}

// listenPair opens n SO_REUSEPORT sockets on port 3544 of each of cfg's
// two addresses.
func listenPair(cfg Config, n int) ([2][]udpio.PacketConn, error) {
	var conns [2][]udpio.PacketConn
	opt := socketOptions(cfg)
	for i, a := range []netip.Addr{cfg.Primary, cfg.Secondary} {
		cs, err := udpio.ListenGroup(netip.AddrPortFrom(a, proto.Port), n, opt)
		if err != nil {
			closeConns(conns)
			return conns, err
		}
		for _, c := range cs {
			conns[i] = append(conns[i], c)
		}
	}
	return conns, nil
}

// reload takes a configuration read again (SIGHUP): the send limit, the
// advertised prefix and MTU apply at once; other addresses are bound by
// Serve; settings that need the privileges the server dropped are named in
// one log line for a restart to apply.
func (s *Server) reload(next Config) {
	next, err := next.Check()
	if err != nil {
		s.log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	cur := s.config()
	if un := cur.unapplied(next); len(un) > 0 {
		s.log.Warn("SIGHUP: restart to apply: " + strings.Join(un, ", "))
	}
	s.limit.rate.Store(next.RateLimit)
	s.mu.Lock()
	s.cfg.RateLimit, s.cfg.Prefix, s.cfg.MTU = next.RateLimit, next.Prefix, next.MTU
	cfg := s.cfg
	s.mu.Unlock()
	s.h.Store(NewHandler(cfg.Primary, cfg.Secondary, proto.PrefixOf(cfg.Prefix), uint32(cfg.MTU)))
	if s.xdp != nil && (next.Primary != cur.Primary || next.Secondary != cur.Secondary) {
		// The XDP program steers the addresses it was attached with.
		s.log.Warn("SIGHUP: restart to apply: server addresses (served through AF_XDP)")
		next.Primary, next.Secondary = cur.Primary, cur.Secondary
	}
	if next.Primary != cur.Primary || next.Secondary != cur.Secondary {
		select { // the newest replaces one Serve has not taken
		case <-s.rebind:
		default:
		}
		s.rebind <- next
	}
	s.log.Info("SIGHUP: configuration reloaded", "rate_limit", next.RateLimit, "prefix", next.Prefix, "mtu", next.MTU,
		"primary", next.Primary, "secondary", next.Secondary)
}

// bufSize holds any datagram the server reads or writes: it forwards only
// small packets, and reads larger ones only to drop them.
const bufSize = 2048

// loop reads datagrams from c (on server address "on") in batches, applies
// the handler, and writes the answers in batches from the address each one
// must leave from. Buffers are allocated once per loop.
func (s *Server) loop(ctx context.Context, c udpio.PacketConn, on Via, out [2]udpio.PacketConn, st *loopStats) error {
	in := udpio.NewMessages(udpio.MaxBatch, bufSize)
	outBuf := make([]byte, udpio.MaxBatch*bufSize)
	var batches [2][]udpio.Message
	for i := range batches {
		batches[i] = make([]udpio.Message, 0, udpio.MaxBatch)
	}
	var e proto.Envelope
	handle := func(n int) error {
		st.received.Add(uint64(n))
		h := s.h.Load()
		batches[0], batches[1] = batches[0][:0], batches[1][:0]
		clk := newBatchClock(s.start)
		for i := range n {
			m := &in[i]
			slot := outBuf[i*bufSize : i*bufSize : (i+1)*bufSize]
			if r, ok := s.apply(h, m.Buf[:m.N], m.Addr, on, slot, &clk, &e, st); ok {
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
		return loop.ReadEach(ctx, what, func(h func(int) error) error { return r.ReadEach(in, h) }, handle, failed)
	}
	return loop.Read(ctx, what, func() (int, error) { return c.ReadBatch(in) }, handle, failed)
}

// Run runs the server until ctx ends: opens its sockets, writes the pid file,
// drops privileges and serves. Configurations read again (SIGHUP) arrive
// on reloads; see Server.reload.
func Run(ctx context.Context, cfg Config, log *slog.Logger, reloads <-chan Config) error {
	s, err := Listen(cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	cfg = s.config()
	conns := s.sockets()
	spareProcs(len(conns[0]) + len(conns[1]))
	ctl, err := control.ListenOrWarn(cfg.ControlSocket, cfg.ControlSocketNamed, log)
	if err != nil {
		return err
	}
	defer ctl.Close()
	met, err := metrics.Listen(cfg.MetricsListen, log)
	if err != nil {
		return err
	}
	// The sockets are open; sending on them needs no capability at all.
	release, err := daemon.Settle(cfg.PIDFile, dropprivs.Config{User: cfg.User, Chroot: cfg.Chroot}, log)
	if err != nil {
		return err
	}
	defer release()
	log.Info("Teredo server started", "primary", cfg.Primary, "secondary", cfg.Secondary,
		"prefix", cfg.Prefix, "mtu", cfg.MTU, "sockets", len(s.sockets()[0]))
	s.notify = daemon.NewNotifier(log)
	s.notify.Ready(fmt.Sprintf("serving on %v and %v", cfg.Primary, cfg.Secondary))
	defer s.notify.Stopping()
	// SIGUSR1 logs the counters (Miredo 1.2.6 dies on it instead).
	defer daemon.LogStatistics(ctx, log, func() []any { return []any{"stats", s.Stats()} })()
	go ctl.Serve(ctx, s.report)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case cfg := <-reloads:
				s.reload(cfg)
			}
		}
	}()
	go met.Serve(ctx, metrics.Handler("server", s.counters))
	err = s.Serve(ctx)
	log.Info("Teredo server stopped", "stats", s.Stats())
	return err
}

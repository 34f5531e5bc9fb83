// SPDX-License-Identifier: MIT

package server

import (
	"context"
	"errors"
	"fmt"
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
	conns [2][]*udpio.Conn // primary, secondary; index i of each pairs up
	raw   *rawIPv6
	stats []*loopStats
	start time.Time // origin of the limiters' millisecond clock
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
		n = udpio.GroupSize()
	}
	s := &Server{
		cfg:   cfg,
		start: time.Now(),
		h:     NewHandler(cfg.Primary, cfg.Secondary, proto.PrefixOf(cfg.Prefix), uint32(cfg.MTU)),
		log:   log,
	}
	opt := udpio.Options{ReusePort: true, RecvBuffer: 4 << 20, SendBuffer: 4 << 20, NoBatch: cfg.NoBatch}
	for i, a := range []netip.Addr{cfg.Primary, cfg.Secondary} {
		cs, err := udpio.ListenGroup(netip.AddrPortFrom(a, proto.Port), n, opt)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.conns[i] = cs
	}
	if s.raw, err = openRawIPv6(); err != nil {
		s.Close()
		return nil, err
	}
	for range 2 * n {
		s.stats = append(s.stats, new(loopStats))
	}
	return s, nil
}

// Close closes every socket; running loops return.
func (s *Server) Close() {
	for _, cs := range s.conns {
		for _, c := range cs {
			c.Close()
		}
	}
	if s.raw != nil {
		s.raw.close()
	}
}

// Stats sums the counters of every loop.
func (s *Server) Stats() Stats {
	var st Stats
	for _, l := range s.stats {
		l.addTo(&st)
	}
	return st
}

// Serve runs one loop per socket until ctx ends, then closes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2*len(s.conns[0]))
	for via := range s.conns {
		for i, c := range s.conns[via] {
			ls := s.stats[via*len(s.conns[via])+i]
			out := [2]*udpio.Conn{s.conns[ViaPrimary][i], s.conns[ViaSecondary][i]}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.loop(c, Via(via), out, ls); err != nil {
					errc <- err
				}
			}()
		}
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.Close()
	wg.Wait()
	return err
}

// bufSize holds any datagram the server reads or writes: it forwards only
// small packets, and reads larger ones only to drop them.
const bufSize = 2048

// A loop's reads that fail in a row: each failure pauses a little longer
// (errorPause more each time, up to maxErrorPause), so a transient error
// (ENOBUFS, ENOMEM) costs a millisecond; after maxErrorRun of them, about a
// second, the loop gives up with the error and the server stops, rather
// than spinning on a descriptor that fails for good.
const (
	maxErrorRun   = 100
	errorPause    = time.Millisecond
	maxErrorPause = 10 * time.Millisecond
)

// loop reads datagrams from c (on server address "on") in batches, applies
// the handler, and writes the answers in batches from the address each one
// must leave from. Buffers are allocated once per loop.
func (s *Server) loop(c *udpio.Conn, on Via, out [2]*udpio.Conn, st *loopStats) error {
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
	limit := newSendLimiter(s.cfg.RateLimit)
	errRun := 0
	for {
		n, err := c.ReadBatch(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errRun++; errRun > maxErrorRun {
				return fmt.Errorf("read on %v: %d failures in a row: %w", c.LocalAddr(), errRun, err)
			}
			s.log.Debug("read failed", "addr", c.LocalAddr(), "err", err)
			time.Sleep(min(time.Duration(errRun)*errorPause, maxErrorPause))
			continue
		}
		errRun = 0
		st.received.Add(uint64(n))
		batches[0], batches[1] = batches[0][:0], batches[1][:0]
		now := uint32(time.Since(s.start) / time.Millisecond)
		for i := range n {
			m := &in[i]
			slot := outBuf[i*bufSize : i*bufSize : (i+1)*bufSize]
			r := s.h.Handle(m.Buf[:m.N], m.Addr, on, slot, &e)
			switch r.Verdict {
			case Drop:
				st.dropped[r.Reason].Add(1)
			case SendUDP:
				if !limit.allow(r.To.Addr(), now) {
					st.dropped[DropRateLimited].Add(1)
					continue
				}
				batches[r.Via] = append(batches[r.Via], udpio.Message{Buf: r.Packet, N: len(r.Packet), Addr: r.To})
				if isRA(r.Packet) {
					st.answered.Add(1)
				} else {
					st.forwarded.Add(1)
				}
			case SendIPv6:
				pkt := proto.IPv6(r.Packet)
				if err := s.raw.send(r.Packet, pkt.Dst()); err != nil {
					st.sendErrors.Add(1)
					s.log.Debug("connectivity test not sent", "dst", pkt.Dst(), "err", err)
				} else {
					st.toIPv6.Add(1)
				}
			}
		}
		for via, b := range batches {
			if len(b) == 0 {
				continue
			}
			if sent, err := out[via].WriteBatch(b); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				st.sendErrors.Add(uint64(len(b) - sent))
				s.log.Debug("send failed", "addr", out[via].LocalAddr(), "err", err)
			}
		}
	}
}

// isRA tells an advertisement (which starts with an authentication header)
// from a forwarded packet (which starts with an origin indication).
func isRA(b []byte) bool { return len(b) > 1 && b[0] == 0 && b[1] == 1 }

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

// SPDX-License-Identifier: MIT

package mire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/dropprivs"
	"github.com/miredo-go/miredo/pkg/loop"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// Config is what the responder needs to run.
type Config struct {
	// Addr is the public IPv4 address to answer on and for.
	Addr netip.Addr
	// RateLimit is the most replies sent per second, all askers together.
	RateLimit uint32
	// User is who to run as when started as root.
	User string
}

// DefaultRateLimit is enough for a thousand clients pinging once a second.
const DefaultRateLimit = 1000

// Errors from Config.Check.
var (
	ErrNotGlobal = errors.New("the responder's address must be a global unicast IPv4 address")
	ErrRate      = errors.New("the reply rate must be within 1-1000000 per second")
)

// Check validates c and fills in defaults.
func (c Config) Check() (Config, error) {
	c.Addr = c.Addr.Unmap()
	if !proto.IsGlobalUnicastIPv4(c.Addr) {
		return c, fmt.Errorf("%v: %w", c.Addr, ErrNotGlobal)
	}
	if c.RateLimit == 0 || c.RateLimit > 1_000_000 {
		return c, fmt.Errorf("%d: %w", c.RateLimit, ErrRate)
	}
	return c, nil
}

// Stats counts what the responder did since it started.
type Stats struct {
	Received   uint64
	Replies    [NumKinds]uint64
	SendErrors uint64
	Dropped    [NumDropReasons]uint64
}

// LogValue lets slog print the counters with stable keys.
func (s Stats) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Uint64("received", s.Received)}
	for k := range NumKinds {
		attrs = append(attrs, slog.Uint64(k.String(), s.Replies[k]))
	}
	attrs = append(attrs, slog.Uint64("send_errors", s.SendErrors))
	for r := DropReason(1); r < NumDropReasons; r++ {
		if s.Dropped[r] != 0 {
			attrs = append(attrs, slog.Uint64("drop_"+r.String(), s.Dropped[r]))
		}
	}
	return slog.GroupValue(attrs...)
}

type loopStats struct {
	received, sendErrors atomic.Uint64
	replies              [NumKinds]atomic.Uint64
	dropped              [NumDropReasons]atomic.Uint64
	_                    [64]byte // keep the two loops off each other's cache lines
}

func (l *loopStats) addTo(s *Stats) {
	s.Received += l.received.Load()
	s.SendErrors += l.sendErrors.Load()
	for i := range l.replies {
		s.Replies[i] += l.replies[i].Load()
	}
	for i := range l.dropped {
		s.Dropped[i] += l.dropped[i].Load()
	}
}

// Responder is a running responder: a socket on each port, one read loop
// each; both send their replies through the 3545 socket.
type Responder struct {
	cfg   Config
	h     *Handler
	log   *slog.Logger
	conns [2]udpio.PacketConn // indexed by Port
	limit *limiter
	stats [2]loopStats
	start time.Time // origin of the limiter's millisecond clock
	close sync.Once
}

// Listen opens UDP 3544 and 3545 on cfg.Addr. Neither port is privileged.
func Listen(cfg Config, log *slog.Logger) (*Responder, error) {
	cfg, err := cfg.Check()
	if err != nil {
		return nil, err
	}
	var conns [2]udpio.PacketConn
	for i, port := range [2]uint16{proto.Port, MappedPort} {
		c, err := udpio.Listen(netip.AddrPortFrom(cfg.Addr, port), udpio.Options{})
		if err != nil {
			if i > 0 {
				conns[0].Close()
			}
			return nil, err
		}
		conns[i] = c
	}
	return newResponder(cfg, conns, log), nil
}

// newResponder assembles a responder around open sockets (the server port's
// first), which tests may fake.
func newResponder(cfg Config, conns [2]udpio.PacketConn, log *slog.Logger) *Responder {
	return &Responder{cfg: cfg, h: NewHandler(cfg.Addr), log: log, conns: conns,
		limit: newLimiter(cfg.RateLimit), start: time.Now()}
}

// Address is the Teredo address the responder answers for.
func (r *Responder) Address() netip.Addr { return r.h.Address() }

// Stats sums the counters of both loops.
func (r *Responder) Stats() Stats {
	var s Stats
	for i := range r.stats {
		r.stats[i].addTo(&s)
	}
	return s
}

// Close closes both sockets, once.
func (r *Responder) Close() {
	r.close.Do(func() {
		for _, c := range r.conns {
			c.Close()
		}
	})
}

// Serve runs both read loops until ctx ends or one fails for good, then
// closes the sockets.
func (r *Responder) Serve(ctx context.Context) error {
	g := loop.NewGroup(ctx)
	for on := range r.conns {
		g.Go(func(ctx context.Context) error { return r.loop(ctx, Port(on)) })
	}
	err := g.Wait(r.Close)
	r.Close()
	return err
}

// bufSize holds a datagram of a Teredo link's usual MTU (1280) with room to
// spare; longer ones are counted as malformed.
const bufSize = 2048

// loop reads the socket of port on in batches, applies the handler and
// sends the replies in one batch from the 3545 socket. Buffers are
// allocated once per loop.
func (r *Responder) loop(ctx context.Context, on Port) error {
	c, out := r.conns[on], r.conns[OnMappedPort]
	st := &r.stats[on]
	in := udpio.NewMessages(udpio.MaxBatch, bufSize)
	outBuf := make([]byte, udpio.MaxBatch*bufSize)
	batch := make([]udpio.Message, 0, udpio.MaxBatch)
	var e proto.Envelope
	return loop.Read(ctx, "read on "+c.LocalAddr().String(),
		func() (int, error) { return c.ReadBatch(in) },
		func(n int) error {
			st.received.Add(uint64(n))
			batch = batch[:0]
			now := int64(time.Since(r.start) / time.Millisecond)
			for i := range n {
				m := &in[i]
				if m.Truncated {
					st.dropped[DropMalformed].Add(1)
					continue
				}
				slot := outBuf[i*bufSize : i*bufSize : (i+1)*bufSize]
				res := r.h.Handle(m.Buf[:m.N], m.Addr, on, slot, &e)
				switch {
				case res.Verdict == Drop:
					st.dropped[res.Reason].Add(1)
				case !r.limit.allow(now):
					st.dropped[DropRateLimited].Add(1)
				default:
					st.replies[res.Kind].Add(1)
					batch = append(batch, udpio.Message{Buf: res.Packet, N: len(res.Packet), Addr: res.To})
				}
			}
			if len(batch) > 0 {
				if sent, err := out.WriteBatch(batch); err != nil {
					if errors.Is(err, net.ErrClosed) {
						return err
					}
					st.sendErrors.Add(uint64(len(batch) - sent))
					r.log.Debug("send failed", "err", err)
				}
			}
			return nil
		},
		func(err error) { r.log.Debug("read failed", "addr", c.LocalAddr(), "err", err) })
}

// Run runs the responder until ctx ends: opens its sockets, drops root if
// it has it (it needs no privilege at all) and serves. SIGUSR1 logs the
// counters.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	r, err := Listen(cfg, log)
	if err != nil {
		return err
	}
	defer r.Close()
	// SIGUSR1 is caught before the log says the responder started (a
	// SIGUSR1 Go has not been told to catch is lost).
	defer daemon.LogStatistics(ctx, log, func() []any { return []any{"stats", r.Stats()} })()
	if _, err := daemon.Settle("", dropprivs.Config{User: r.cfg.User}, log); err != nil {
		return err
	}
	log.Info("Teredo test responder started", "address", r.cfg.Addr, "teredo_address", r.Address(),
		"rate_limit", r.cfg.RateLimit)
	err = r.Serve(ctx)
	log.Info("Teredo test responder stopped", "stats", r.Stats())
	return err
}

// SPDX-License-Identifier: MIT

// Package loadgen measures a Teredo server's capacity: it sends router
// solicitations from many UDP sockets to one server and counts the valid
// router advertisements that come back.
//
// # Closed loop
//
// Each socket keeps a fixed window of solicitations in flight and sends a
// new one only when an answer (or a timeout) retires an old one, so the load
// adapts to what the server answers. On a small machine where generator and
// server share the CPU this is the fair way to find capacity: an open-loop
// generator pushing more than the server can take spends CPU on datagrams
// the kernel then drops, CPU the server needed, so the answered rate would
// measure the generator's aggressiveness as much as the server. With a
// window, the server is never idle (its queue holds up to Sockets×Window
// solicitations) and nothing is sent that it cannot answer, unless its
// socket buffers are smaller than the window, which Lost then shows.
//
// # Paced load
//
// With Config.Rate set, the load is open-loop instead: a pacer sends Rate
// solicitations per second in all, round-robin over the sockets, every
// PaceTick (a thread sleeping in nanosleep, so the ticks are not rounded to
// the millisecond the Go scheduler's timers would give), so a server sees a
// steady stream of a few datagrams at a time from different sockets, as
// from many independent clients. Answers free their window slot without
// sending anything; a solicitation due while its socket's window is full is
// not sent and counted as Deferred (the server is behind). This is how CPU
// time per answer is compared below saturation, where a server's cost per
// datagram includes waking up for it.
//
// # Validity
//
// An answer counts when it comes from the server's address and port, is a
// well-formed advertisement (pkg/proto: checksum, hop limit, one /64 prefix
// naming the server), is addressed to the solicitation's link-local source,
// echoes the nonce of a solicitation this socket still waits for, and its
// origin indication names this socket's address and port. Nonces are unique
// in a run: they encode the socket, the window slot and a per-socket
// sequence number, scrambled with a per-run key.
//
// # Bounds
//
// A run ends at its context's end, after MaxDuration, or once MaxSent
// solicitations are sent and each is answered or given up. Every goroutine
// it starts has returned when Run returns.
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// Defaults for the zero values of Config.
const (
	DefaultSockets     = 128
	DefaultWindow      = 8
	DefaultTimeout     = 250 * time.Millisecond
	DefaultMaxDuration = time.Minute
	DefaultMaxSent     = 100_000_000
)

// MaxSockets bounds Config.Sockets: the socket index is 16 bits of the nonce.
const MaxSockets = 4096

// MaxRate bounds Config.Rate (solicitations per second).
const MaxRate = 10_000_000

// PaceTick is how often the pacer of a paced load sends what is due.
const PaceTick = 100 * time.Microsecond

// MaxPacedWindow bounds Config.Window of a paced load, where the window
// only has to hold what is in flight (rate × round trip) plus a burst after
// the pacer was held up: a single socket at 50k/s needs more than 64.
const MaxPacedWindow = 1024

// MaxWindow bounds Config.Window: a window larger than a batch brings nothing
// a larger socket count would not.
const MaxWindow = udpio.MaxBatch

// Config describes a load.
type Config struct {
	// Server is the server's primary address and UDP port. Solicitations
	// without the cone bit are answered from it (RFC 4380 §5.3.2).
	Server netip.AddrPort
	// Sources are the local IPv4 addresses to send from; socket i binds
	// Sources[i%len(Sources)] on an ephemeral port. They must be specific
	// addresses: the origin indication of each answer is checked against
	// them.
	Sources []netip.Addr
	// Sockets is the number of client sockets, each a distinct Teredo
	// "client" to the server (default DefaultSockets, at most MaxSockets).
	Sockets int
	// Window is the number of solicitations each socket keeps in flight
	// (default DefaultWindow, at most MaxWindow, or MaxPacedWindow paced).
	Window int
	// Timeout is how long a solicitation waits for its answer before it
	// counts as lost and its slot sends a fresh one (default DefaultTimeout).
	Timeout time.Duration
	// MaxSent caps the solicitations sent in a run (default DefaultMaxSent).
	MaxSent uint64
	// MaxDuration caps a run's length (default DefaultMaxDuration).
	MaxDuration time.Duration
	// Rate, if positive, makes the load paced at Rate solicitations per
	// second in all (see "Paced load"); 0 is closed-loop.
	Rate float64
}

func (c Config) withDefaults() (Config, error) {
	if c.Sockets == 0 {
		c.Sockets = DefaultSockets
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxSent == 0 {
		c.MaxSent = DefaultMaxSent
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	switch {
	case !c.Server.Addr().Is4() || c.Server.Port() == 0:
		return c, fmt.Errorf("loadgen: server %v: want an IPv4 address and port", c.Server)
	case len(c.Sources) == 0:
		return c, errors.New("loadgen: no source addresses")
	case c.Sockets < 1 || c.Sockets > MaxSockets:
		return c, fmt.Errorf("loadgen: %d sockets: want 1 to %d", c.Sockets, MaxSockets)
	case c.Window < 1 || c.Rate == 0 && c.Window > MaxWindow || c.Window > MaxPacedWindow:
		return c, fmt.Errorf("loadgen: window %d: want 1 to %d (%d paced)", c.Window, MaxWindow, MaxPacedWindow)
	case c.Timeout < time.Millisecond:
		return c, fmt.Errorf("loadgen: timeout %v: want at least 1ms", c.Timeout)
	case c.MaxDuration < 0 || c.MaxSent > 1<<62:
		return c, errors.New("loadgen: negative duration or absurd count")
	case c.Rate < 0 || c.Rate > MaxRate:
		return c, fmt.Errorf("loadgen: rate %v: want 0 (closed loop) to %v", c.Rate, MaxRate)
	}
	for _, a := range c.Sources {
		if !a.Is4() || a.IsUnspecified() {
			return c, fmt.Errorf("loadgen: source %v: want a specific IPv4 address", a)
		}
	}
	return c, nil
}

// Counters are a run's totals. They only grow; Sub gives an interval.
type Counters struct {
	// Sent counts solicitations handed to the kernel.
	Sent uint64
	// Answered counts valid advertisements for solicitations still awaited.
	Answered uint64
	// Late counts valid advertisements that came after their solicitation
	// was given up.
	Late uint64
	// Invalid counts datagrams that are not a valid answer to this
	// generator (wrong source, malformed, unknown nonce, wrong origin).
	Invalid uint64
	// Lost counts solicitations given up after Timeout.
	Lost uint64
	// SendErrors counts solicitations the kernel refused; their slots
	// expire like lost ones.
	SendErrors uint64
	// Deferred counts solicitations a paced load did not send because
	// their socket's window was full.
	Deferred uint64
	// RTT is the sum of the round-trip times of the answered ones.
	RTT time.Duration
}

// Sub returns c - o, the counts of the interval between two snapshots.
func (c Counters) Sub(o Counters) Counters {
	return Counters{
		Sent: c.Sent - o.Sent, Answered: c.Answered - o.Answered, Late: c.Late - o.Late,
		Invalid: c.Invalid - o.Invalid, Lost: c.Lost - o.Lost, SendErrors: c.SendErrors - o.SendErrors,
		Deferred: c.Deferred - o.Deferred, RTT: c.RTT - o.RTT,
	}
}

// MeanRTT is the average round trip of an answered solicitation.
func (c Counters) MeanRTT() time.Duration {
	if c.Answered == 0 {
		return 0
	}
	return c.RTT / time.Duration(c.Answered)
}

// Generator is an open set of client sockets, ready to Run once.
type Generator struct {
	cfg   Config
	flows []*flow
	key   [proto.NonceLen]byte // scrambles nonces
	start time.Time

	budget   atomic.Int64 // solicitations left to send
	inflight atomic.Int64 // solicitations awaiting an answer
	ran      atomic.Bool
}

// flow is one client socket and its window.
type flow struct {
	g     *Generator
	id    uint16
	conn  *udpio.Conn
	local netip.AddrPort

	mu    sync.Mutex // guards slots and seq: the reader and the expiry loop share them
	slots []slot
	seq   uint32

	sent, answered, late, invalid, lost, sendErrors, deferred, rtt atomic.Uint64
	_                                                              [64]byte // keep flows' counters apart
}

// slot is one place in a socket's window.
type slot struct {
	nonce  [proto.NonceLen]byte
	sentAt time.Duration // since Generator.start
	busy   bool
}

// Open opens the client sockets. Sockets belong to the network namespace of
// the thread that opens them: to load a server in a lab, call Open from
// inside the client host (lab.Host.Do).
func Open(cfg Config) (*Generator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg}
	if _, err := rand.Read(g.key[:]); err != nil {
		return nil, fmt.Errorf("loadgen: nonce key: %w", err)
	}
	// Small buffers would turn a burst of answers into loss that is the
	// generator's, not the server's.
	opt := udpio.Options{RecvBuffer: 1 << 20, SendBuffer: 1 << 20}
	for i := range cfg.Sockets {
		src := netip.AddrPortFrom(cfg.Sources[i%len(cfg.Sources)], 0)
		c, err := udpio.Listen(src, opt)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("loadgen: socket %d: %w", i, err)
		}
		g.flows = append(g.flows, &flow{g: g, id: uint16(i), conn: c, local: c.LocalAddr(), slots: make([]slot, cfg.Window)})
	}
	return g, nil
}

// Close closes the sockets; a running Run returns soon after.
func (g *Generator) Close() error {
	var errs []error
	for _, f := range g.flows {
		if err := f.conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Counters sums the sockets' counters; safe while Run runs.
func (g *Generator) Counters() Counters {
	var c Counters
	for _, f := range g.flows {
		c.Sent += f.sent.Load()
		c.Answered += f.answered.Load()
		c.Late += f.late.Load()
		c.Invalid += f.invalid.Load()
		c.Lost += f.lost.Load()
		c.SendErrors += f.sendErrors.Load()
		c.Deferred += f.deferred.Load()
		c.RTT += time.Duration(f.rtt.Load())
	}
	return c
}

// Run loads the server until ctx ends, MaxDuration passes, or MaxSent
// solicitations are sent and settled. It closes the sockets before it
// returns. A Generator runs once.
func (g *Generator) Run(ctx context.Context) error {
	if g.ran.Swap(true) {
		return errors.New("loadgen: generator already ran")
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(ctx, g.cfg.MaxDuration)
	defer cancel()
	g.start = time.Now()
	g.budget.Store(int64(g.cfg.MaxSent))

	var wg sync.WaitGroup
	for _, f := range g.flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.readLoop()
		}()
	}
	// Closed loop: fill every window, then keep the slots of lost
	// solicitations busy. Paced: the pacer sends, lost slots are freed.
	out := newRSBatch(g.cfg.Window)
	paced := g.cfg.Rate > 0
	if paced {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.pace(ctx)
		}()
	} else {
		for _, f := range g.flows {
			f.refill(out, func(s *slot) bool { return !s.busy }, false, true)
		}
	}
	tick := time.NewTicker(max(g.cfg.Timeout/4, time.Millisecond))
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			now := g.now()
			for _, f := range g.flows {
				f.refill(out, func(s *slot) bool { return s.busy && now-s.sentAt > g.cfg.Timeout }, true, !paced)
			}
			done = g.budget.Load() <= 0 && g.inflight.Load() == 0
		}
	}
	err := g.Close()
	wg.Wait()
	return err
}

func (g *Generator) now() time.Duration { return time.Since(g.start) }

// take grants up to n solicitations from the budget.
func (g *Generator) take(n int) int {
	left := g.budget.Add(-int64(n)) + int64(n) // the budget before this call
	return int(min(max(left, 0), int64(n)))
}

// newRSBatch returns n messages, each holding a router solicitation whose
// nonce is patched per send: the nonce lies in the authentication header,
// outside the ICMPv6 checksum, so the rest of the datagram never changes.
func newRSBatch(n int) []udpio.Message {
	msgs := make([]udpio.Message, n)
	for i := range msgs {
		b := proto.AppendRouterSolicitation(nil, [proto.NonceLen]byte{}, false)
		msgs[i] = udpio.Message{Buf: b, N: len(b)}
	}
	return msgs
}

// nonceOffset is where the nonce sits in a solicitation: after 00 01,
// id-len and au-len (both 0).
const nonceOffset = 4

// refill gives up the slots pick selects (counting them lost when expired
// is set) and, with restart, restarts as many as the budget allows with
// fresh nonces and sends them from out.
func (f *flow) refill(out []udpio.Message, pick func(*slot) bool, expired, restart bool) {
	g := f.g
	f.mu.Lock()
	now := g.now()
	var free []int // at most Window entries, on the stack for small windows
	var freeBuf [MaxWindow]int
	free = freeBuf[:0]
	for i := range f.slots {
		s := &f.slots[i]
		if !pick(s) {
			continue
		}
		if s.busy {
			s.busy = false
			g.inflight.Add(-1)
			if expired {
				f.lost.Add(1)
			}
		}
		free = append(free, i)
	}
	if !restart {
		free = free[:0]
	}
	k := g.take(len(free))
	for j, i := range free[:k] {
		f.arm(i, now, out[j].Buf[nonceOffset:nonceOffset+proto.NonceLen])
		out[j].Addr = g.cfg.Server
	}
	f.mu.Unlock()
	f.send(out[:k])
}

// arm starts a new solicitation in slot i and writes its nonce to dst.
// The caller holds f.mu.
func (f *flow) arm(i int, now time.Duration, dst []byte) {
	f.seq++
	s := &f.slots[i]
	binary.BigEndian.PutUint16(s.nonce[0:2], f.id)
	binary.BigEndian.PutUint16(s.nonce[2:4], uint16(i))
	binary.BigEndian.PutUint32(s.nonce[4:8], f.seq)
	for b := range s.nonce {
		s.nonce[b] ^= f.g.key[b]
	}
	s.sentAt, s.busy = now, true
	f.g.inflight.Add(1)
	copy(dst, s.nonce[:])
}

func (f *flow) send(msgs []udpio.Message) {
	if len(msgs) == 0 {
		return
	}
	sent, _ := f.conn.WriteBatch(msgs)
	f.sent.Add(uint64(sent))
	if sent < len(msgs) {
		f.sendErrors.Add(uint64(len(msgs) - sent))
	}
}

// pace sends the paced load until ctx ends or the budget is spent: every
// PaceTick, what is due by then, one solicitation per socket in turn. It
// sleeps on its own thread in nanosleep, whose wake-ups are as fine as the
// kernel's timers; Go's timers would round a sleep under a millisecond up
// to one, turning the stream into bursts a batching server would like.
func (g *Generator) pace(ctx context.Context) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	outs := make([][]udpio.Message, len(g.flows))
	for i := range outs {
		outs[i] = newRSBatch(g.cfg.Window)
	}
	var offered uint64
	next := 0 // the socket the next solicitation goes to
	tick := unix.NsecToTimespec(int64(PaceTick))
	for ctx.Err() == nil && g.budget.Load() > 0 {
		due := uint64(g.now().Seconds()*g.cfg.Rate) - offered
		if due > 0 {
			// Spread the due ones over the sockets: each gets its
			// share, the remainder going on in turn.
			nf := uint64(len(g.flows))
			for i, f := range g.flows {
				n := due / nf
				if (uint64(i)+nf-uint64(next))%nf < due%nf {
					n++
				}
				if n > 0 {
					f.paced(outs[i], n)
				}
			}
			next = int((uint64(next) + due) % nf)
			offered += due
		}
		_ = unix.Nanosleep(&tick, nil)
	}
}

// paced arms and sends n solicitations in free slots of f's window, as far
// as the budget allows; those that find no free slot are counted as
// deferred.
func (f *flow) paced(out []udpio.Message, n uint64) {
	g := f.g
	f.mu.Lock()
	now := g.now()
	k, spent := 0, false
	for i := range f.slots {
		if uint64(k) == n {
			break
		}
		if f.slots[i].busy {
			continue
		}
		if g.take(1) == 0 {
			spent = true
			break
		}
		f.arm(i, now, out[k].Buf[nonceOffset:nonceOffset+proto.NonceLen])
		out[k].Addr = g.cfg.Server
		k++
	}
	f.mu.Unlock()
	if !spent {
		f.deferred.Add(n - uint64(k))
	}
	f.send(out[:k])
}

// answerBufSize holds a router advertisement (117 bytes as Miredo and we
// send it) with room to spare; anything longer is truncated and invalid.
const answerBufSize = 512

// maxReadFailures ends a read loop whose socket keeps failing: its window
// then expires as lost, which the counters show.
const maxReadFailures = 1000

// readLoop reads answers until the socket is closed (or keeps failing) and
// sends a fresh solicitation for each one answered.
func (f *flow) readLoop() {
	g := f.g
	in := make([]udpio.Message, udpio.MaxBatch)
	for i := range in {
		in[i].Buf = make([]byte, answerBufSize)
	}
	out := newRSBatch(g.cfg.Window)
	var e proto.Envelope
	var freed [udpio.MaxBatch]int
	for failures := 0; failures < maxReadFailures; {
		n, err := f.conn.ReadBatch(in)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			failures++ // one failed call; the socket may still work
			continue
		}
		failures = 0
		f.mu.Lock()
		now := g.now()
		nf := 0
		var answered, late, invalid, rtt uint64
		for i := range n {
			slot, ok := f.check(&in[i], &e)
			switch {
			case !ok:
				invalid++
			case !f.slots[slot].busy || f.slots[slot].nonce != e.Auth.Nonce:
				late++
			default:
				s := &f.slots[slot]
				s.busy = false
				g.inflight.Add(-1)
				answered++
				rtt += uint64(now - s.sentAt)
				freed[nf] = slot
				nf++
			}
		}
		if g.cfg.Rate > 0 {
			nf = 0 // paced: the pacer sends
		}
		k := g.take(nf)
		for j, i := range freed[:k] {
			f.arm(i, now, out[j].Buf[nonceOffset:nonceOffset+proto.NonceLen])
			out[j].Addr = g.cfg.Server
		}
		f.mu.Unlock()
		f.answered.Add(answered)
		f.late.Add(late)
		f.invalid.Add(invalid)
		f.rtt.Add(rtt)
		f.send(out[:k])
	}
}

// check validates one datagram as an answer to this socket and returns the
// window slot its nonce names; e receives the parsed envelope.
func (f *flow) check(m *udpio.Message, e *proto.Envelope) (int, bool) {
	g := f.g
	if m.Truncated || m.Addr != g.cfg.Server {
		return 0, false
	}
	if err := proto.ParseEnvelope(m.Buf[:m.N], e); err != nil || !e.HasAuth || !e.HasOrigin || e.Origin != f.local {
		return 0, false
	}
	if e.IPv6.Dst() != proto.LinkLocalClient() {
		return 0, false
	}
	ra, err := proto.ParseRouterAdvertisement(e.IPv6)
	if err != nil || ra.Server != g.cfg.Server.Addr() {
		return 0, false
	}
	var plain [proto.NonceLen]byte
	for b := range plain {
		plain[b] = e.Auth.Nonce[b] ^ g.key[b]
	}
	slot := int(binary.BigEndian.Uint16(plain[2:4]))
	if binary.BigEndian.Uint16(plain[0:2]) != f.id || slot >= len(f.slots) {
		return 0, false
	}
	return slot, true
}

// SPDX-License-Identifier: MIT

// Package client is the Teredo client role (RFC 4380 §5.2): qualification
// with a Teredo server, address maintenance, the NAT probe and the
// privileged helper, around the shared data path of package tunnel. Only
// cmd/miredo-client imports it.
//
// A running client is two processes. The packet process (Run) opens the
// tunnel device and the UDP socket, starts the privileged helper (RunHelper)
// and then drops every privilege; it runs three kinds of goroutine:
//
//	tunnel loop:  dev.Read -> Engine.FromTunnel -> udp.WriteBatch / dev.Write (ICMPv6 errors)
//	socket loop:  udp.ReadBatch -> from our server:3544 with an auth header? -> maintenance
//	                            -> otherwise Engine.FromUDP -> dev.Write / udp.WriteBatch
//	maintenance:  the Machine's timers, RAs and name resolution; Engine.Tick
//	              each second; applies each new status through the helper
//	              (address, MTU, up/down, hook) and Engine.SetSelf.
package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/control"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/dropprivs"
	"github.com/miredo-go/miredo/pkg/loop"
	"github.com/miredo-go/miredo/pkg/metrics"
	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/tundev"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

const (
	// udpBufSize holds any Teredo datagram for a link MTU up to maxMTU;
	// longer ones are counted as truncated and dropped.
	udpBufSize = 2048
	// maxMTU is the largest MTU the client applies: what udpBufSize carries
	// with the Teredo headers and trailers. Servers advertise 1280; a
	// larger advertised MTU is lowered to this one.
	maxMTU = udpBufSize - tunnel.UDPHeadroom
	// tunBufSize holds the largest IPv6 packet the tunnel can carry.
	tunBufSize = 65536
	// tunHeadroom is reserved in front of packets read from the tunnel for
	// backends that put a header there (tundev.Device).
	tunHeadroom = 16
	// suspectAfter: host traffic sent into the tunnel without anything
	// coming back for this long makes us ask the server whether our
	// mapping changed, rather than wait up to 30 s for the next refresh.
	suspectAfter = 2 * time.Second
	// suspectCheck is how often the maintenance goroutine looks at that.
	suspectCheck = 250 * time.Millisecond
	// heardCheckEvery bounds how often the socket loop checks whether the
	// Engine accepted a datagram from our server; the refresh it may
	// postpone is 22-30 s away.
	heardCheckEvery = 250 * time.Millisecond
	// applyRetryMin and applyRetryMax bound the wait before retrying an
	// interface change the helper could not make.
	applyRetryMin = time.Second
	applyRetryMax = 30 * time.Second
	// resolveTimeout bounds one resolution of the server names. It is
	// short: a client that starts before DNS works tries again every 1-2 s
	// (Timing.BackoffMax), and a query lost while the resolver was out of
	// reach must not hold the next try back.
	resolveTimeout = 2500 * time.Millisecond
	// maintQueue bounds the advertisements waiting for the maintenance
	// goroutine; more are dropped (a flood of fake ones, most likely).
	maintQueue = 16
)

// ifHelper is the privileged helper as the packet process uses it: a
// *helper, or a fake in tests.
type ifHelper interface {
	Up(addr netip.Addr, mtu int) (hookStatus int, err error)
	Down() (hookStatus int, err error)
	Done() <-chan struct{}
	Close(timeout time.Duration) error
}

// Stats counts what the client's own loops did; the data path's counters
// are the Engine's.
type Stats struct {
	Maintenance    uint64 // datagrams handed to the state machine
	MaintRefused   uint64 // ... that it did not accept
	MaintOverflow  uint64 // ... dropped because it was busy
	Truncated      uint64 // datagrams longer than udpBufSize
	ReadErrors     uint64 // failed reads of the tunnel or the socket
	SendErrors     uint64 // datagrams the kernel refused
	TunWriteErrors uint64 // packets the tunnel refused
	HelperFailures uint64 // interface changes the helper could not apply
	EarlyRefreshes uint64 // refreshes asked for by unanswered traffic
	StatusChanges  uint64
}

// LogValue prints the counters with stable keys.
func (s Stats) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("maintenance", s.Maintenance),
		slog.Uint64("maint_refused", s.MaintRefused),
		slog.Uint64("maint_overflow", s.MaintOverflow),
		slog.Uint64("truncated", s.Truncated),
		slog.Uint64("read_errors", s.ReadErrors),
		slog.Uint64("send_errors", s.SendErrors),
		slog.Uint64("tun_write_errors", s.TunWriteErrors),
		slog.Uint64("helper_failures", s.HelperFailures),
		slog.Uint64("early_refreshes", s.EarlyRefreshes),
		slog.Uint64("status_changes", s.StatusChanges),
	)
}

type counters struct {
	maintenance, maintRefused, maintOverflow, truncated atomic.Uint64
	readErrors                                          atomic.Uint64
	sendErrors, tunWriteErrors, helperFailures          atomic.Uint64
	earlyRefreshes, statusChanges                       atomic.Uint64
}

// datagram is a maintenance datagram on its way to the state machine.
type datagram struct {
	b    []byte
	from netip.AddrPort
	at   time.Time
}

type resolution struct {
	primary, secondary netip.Addr
	err                error
}

// Client is a running Teredo client's packet process.
type Client struct {
	cfg    Config
	log    *slog.Logger
	dev    tundev.Device
	conn   udpio.PacketConn
	helper ifHelper
	// applyRetryMin is the first wait before retrying a status the helper
	// could not apply (0: applyRetryMin).
	applyRetryMin time.Duration
	// notify, if set, hears the client's state and the data path's health.
	notify *daemon.Notifier
	// refresh is the refresh interval in use (nanoseconds), for status.
	refresh atomic.Int64
	eng     *tunnel.Engine

	// servers are the primary and secondary server addresses, read by the
	// socket loop to pick out maintenance traffic.
	servers atomic.Pointer[[2]netip.Addr]
	// Monotonic nanoseconds since start (0 = never): when the Engine last
	// delivered a packet to the host or the machine accepted an RA, when
	// the primary server last sent a datagram the Engine accepted, and the
	// first host packet sent since lastRecv.
	start                              time.Time
	lastRecv, lastHeard, firstUnanswer atomic.Int64
	// heardChecked is when fromServer last looked at the Engine's
	// counters (socket loop only).
	heardChecked int64

	status atomic.Pointer[Status]
	// maint carries advertisements to the maintenance goroutine, in the
	// buffers of maintFree (initMaintenance).
	maint     chan datagram
	maintFree chan []byte
	st        counters
	// devWrite serialises writes to the device, which takes one writer at
	// a time; the socket loop is the one that writes in bulk.
	devWrite sync.Mutex
	// reloads delivers the configuration read again at SIGHUP (Run sets
	// it); the maintenance goroutine takes it.
	reloads <-chan Config
	// ext is RFC 6081's state: random ports, UPnP mapping (ext.go).
	ext extensions
	// netEvents reports changes of the host's IPv4 addresses and default
	// route (netwatch.go); netDone ends the watch.
	netEvents <-chan struct{}
	netDone   chan struct{}
	netOnce   sync.Once
}

// Open does the privileged part of starting: the tunnel device, the UDP
// socket and the privileged helper. self is our own executable, which the
// helper runs.
func Open(cfg Config, self string, log *slog.Logger) (*Client, error) {
	cfg, err := cfg.Check()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: log, start: time.Now()}
	c.initMaintenance()
	c.servers.Store(&[2]netip.Addr{})
	c.status.Store(&Status{})
	if stale, err := netcfg.DeleteStaleLink(netns.None(), cfg.Interface); err != nil {
		return nil, err
	} else if stale {
		log.Warn("removed a stale tunnel interface", "interface", cfg.Interface)
	}
	devs, err := tundev.Open(cfg.Interface, tundev.Options{Backend: cfg.TunBackend})
	if err != nil {
		return nil, err
	}
	c.dev = devs[0]
	bind := netip.AddrPortFrom(cfg.BindAddress, cfg.BindPort)
	conn, err := udpio.Listen(bind, udpio.Options{RecvBuffer: 4 << 20, SendBuffer: 4 << 20, GSO: !cfg.NoGSO, GRO: !cfg.NoGRO})
	if err != nil {
		c.dev.Close()
		return nil, fmt.Errorf("UDP socket on %v: %w", bind, err)
	}
	c.conn = conn
	c.helper, err = startHelper(self, HelperConfig{Interface: c.dev.Name(), Hook: cfg.Hook, User: cfg.User}, cfg.LogLevel)
	if err != nil {
		c.conn.Close()
		c.dev.Close()
		return nil, err
	}
	c.netDone = make(chan struct{})
	if c.netEvents, err = watchNetwork(c.netDone, log); err != nil {
		log.Warn("not watching the host's addresses and routes: a move to another network is seen at the next refresh", "err", err)
	}
	c.ext.ports = newRandomSockets(cfg.BindAddress)
	c.eng = tunnel.New(tunnel.Config{Mode: tunnel.Client, Prefix: proto.DefaultPrefix, Ports: c.ext.ports})
	c.ext.ports.receive = func(b []byte, from netip.AddrPort, port uint16, out *tunnel.Out) error {
		c.eng.FromRandomPort(b, from, port, out)
		return c.flush(out)
	}
	return c, nil
}

// Close ends the helper (it takes the interface down and runs the last
// hooks while the interface still exists), then closes the socket and the
// device. Loops still running return.
func (c *Client) Close() {
	if err := c.helper.Close(helperTimeout); err != nil {
		c.log.Warn("privileged helper", "err", err)
	}
	c.conn.Close()
	c.dev.Close()
	c.netOnce.Do(func() {
		if c.netDone != nil {
			close(c.netDone)
		}
	})
}

// LocalAddr is the UDP socket's address.
func (c *Client) LocalAddr() netip.AddrPort { return c.conn.LocalAddr() }

// Status returns the client's current status, as last applied.
func (c *Client) Status() Status { return *c.status.Load() }

// Stats returns the client's loop counters.
func (c *Client) Stats() Stats {
	return Stats{
		Maintenance: c.st.maintenance.Load(), MaintRefused: c.st.maintRefused.Load(),
		MaintOverflow: c.st.maintOverflow.Load(), Truncated: c.st.truncated.Load(),
		ReadErrors: c.st.readErrors.Load(),
		SendErrors: c.st.sendErrors.Load(), TunWriteErrors: c.st.tunWriteErrors.Load(),
		HelperFailures: c.st.helperFailures.Load(), EarlyRefreshes: c.st.earlyRefreshes.Load(),
		StatusChanges: c.st.statusChanges.Load(),
	}
}

// EngineStats returns the data path's counters.
func (c *Client) EngineStats() tunnel.Stats { return c.eng.Stats() }

func (c *Client) mono() int64 { return int64(time.Since(c.start)) + 1 }

// Serve runs the client until ctx ends or something fails for good (the
// helper died, a socket broke).
func (c *Client) Serve(ctx context.Context) error {
	c.startUPnP(ctx)
	g := loop.NewGroup(ctx)
	g.Go(c.extLoop)
	g.Go(c.tunnelLoop)
	g.Go(c.socketLoop)
	maintained := make(chan struct{})
	go func() { // not a Group loop: its helper calls may rightly take long
		defer close(maintained)
		if err := c.maintain(g.Context()); err != nil {
			g.Fail(err)
		}
	}()
	if c.notify != nil {
		go c.notify.Watchdog(g.Context(), g.Healthy)
	}
	return g.Wait(func() {
		// The state machine stops first (it may be talking to the
		// helper), then the helper, while the interface exists: it takes
		// it down and runs the last hooks. Then closing unblocks the
		// loops.
		<-maintained
		if herr := c.helper.Close(helperTimeout); herr != nil {
			c.log.Warn("privileged helper", "err", herr)
		}
		c.conn.Close()
		c.dev.Close()
	})
}

// tunnelLoop moves host packets into the Teredo socket.
func (c *Client) tunnelLoop(ctx context.Context) error {
	bs := c.dev.BatchSize()
	bufs := make([][]byte, bs)
	sizes := make([]int, bs)
	for i := range bufs {
		bufs[i] = make([]byte, tunHeadroom+tunBufSize)
	}
	var out tunnel.Out
	return loop.Read(ctx, "tunnel read",
		func() (int, error) { return c.dev.Read(bufs, sizes, tunHeadroom) },
		func(n int) error {
			for i := range n {
				c.eng.FromTunnel(bufs[i][tunHeadroom:tunHeadroom+sizes[i]], &out)
			}
			if len(out.UDP) > 0 {
				// Something went out that should be answered: remember
				// when, unless an earlier packet is already waiting.
				if c.firstUnanswer.Load() <= c.lastRecv.Load() {
					c.firstUnanswer.Store(c.mono())
				}
			}
			return c.flush(&out)
		},
		c.failed("tunnel read failed"))
}

// failed counts a failed read and logs it at debug level.
func (c *Client) failed(msg string) func(error) {
	return func(err error) {
		c.st.readErrors.Add(1)
		c.log.Debug(msg, "err", err)
	}
}

// flush sends and writes what the Engine produced, then resets out. It
// returns net.ErrClosed once the socket or device is closed.
func (c *Client) flush(out *tunnel.Out) error {
	c.sendVia(out)
	f := out.Flush(c.conn, c.dev, &c.devWrite)
	c.st.sendErrors.Add(uint64(f.UDPFailed))
	c.st.tunWriteErrors.Add(uint64(f.TunFailed))
	if f.Closed {
		return net.ErrClosed
	}
	return nil
}

// socketLoop reads Teredo datagrams: maintenance traffic goes to the state
// machine, everything else to the Engine.
func (c *Client) socketLoop(ctx context.Context) error {
	msgs := udpio.NewMessages(udpio.MaxBatch, udpBufSize)
	var out tunnel.Out
	return loop.Read(ctx, "socket read",
		func() (int, error) { return c.conn.ReadBatch(msgs) },
		func(n int) error {
			c.receive(msgs[:n], &out)
			return c.flush(&out)
		},
		c.failed("socket read failed"))
}

// receive handles one batch of datagrams: advertisements from our server
// go to the state machine, everything else to the Engine. A batch from
// which the Engine delivered a packet to the host (on this path it writes
// to out.Local only for datagrams it accepted) answers the host's traffic:
// lastRecv. Forged, malformed or refused datagrams do not count, so they
// cannot hide the silence a changed NAT mapping causes; nor do bubbles and
// connectivity-test replies, which answer the Engine, not the host.
func (c *Client) receive(msgs []udpio.Message, out *tunnel.Out) {
	delivered := len(out.Local)
	srv := c.servers.Load()
	for i := range msgs {
		m := &msgs[i]
		if m.Truncated {
			c.st.truncated.Add(1)
			continue
		}
		b := m.Buf[:m.N]
		if m.Addr.Port() == proto.Port {
			if a := m.Addr.Addr(); a == srv[0] || a == srv[1] {
				if len(b) >= 2 && b[0] == 0 && b[1] == 1 { // authentication header: an RA
					c.toMaintenance(b, m.Addr)
					continue
				}
				if a == srv[0] {
					c.fromServer(b, m.Addr, out)
					continue
				}
			}
		}
		c.eng.FromUDP(b, m.Addr, out)
	}
	if len(out.Local) > delivered {
		c.lastRecv.Store(c.mono())
	}
}

// fromServer hands the Engine a datagram from our primary server that is
// not an advertisement. If the Engine accepts it (a bubble the server
// forwards to us), the server was heard from, which postpones the next
// refresh. FromUDP gives no verdict, so this compares the Engine's
// accepted counters around the call (only the socket loop moves them);
// reading them visits every shard of the peer table, so it is done at most
// once per heardCheckEvery: a forged flood from the server's address
// cannot slow the loop down, and at worst hides a real packet, which costs
// one refresh.
func (c *Client) fromServer(b []byte, from netip.AddrPort, out *tunnel.Out) {
	now := c.mono()
	if c.heardChecked != 0 && now-c.heardChecked < int64(heardCheckEvery) {
		c.eng.FromUDP(b, from, out)
		return
	}
	c.heardChecked = now
	before := accepted(c.eng.Stats())
	c.eng.FromUDP(b, from, out)
	if accepted(c.eng.Stats()) != before {
		c.lastHeard.Store(now)
	}
}

// accepted counts the datagrams the Engine took from the Teredo side:
// packets delivered to the host, bubbles, and replies to its connectivity
// tests.
func accepted(s tunnel.Stats) uint64 { return s.Delivered + s.BubblesIn + s.PingReplies }

// initMaintenance makes the advertisement queue and its buffers, all
// allocated up front: whoever can forge our server's address decides how
// many advertisements arrive, but not how much we allocate.
func (c *Client) initMaintenance() {
	c.maint = make(chan datagram, maintQueue)
	c.maintFree = make(chan []byte, maintQueue)
	for range maintQueue {
		c.maintFree <- make([]byte, 0, udpBufSize)
	}
}

// toMaintenance copies an advertisement into a free buffer for the
// maintenance goroutine; with none free (it is busy, or a flood) the
// advertisement is dropped.
func (c *Client) toMaintenance(b []byte, from netip.AddrPort) {
	c.st.maintenance.Add(1)
	select {
	case buf := <-c.maintFree:
		// maint has a slot for every buffer: this never blocks.
		c.maint <- datagram{b: append(buf[:0], b...), from: from, at: time.Now()}
	default:
		c.st.maintOverflow.Add(1)
	}
}

// maintDone gives d's buffer back once the state machine is done with it.
func (c *Client) maintDone(d datagram) { c.maintFree <- d.b[:0] }

// maintain owns the state machine: it runs its timers, feeds it
// advertisements and resolutions, applies what it decides, and ticks the
// Engine each second.
func (c *Client) maintain(ctx context.Context) error {
	timing := DefaultTiming()
	timing.Refresh = c.cfg.Refresh
	m := NewMachine(MachineConfig{Timing: timing, Prefix: proto.DefaultPrefix, MaxMTU: maxMTU, Log: c.log,
		LocalPort: c.conn.LocalAddr().Port(), UPnP: c.upnpMapping()})
	resolved := make(chan resolution, 1)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	watch := time.NewTicker(suspectCheck)
	defer watch.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	var (
		a        Actions
		applied  Status
		lastGood resolution
		tickOut  tunnel.Out
		sendMsgs []udpio.Message
	)
	retry := retryApply{timer: time.NewTimer(time.Hour), min: cmp.Or(c.applyRetryMin, applyRetryMin)}
	retry.timer.Stop()
	defer retry.timer.Stop()
	interval := newIntervalRun(c)
	defer interval.stop()
	netSettled := time.NewTimer(time.Hour)
	netSettled.Stop()
	defer netSettled.Stop()
	c.refresh.Store(int64(timing.Refresh))
	apply := func(st Status) error {
		ok, err := c.apply(st, &applied)
		if err == nil {
			retry.after(ok, c.log)
			c.tellManager(st, ok)
			interval.follow(st, m)
		}
		return err
	}
	m.Start(time.Now(), &a)
	for {
		if err := c.act(ctx, m, &a, apply, &sendMsgs, resolved); err != nil {
			return err
		}
		if d := m.Deadline(); !d.IsZero() {
			timer.Reset(max(time.Until(d), 0))
		} else {
			timer.Reset(time.Hour)
		}

		select {
		case <-ctx.Done():
			return nil
		case <-c.helper.Done():
			return errors.New("the privileged helper exited")
		case <-retry.c:
			if err := apply(m.Status()); err != nil {
				return err
			}
		case <-c.netEvents:
			netSettled.Reset(netSettle)
		case <-netSettled.C:
			c.log.Info("the host's IPv4 address or route changed: qualifying again", "status", m.Status())
			m.Rediscover(time.Now(), &a)
		case d := <-interval.in:
			interval.receive(d, m)
		case <-interval.tc:
			interval.tick(m)
		case <-timer.C:
			if h := c.lastHeard.Load(); h != 0 { // the refresh may be moot
				m.Heard(c.start.Add(time.Duration(h)))
			}
			m.Tick(time.Now(), &a)
		case d := <-c.maint:
			if err := m.Receive(d.at, d.b, d.from, &a); err != nil {
				c.st.maintRefused.Add(1)
				c.log.Debug("advertisement ignored", "from", d.from, "err", err)
			} else {
				c.lastRecv.Store(c.mono()) // the mapping works
			}
			c.maintDone(d)
		case r := <-resolved:
			if r.err != nil && lastGood.primary.IsValid() {
				c.log.Warn("cannot resolve the Teredo server; using its last address", "err", r.err, "server", lastGood.primary)
				r = lastGood
			} else if r.err == nil {
				lastGood = r
			}
			m.Resolved(time.Now(), r.primary, r.secondary, r.err, &a)
		case <-watch.C:
			if fu := c.firstUnanswer.Load(); fu > c.lastRecv.Load() && c.mono()-fu >= int64(suspectAfter) {
				m.Suspect(time.Now(), &a)
				if len(a.Send) > 0 {
					c.st.earlyRefreshes.Add(1)
				}
			}
		case <-ticker.C:
			if h := c.lastHeard.Load(); h != 0 {
				m.Heard(c.start.Add(time.Duration(h)))
			}
			c.eng.Tick(&tickOut)
			if err := c.flush(&tickOut); err != nil {
				return nil // closed: Serve is stopping
			}
		case <-usr1:
			c.log.Info("statistics", "status", c.Status(), "stats", c.Stats(), "engine", c.eng.Stats())
		case next := <-c.reloads:
			// SIGHUP: Debian's if-up hook (the network changed) and the
			// service manager's reload send it. The configuration was
			// read again; the server names and the refresh interval
			// apply, and the server is asked again at once, which keeps
			// our address if nothing changed.
			c.reload(next)
			m.SetRefresh(c.cfg.Refresh)
			c.log.Info("SIGHUP: resolving the Teredo server and qualifying again", "server", c.cfg.Server, "status", m.Status())
			m.Rediscover(time.Now(), &a)
		}
	}
}

// act carries out what the machine asked for in a, then resets a: it
// sends the solicitations, starts a resolution and applies a changed
// status. Only a dead helper is an error.
//
// The socket loop picks our server's answers out of the traffic by the
// server's addresses, so those are published before a solicitation leaves:
// an answer can come back before this goroutine gets to apply, and one that
// the socket loop did not recognise went to the Engine and was lost, which
// cost a 4 s retry whenever the answer won that race.
func (c *Client) act(ctx context.Context, m *Machine, a *Actions, apply func(Status) error, msgs *[]udpio.Message, resolved chan<- resolution) error {
	defer a.Reset()
	if len(a.Send) > 0 {
		st := m.Status()
		c.setServers(st.Server, st.Server2)
		*msgs = (*msgs)[:0]
		for _, d := range a.Send {
			*msgs = append(*msgs, udpio.Message{Buf: d.Payload, N: len(d.Payload), Addr: d.To})
		}
		if sent, err := c.conn.WriteBatch(*msgs); err != nil {
			c.st.sendErrors.Add(uint64(len(*msgs) - sent))
			c.log.Debug("solicitation not sent", "err", err)
		}
	}
	if a.Resolve {
		st := m.Status()
		go c.resolve(ctx, c.cfg.Server, c.cfg.Server2, st.Server, st.Unreachable, resolved)
	}
	if a.Changed {
		return apply(m.Status())
	}
	return nil
}

// setServers publishes the server addresses to the socket loop.
func (c *Client) setServers(primary, secondary netip.Addr) {
	if s := c.servers.Load(); s[0] != primary || s[1] != secondary {
		c.servers.Store(&[2]netip.Addr{primary, secondary})
	}
}

// apply makes the interface and the Engine match st; applied is what was
// applied before, updated only once everything is. It returns false when
// the helper could not change the interface (a transient netlink error,
// say): the caller retries, and until then the status says the interface
// is not configured and the Engine keeps what the interface carries. Only
// a helper that is gone is an error.
func (c *Client) apply(st Status, applied *Status) (bool, error) {
	c.setServers(st.Server, st.Server2)
	prev := *applied
	ok := true
	defer func() {
		if ok {
			*applied = st
		}
		st.Configured = ok && st.Phase == PhaseQualified
		c.status.Store(&st)
		c.st.statusChanges.Add(1)
	}()
	if st.Phase == PhaseQualified {
		if prev.Phase != PhaseQualified || st.Addr != prev.Addr || st.MTU != prev.MTU {
			status, err := c.helper.Up(st.Addr, st.MTU)
			if err != nil {
				ok = false
				c.st.helperFailures.Add(1)
				c.log.Error("cannot configure the tunnel interface", "address", st.Addr, "mtu", st.MTU, "err", err)
				return false, c.helperGone(err)
			}
			c.log.Info("Teredo interface up", "interface", c.dev.Name(), "address", st.Addr, "mtu", st.MTU,
				"nat", st.NAT.String(), "hook_status", status)
		}
		if prev.Phase != PhaseQualified || st.Addr != prev.Addr || st.NAT != prev.NAT || st.NATProbing != prev.NATProbing {
			c.eng.SetSelf(c.selfFor(st))
		}
		return true, nil
	}
	if prev.Phase == PhaseQualified {
		c.eng.SetSelf(tunnel.Self{})
		status, err := c.helper.Down()
		if err != nil {
			ok = false
			c.st.helperFailures.Add(1)
			c.log.Error("cannot take the tunnel interface down", "err", err)
			return false, c.helperGone(err)
		}
		c.log.Info("Teredo interface down", "interface", c.dev.Name(), "hook_status", status)
	}
	return true, nil
}

// tellManager tells the service manager where the client stands: ready
// once qualified with the interface configured, and otherwise why not.
func (c *Client) tellManager(st Status, configured bool) {
	if c.notify == nil {
		return
	}
	switch {
	case st.Phase == PhaseQualified && configured:
		c.notify.Ready(fmt.Sprintf("Teredo address %v through server %v, NAT %s", st.Addr, st.Server, st.NAT))
	case st.Phase == PhaseQualified:
		c.notify.Status(fmt.Sprintf("qualified as %v, but the interface could not be configured yet; retrying", st.Addr))
	case st.Phase == PhaseResolving:
		c.notify.Status("resolving the Teredo server " + c.cfg.Server)
	case st.Phase == PhaseQualifying:
		c.notify.Status(fmt.Sprintf("qualifying with the Teredo server %v", st.Server))
	default:
		c.notify.Status("offline: the Teredo server does not answer; retrying")
	}
}

// helperGone returns err if the helper has exited (nothing can be retried
// then), and nil if it is alive.
func (c *Client) helperGone(err error) error {
	select {
	case <-c.helper.Done():
		return err
	case <-time.After(100 * time.Millisecond):
		return nil
	}
}

// retryApply is the back-off between attempts to apply a status the
// helper could not: from applyRetryMin, doubling up to applyRetryMax.
type retryApply struct {
	timer *time.Timer
	c     <-chan time.Time // nil when nothing waits
	delay time.Duration
	min   time.Duration
}

// after records the outcome of an attempt: success ends the retries,
// failure schedules the next one.
func (r *retryApply) after(ok bool, log *slog.Logger) {
	if ok {
		r.c, r.delay = nil, 0
		return
	}
	r.delay = min(max(2*r.delay, r.min), applyRetryMax)
	r.timer.Reset(r.delay)
	r.c = r.timer.C
	log.Warn("will retry configuring the tunnel interface", "in", r.delay)
}

// resolve looks up the server names (the secondary defaults to the
// primary plus one, as Windows and Miredo's server assume) and sends the
// result to out.
func (c *Client) resolve(ctx context.Context, server, server2 string, current, avoid netip.Addr, out chan<- resolution) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var r resolution
	addrs, err := lookupIPv4(ctx, server)
	if r.err = err; err == nil {
		r.primary = pickServer(addrs, current, avoid, rand.Uint64())
		if server2 != "" {
			var s2 []netip.Addr
			if s2, r.err = lookupIPv4(ctx, server2); r.err == nil {
				r.secondary = s2[0]
			}
		} else {
			r.secondary = r.primary.Next()
		}
	}
	select {
	case out <- r:
	case <-ctx.Done():
	}
}

// pickServer chooses the primary server among the addresses a name has:
// the current one while it is still among them and answers, otherwise one
// of the others at random (r), avoiding the one that stopped answering, so
// that clients spread over a pool of servers behind one name and move off
// a dead member at once.
func pickServer(addrs []netip.Addr, current, avoid netip.Addr, r uint64) netip.Addr {
	if current.IsValid() && current != avoid && slices.Contains(addrs, current) {
		return current
	}
	var live []netip.Addr
	for _, a := range addrs {
		if a != avoid {
			live = append(live, a)
		}
	}
	if len(live) == 0 {
		live = addrs
	}
	return live[r%uint64(len(live))]
}

// lookupIPv4 returns name's IPv4 addresses, or name itself if it is one.
func lookupIPv4(ctx context.Context, name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no IPv4 address", name)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// Run runs the client until ctx ends: opens the tunnel, the socket and the
// helper, writes the pid file, drops privileges and serves. Configurations
// read again at SIGHUP arrive on reloads (the caller catches the signal
// for the whole life of the process: it must not kill the client while the
// helper runs the last hooks either).
func Run(ctx context.Context, cfg Config, log *slog.Logger, reloads <-chan Config) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding our own executable for the privileged helper: %w", err)
	}
	c, err := Open(cfg, self, log)
	if err != nil {
		return err
	}
	defer c.Close()
	c.reloads = reloads
	cfg = c.cfg
	ctl, err := control.ListenOrWarn(cfg.ControlSocket, cfg.ControlSocketNamed, log)
	if err != nil {
		return err
	}
	defer ctl.Close()
	met, err := metrics.Listen(cfg.MetricsListen, log)
	if err != nil {
		return err
	}
	// The device and socket are open and the helper holds CAP_NET_ADMIN:
	// the packet process needs no privilege at all.
	release, err := daemon.Settle(cfg.PIDFile, dropprivs.Config{User: cfg.User, Chroot: cfg.Chroot}, log)
	if err != nil {
		return err
	}
	defer release()
	log.Info("Teredo client started", "server", cfg.Server, "interface", c.dev.Name(), "local", c.LocalAddr())
	c.notify = daemon.NewNotifier(log)
	defer c.notify.Stopping()
	go ctl.Serve(ctx, c.report)
	go met.Serve(ctx, metrics.Handler("client", c.counters))
	err = c.Serve(ctx)
	log.Info("Teredo client stopped", "status", c.Status(), "stats", c.Stats(), "engine", c.eng.Stats())
	return err
}

// reload takes a configuration read again at SIGHUP: the server names and
// the refresh interval apply; the rest shapes the tunnel, the socket or the
// helper, set up with privileges the packet process no longer has, and is
// named in one log line for a restart to apply.
func (c *Client) reload(next Config) {
	next, err := next.Check()
	if err != nil {
		c.log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	if un := c.cfg.unapplied(next); len(un) > 0 {
		c.log.Warn("SIGHUP: restart to apply: " + strings.Join(un, ", "))
	}
	if next.Server != c.cfg.Server || next.Server2 != c.cfg.Server2 {
		c.log.Info("SIGHUP: new Teredo server", "server", next.Server, "server2", next.Server2, "old", c.cfg.Server)
	}
	c.cfg.Server, c.cfg.Server2, c.cfg.Refresh = next.Server, next.Server2, next.Refresh
}

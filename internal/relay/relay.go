// SPDX-License-Identifier: MIT

// Package relay is the Teredo relay role (RFC 4380 §5.4): the static tunnel, the
// route for the Teredo prefix and the relay policy. Only cmd/miredo-relay
// imports it.
//
// A relay is three loops around one tunnel.Engine, which holds every rule:
//
//	tunnel loop:  dev.Read (batch)      -> Engine.FromTunnel -> udp.WriteBatch (packets, bubbles)
//	                                                         -> dev.Write      (ICMPv6 errors)
//	socket loop:  udp.ReadBatch (64)    -> Engine.FromUDP    -> dev.Write      (packets for native IPv6)
//	                                                         -> udp.WriteBatch (dequeued packets)
//	timer:        every second          -> Engine.Tick       -> both (bubble retries, errors)
//
// Buffers are allocated once per loop; forwarding a packet allocates
// nothing. Setting up needs CAP_NET_ADMIN (tunnel, address, route) and a
// socket; after that the relay drops every privilege, since an open tunnel
// and socket are all it needs.
package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
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

// linkLocal is the relay's address on the tunnel, as Miredo's relay sets
// it: fe80::ffff:ffff:ffff/64.
var linkLocal = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfe, 0x80, 10: 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), 64)

// routeMetric is the metric of the prefix route, Miredo's.
const routeMetric = 1024

// Stats are the relay's own counters; the data path's are tunnel.Stats.
type Stats struct {
	TunReadErrors  uint64
	TunWriteErrors uint64
	UDPReadErrors  uint64
	UDPSendErrors  uint64 // datagrams the socket refused
	Truncated      uint64 // datagrams longer than the buffer, dropped
}

// LogValue prints the counters with stable keys.
func (s Stats) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("tun_read_errors", s.TunReadErrors),
		slog.Uint64("tun_write_errors", s.TunWriteErrors),
		slog.Uint64("udp_read_errors", s.UDPReadErrors),
		slog.Uint64("udp_send_errors", s.UDPSendErrors),
		slog.Uint64("truncated", s.Truncated),
	)
}

type counters struct {
	tunRead, tunWrite, udpRead, udpSend, truncated atomic.Uint64
}

// Relay is a running relay.
type Relay struct {
	cfg  Config
	log  *slog.Logger
	dev  tundev.Device
	conn udpio.PacketConn
	eng  *tunnel.Engine
	st   counters
	// devWrite serialises writes to the device, which takes one writer at
	// a time; three loops write to it.
	devWrite sync.Mutex
	// offloads says whether the socket got UDP GSO and GRO.
	offloads udpio.Stats
	start    time.Time
	// notify, if set, hears the data path's health (the watchdog).
	notify *daemon.Notifier
	// announce holds the announce interface (nil without one); see
	// announce.go for the drain.
	announce   *announcer
	drainAsked chan struct{}
	drainOnce  sync.Once
	draining   atomic.Bool
}

// Open does the privileged part: the tunnel interface with its MTU,
// link-local address and route to the Teredo prefix (after clearing what a
// crashed run left), and the UDP socket.
func Open(cfg Config, log *slog.Logger) (*Relay, error) {
	cfg, err := cfg.Check()
	if err != nil {
		return nil, err
	}
	if stale, err := netcfg.DeleteStaleLink(netns.None(), cfg.Interface); err != nil {
		return nil, err
	} else if stale {
		log.Warn("removed a stale tunnel interface", "interface", cfg.Interface)
	}
	r := &Relay{cfg: cfg, log: log, start: time.Now(), drainAsked: make(chan struct{})}
	devs, err := tundev.Open(cfg.Interface, tundev.Options{Backend: cfg.TunBackend})
	if err != nil {
		return nil, err
	}
	r.dev = devs[0]
	if err := r.configure(); err != nil {
		r.dev.Close()
		return nil, err
	}
	bind := netip.AddrPortFrom(cfg.BindAddress, cfg.BindPort)
	conn, err := udpio.Listen(bind, udpio.Options{RecvBuffer: 4 << 20, SendBuffer: 4 << 20,
		NoBatch: cfg.NoBatch, GSO: !cfg.NoGSO, GRO: !cfg.NoGRO})
	if err != nil {
		r.dev.Close()
		return nil, fmt.Errorf("UDP socket on %v: %w", bind, err)
	}
	r.conn, r.offloads = conn, conn.Stats()
	r.eng = tunnel.New(tunnel.Config{Mode: cfg.mode(), Prefix: proto.PrefixOf(cfg.Prefix), MaxPeers: cfg.MaxPeers})
	// Last: the routing daemon announces us from now on.
	if cfg.AnnounceInterface != "" {
		if r.announce, err = openAnnouncer(cfg.AnnounceInterface, log); err != nil {
			r.conn.Close()
			r.dev.Close()
			return nil, err
		}
	}
	return r, nil
}

// configure gives the interface its MTU, address and route, from a clean
// start.
func (r *Relay) configure() error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	l, err := netcfg.NewLink(h, r.dev.Name())
	if err != nil {
		return err
	}
	if cleaned, err := l.CleanStart(); err != nil {
		return err
	} else if len(cleaned.Addrs)+len(cleaned.Routes) > 0 {
		r.log.Info("cleared a previous run's configuration", "addrs", cleaned.Addrs, "routes", cleaned.Routes)
	}
	route := netcfg.Route{Prefix: netip.PrefixFrom(r.cfg.Prefix, 32), Metric: routeMetric}
	for _, step := range []func() error{
		func() error { return l.SetMTU(r.cfg.MTU) },
		l.SetUp,
		func() error { return l.AddAddr(linkLocal) },
		func() error { return l.AddRoute(route) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// Close withdraws the announcement, then closes the socket and the tunnel
// (which takes its address and route with it); running loops return.
func (r *Relay) Close() {
	r.announce.withdraw()
	r.conn.Close()
	r.dev.Close()
}

// LocalAddr is the UDP socket's address.
func (r *Relay) LocalAddr() netip.AddrPort { return r.conn.LocalAddr() }

// Stats returns the relay's loop counters.
func (r *Relay) Stats() Stats {
	return Stats{
		TunReadErrors: r.st.tunRead.Load(), TunWriteErrors: r.st.tunWrite.Load(),
		UDPReadErrors: r.st.udpRead.Load(), UDPSendErrors: r.st.udpSend.Load(),
		Truncated: r.st.truncated.Load(),
	}
}

// EngineStats returns the data path's counters.
func (r *Relay) EngineStats() tunnel.Stats { return r.eng.Stats() }

// TunStats returns the tunnel device's offload counters (zero for
// backends without offloads).
func (r *Relay) TunStats() tundev.OffloadStats {
	if s, ok := r.dev.(tundev.OffloadStatser); ok {
		return s.OffloadStats()
	}
	return tundev.OffloadStats{}
}

// Serve runs the loops until ctx ends or one fails for good, then closes
// the socket and the tunnel.
func (r *Relay) Serve(ctx context.Context) error {
	g := loop.NewGroup(ctx)
	g.Go(r.tunnelLoop)
	g.Go(r.socketLoop)
	g.Go(r.timerLoop)
	if r.notify != nil {
		go r.notify.Watchdog(g.Context(), g.Healthy)
	}
	return g.Wait(r.Close)
}

// tunnelLoop moves host packets to Teredo peers.
func (r *Relay) tunnelLoop(ctx context.Context) error {
	bs := r.dev.BatchSize()
	bufs := make([][]byte, bs)
	sizes := make([]int, bs)
	for i := range bufs {
		bufs[i] = make([]byte, r.cfg.MTU)
	}
	var out tunnel.Out
	return loop.Read(ctx, "tunnel read",
		func() (int, error) { return r.dev.Read(bufs, sizes, 0) },
		func(n int) error {
			for i := range n {
				r.eng.FromTunnel(bufs[i][:sizes[i]], &out)
			}
			return r.flush(&out)
		},
		r.failed(&r.st.tunRead, "tunnel read failed"))
}

// socketLoop moves Teredo datagrams to the host.
func (r *Relay) socketLoop(ctx context.Context) error {
	size := r.cfg.MTU + tunnel.UDPHeadroom
	msgs := udpio.NewMessages(udpio.MaxBatch, size)
	var out tunnel.Out
	return loop.Read(ctx, "socket read",
		func() (int, error) { return r.conn.ReadBatch(msgs) },
		func(n int) error {
			for i := range n {
				m := &msgs[i]
				if m.Truncated {
					r.st.truncated.Add(1)
					continue
				}
				r.eng.FromUDP(m.Buf[:m.N], m.Addr, &out)
			}
			return r.flush(&out)
		},
		r.failed(&r.st.udpRead, "socket read failed"))
}

// timerLoop runs the engine's timers once a second.
func (r *Relay) timerLoop(ctx context.Context) error {
	var out tunnel.Out
	return loop.Every(ctx, time.Second, func() error {
		r.eng.Tick(&out)
		return r.flush(&out)
	})
}

// failed counts a failed read in n and logs it at debug level.
func (r *Relay) failed(n *atomic.Uint64, msg string) func(error) {
	return func(err error) {
		n.Add(1)
		r.log.Debug(msg, "err", err)
	}
}

// flush sends and writes what the engine produced, then resets out. It
// returns net.ErrClosed once the socket or the tunnel is closed, which
// ends the loop; other failures are counted (and logged at debug level).
func (r *Relay) flush(out *tunnel.Out) error {
	f := out.Flush(r.conn, r.dev, &r.devWrite)
	if f.UDPFailed > 0 || f.TunFailed > 0 {
		r.st.udpSend.Add(uint64(f.UDPFailed))
		r.st.tunWrite.Add(uint64(f.TunFailed))
		r.log.Debug("some packets not sent", "udp", f.UDPFailed, "tunnel", f.TunFailed)
	}
	if f.Closed {
		return net.ErrClosed
	}
	return nil
}

// Run runs the relay until ctx ends: opens the tunnel and socket, writes
// the pid file, drops privileges and serves. Configurations read again
// (SIGHUP) arrive on reloads; see Relay.reload.
func Run(ctx context.Context, cfg Config, log *slog.Logger, reloads <-chan Config) error {
	r, err := Open(cfg, log)
	if err != nil {
		return err
	}
	defer r.Close()
	cfg = r.cfg
	ctl, err := control.ListenOrWarn(cfg.ControlSocket, cfg.ControlSocketNamed, log)
	if err != nil {
		return err
	}
	defer ctl.Close()
	ctl.Allow(control.CommandDrain)
	met, err := metrics.Listen(cfg.MetricsListen, log)
	if err != nil {
		return err
	}
	// Reading and writing an open tunnel and socket needs no capability.
	release, err := daemon.Settle(cfg.PIDFile, dropprivs.Config{User: cfg.User, Chroot: cfg.Chroot}, log)
	if err != nil {
		return err
	}
	defer release()
	log.Info("Teredo relay started", "type", relayType(cfg), "prefix", netip.PrefixFrom(cfg.Prefix, 32),
		"interface", r.dev.Name(), "mtu", cfg.MTU, "addr", r.LocalAddr(), "max_peers", cfg.MaxPeers, "batch", !cfg.NoBatch, "tun_backend", cfg.TunBackend,
		"gso", r.offloads.GSO, "gro", r.offloads.GRO)
	r.notify = daemon.NewNotifier(log)
	r.notify.Ready(fmt.Sprintf("%s relay for %v on %s, UDP %v", relayType(cfg), netip.PrefixFrom(cfg.Prefix, 32), r.dev.Name(), r.LocalAddr()))
	defer r.notify.Stopping()
	// SIGTERM or the drain command ends ctx; an announcing relay serves on
	// for its drain time after withdrawing (announce.go).
	ctx, stop := r.serveContext(ctx)
	defer stop()
	// SIGUSR1 logs the counters (Miredo 1.2.6 dies on it instead).
	defer daemon.LogStatistics(ctx, log, func() []any { return []any{"stats", r.EngineStats(), "io", r.Stats(), "tun", r.TunStats()} })()
	go ctl.Serve(ctx, r.handle)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case cfg := <-reloads:
				r.reload(cfg)
			}
		}
	}()
	go met.Serve(ctx, metrics.Handler("relay", r.counters))
	err = r.Serve(ctx)
	log.Info("Teredo relay stopped", "stats", r.EngineStats(), "io", r.Stats(), "tun", r.TunStats())
	return err
}

func relayType(cfg Config) string {
	if cfg.Restricted {
		return "restricted"
	}
	return "cone"
}

// reload takes a configuration read again. The relay's settings all shape
// the tunnel, its route or its socket, which were set up with privileges
// it no longer has: a change is named in one log line for a restart to
// apply (the log level, which the caller sets, is the one that applies).
func (r *Relay) reload(cfg Config) {
	cfg, err := cfg.Check()
	if err != nil {
		r.log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	if un := r.cfg.unapplied(cfg); len(un) > 0 {
		r.log.Warn("SIGHUP: restart to apply: " + strings.Join(un, ", "))
		return
	}
	r.log.Info("SIGHUP: configuration reloaded")
}

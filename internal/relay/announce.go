// SPDX-License-Identifier: MIT

package relay

// Anycast relays (docs/anycast-relays.md): several relays announce the
// Teredo prefix to an upstream router through a routing daemon (BIRD), and
// the router spreads native IPv6 traffic over those that announce it. The
// relay tells the routing daemon whether to announce with an interface of
// its own, the announce interface: an idle TUN interface (no address, no
// route, no traffic) that exists exactly while the relay holds it open.
// BIRD announces 2001::/32 by a static route through that interface, which
// it keeps only while the interface is up, so:
//
//   - a relay that dies (any signal, a crash) loses the interface with its
//     file descriptors, and the announcement goes with it at once;
//   - a relay whose data path hangs stops the watchdog's pings; the
//     service manager kills it, and the first case applies;
//   - a relay asked to stop (SIGTERM, or the drain command) closes the
//     interface first, keeps forwarding for its drain time while the
//     upstream moves the traffic to the other relays, then exits.
//
// The interface is separate from the tunnel so that withdrawing needs no
// privilege (the relay has dropped them all: closing a descriptor is all it
// can do) and does not stop forwarding, which the tunnel's own route is for.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/tundev"
)

// MaxDrainTime bounds --drain-time: a service manager waits for the
// drain before it gives up on a stopping daemon (systemd: 90 s).
const MaxDrainTime = time.Minute

// ErrDrainTime: a drain time out of range.
var ErrDrainTime = fmt.Errorf("the drain time must be within 0-%v", MaxDrainTime)

// announcer holds the announce interface open.
type announcer struct {
	name string
	dev  tundev.Device
	once sync.Once
}

// openAnnouncer creates the announce interface, up, after removing one a
// crashed run left persistent. It needs CAP_NET_ADMIN.
func openAnnouncer(name string, log *slog.Logger) (*announcer, error) {
	if stale, err := netcfg.DeleteStaleLink(netns.None(), name); err != nil {
		return nil, err
	} else if stale {
		log.Warn("removed a stale announce interface", "interface", name)
	}
	devs, err := tundev.Open(name, tundev.Options{Backend: tundev.BackendBatch})
	if err != nil {
		return nil, fmt.Errorf("announce interface: %w", err)
	}
	a := &announcer{name: name, dev: devs[0]}
	h, err := netlink.NewHandle()
	if err != nil {
		a.withdraw()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	l, err := netcfg.NewLink(h, name)
	if err == nil {
		err = l.SetUp()
	}
	if err != nil {
		a.withdraw()
		return nil, fmt.Errorf("announce interface: %w", err)
	}
	return a, nil
}

// withdraw closes the interface, which the kernel then deletes; it
// reports whether this call did (the first one on an announcing relay).
func (a *announcer) withdraw() bool {
	if a == nil {
		return false
	}
	did := false
	a.once.Do(func() {
		a.dev.Close()
		did = true
	})
	return did
}

// DrainReply answers the drain command.
type DrainReply struct {
	// Withdrawn says the announcement was withdrawn by this request (false:
	// the relay announces nothing, or was already draining).
	Withdrawn bool `json:"withdrawn"`
	// ExitIn is how long the relay goes on forwarding before it exits.
	ExitIn string `json:"exit_in"`
}

// askDrain starts the drain, once: the same as SIGTERM.
func (r *Relay) askDrain() { r.drainOnce.Do(func() { close(r.drainAsked) }) }

// serveContext returns the context the relay serves under. It ends when
// ctx ends (SIGTERM) or the drain command comes; for an announcing relay,
// the announcement is withdrawn first and the context ends DrainTime
// later. stop ends it at once.
func (r *Relay) serveContext(ctx context.Context) (serve context.Context, stop context.CancelFunc) {
	serve, stop = context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-r.drainAsked:
		case <-serve.Done():
			return
		}
		r.draining.Store(true)
		if r.announce.withdraw() {
			r.log.Info("draining: announcement withdrawn, forwarding until exit", "announce_interface", r.announce.name, "drain_time", r.cfg.DrainTime)
			r.notify.Status(fmt.Sprintf("draining: announcement withdrawn, exiting in %v", r.cfg.DrainTime))
			t := time.NewTimer(r.cfg.DrainTime)
			defer t.Stop()
			select {
			case <-t.C:
			case <-serve.Done():
			}
		}
		stop()
	}()
	return serve, stop
}

// drain answers the drain command.
func (r *Relay) drain() (any, error) {
	if !r.draining.CompareAndSwap(false, true) {
		return nil, errors.New("already draining")
	}
	exitIn := time.Duration(0)
	if r.announce != nil {
		exitIn = r.cfg.DrainTime
	}
	r.askDrain()
	return DrainReply{Withdrawn: r.announce != nil, ExitIn: exitIn.String()}, nil
}

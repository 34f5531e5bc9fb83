// SPDX-License-Identifier: MIT

// Package failover runs a Teredo fleet in a namespace lab (lab.Options.Fleet:
// two anycast relays behind BIRD and an ECMP router, two server pairs behind
// one DNS name served by dnsmasq, clients behind NATs) and measures what its
// users see when a member fails: the longest gap in a 10 ms ping each way
// between the native host and a client, the pings lost, and TCP throughput
// over time. The e2e tests (TestFailover…) check that traffic survives a
// relay killed and a relay drained; cmd failoverbench (make bench-failover)
// measures every case, ours against Debian's Miredo.
//
// The configurations are the operator's (packaging/anycast), and each
// relay runs as its systemd unit would with the anycast drop-in of
// docs/anycast-relays.md: with --announce-interface, under a watchdog
// (lab.Watchdog, WatchdogSec=1s here).
package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/packaging/anycast"
	"github.com/miredo-go/miredo/pkg/control"
)

// Timing of the fleet's relays, as the anycast drop-in sets them.
const (
	// WatchdogInterval is the relays' watchdog interval (they ping every half).
	WatchdogInterval = time.Second
	// AbortGrace is how long a relay has to die of SIGABRT before SIGKILL
	// (TimeoutAbortSec).
	AbortGrace = time.Second
	// DrainTime is the relays' --drain-time.
	DrainTime = 2 * time.Second
)

// RelayPort is the relays' fixed UDP port.
const RelayPort = 3545

// Binaries names our daemons' executables ("miredo-relay" → path).
type Binaries func(name string) string

// Fleet is the running fleet.
type Fleet struct {
	Lab    *lab.Lab
	Router *lab.BIRD
	Relays []*Relay
	// Servers are the two server pairs, by host (lab.Server, lab.Server2).
	Servers map[string]*lab.Process
	DNS     *lab.Process
	Clients []*Client
	Native  *lab.Host

	bins Binaries
	dir  string // control sockets
}

// Relay is one relay host: its BIRD and its relay daemon.
type Relay struct {
	Host     *lab.Host
	BIRD     *lab.BIRD
	Proc     *lab.Process
	Watchdog *lab.Watchdog
	// Socket is the relay's control socket.
	Socket string
	starts int
}

// Client is one Teredo client of the fleet.
type Client struct {
	Host *lab.Host
	Proc *lab.Process
	// Addr is its Teredo address when last waited for.
	Addr netip.Addr
}

// Start brings the fleet up in l, a lab built with Fleet set: BIRD on the
// router and both relay hosts, dnsmasq, both server pairs, both relays
// (announcing), and one client on each of clients, resolving the pool's
// name; it returns once the router routes over both relays and every
// client has its address.
func Start(ctx context.Context, l *lab.Lab, bins Binaries, clients ...string) (*Fleet, error) {
	dir, err := os.MkdirTemp("", "fleet-ctl-")
	if err != nil {
		return nil, err
	}
	f := &Fleet{Lab: l, bins: bins, dir: dir, Servers: map[string]*lab.Process{}, Native: l.Host(lab.Native)}
	if f.Router, err = l.StartRouterBIRD(ctx); err != nil {
		return f, err
	}
	if f.DNS, err = l.StartPoolDNS(ctx); err != nil {
		return f, err
	}
	for _, name := range []string{lab.Server, lab.Server2} {
		if err := f.StartServer(ctx, name); err != nil {
			return f, err
		}
	}
	for _, name := range []string{lab.Relay, lab.Relay2} {
		h := l.Host(name)
		r := &Relay{Host: h, Socket: filepath.Join(dir, name+".sock")}
		if r.BIRD, err = l.StartRelayBIRD(ctx, h); err != nil {
			return f, err
		}
		f.Relays = append(f.Relays, r)
		if err := f.StartRelay(ctx, r); err != nil {
			return f, err
		}
	}
	if err := f.WaitRelays(ctx, f.Relays...); err != nil {
		return f, err
	}
	for _, name := range clients {
		c := &Client{Host: l.Host(name)}
		f.Clients = append(f.Clients, c)
		if err := f.StartClient(ctx, c); err != nil {
			return f, err
		}
	}
	return f, nil
}

// Close removes the control sockets' directory; the lab stops the daemons.
func (f *Fleet) Close() { os.RemoveAll(f.dir) }

// StartServer runs our server pair on host name (lab.Server or lab.Server2).
func (f *Fleet) StartServer(ctx context.Context, name string) error {
	h := f.Lab.Host(name)
	p, err := f.Lab.Start(ctx, h, "server-"+name, f.bins("miredo-server"), "-c", "/dev/null",
		"--primary", h.IPv4().String(), "--control-socket", "")
	if err != nil {
		return err
	}
	if err := h.WaitUDP(ctx, 3544); err != nil {
		return fmt.Errorf("%w\n%s", err, p.Tail(10))
	}
	f.Servers[name] = p
	return nil
}

// StartRelay (re)starts our relay on r's host, announcing, under the
// watchdog, and waits for its announce interface: from then on BIRD
// announces it.
func (f *Fleet) StartRelay(ctx context.Context, r *Relay) error {
	r.starts++
	argv := []string{f.bins("miredo-relay"), "-c", "/dev/null", "--cone",
		"--bind-address", r.Host.IPv4().String(), "--bind-port", strconv.Itoa(RelayPort),
		"--announce-interface", anycast.AnnounceInterface, "--drain-time", DrainTime.String(),
		"--control-socket", r.Socket}
	p, w, err := f.Lab.StartWatched(ctx, r.Host, fmt.Sprintf("relay-%s-%d", r.Host.Name, r.starts), WatchdogInterval, AbortGrace, argv...)
	if err != nil {
		return err
	}
	r.Proc, r.Watchdog = p, w
	select {
	case <-w.Ready():
	case <-p.Done():
		return fmt.Errorf("%s exited: %v\n%s", p.Name, p.Err(), p.Tail(10))
	case <-ctx.Done():
		return fmt.Errorf("%s: not ready: %w\n%s", p.Name, ctx.Err(), p.Tail(10))
	}
	return r.Host.WaitLink(ctx, anycast.AnnounceInterface)
}

// WaitRelays waits until the router routes 2001::/32 over exactly these
// relays.
func (f *Fleet) WaitRelays(ctx context.Context, relays ...*Relay) error {
	var hops []netip.Addr
	for _, r := range relays {
		hops = append(hops, r.Host.IPv6())
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f.Lab.Host(lab.Router).WaitTeredoNextHops(ctx, hops...); err != nil {
		return err
	}
	// BFD comes up after BGP: until it does, a dead host is found by
	// the hold timer only.
	for {
		up, err := f.Router.BFDUp(ctx)
		if err != nil {
			return err
		}
		if up >= len(relays) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d BFD sessions up on the router, want %d: %w", up, len(relays), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartClient runs our client on c's host with the pool's name as its
// server, resolving through the lab's dnsmasq, and waits for its address.
func (f *Fleet) StartClient(ctx context.Context, c *Client) error {
	argv, err := f.Lab.Resolving(f.Lab.Host(lab.DNS).IPv4(), f.bins("miredo-client"), "-c", "/dev/null",
		"--server", anycast.PoolName, "--control-socket", "")
	if err != nil {
		return err
	}
	if c.Proc, err = f.Lab.Start(ctx, c.Host, "client-"+c.Host.Name, argv...); err != nil {
		return err
	}
	return c.WaitAddr(ctx)
}

// WaitAddr waits for the client's Teredo address and records it.
func (c *Client) WaitAddr(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	a, err := c.Host.WaitAddr(ctx, "teredo", netip.MustParsePrefix("2001::/32"))
	if err != nil {
		return fmt.Errorf("%w\n%s", err, c.Proc.Tail(20))
	}
	c.Addr = a
	return nil
}

// Server is the server pair whose primary address the client's address
// names (RFC 4380 §4: bits 32-63).
func (c *Client) Server() netip.Addr {
	b := c.Addr.As16()
	return netip.AddrFrom4([4]byte(b[4:8]))
}

// Packets counts the packets a relay has handled both ways (tunnel and
// socket), from its control socket; a relay that does not answer counts
// nothing.
func (r *Relay) Packets(ctx context.Context) uint64 {
	raw, err := control.Query(ctx, r.Socket, control.Request{Command: control.CommandStatus})
	if err != nil {
		return 0
	}
	var rep struct {
		Counters struct {
			Engine map[string]uint64 `json:"engine"`
		} `json:"counters"`
	}
	if json.Unmarshal(raw, &rep) != nil {
		return 0
	}
	return rep.Counters.Engine["from_tunnel"] + rep.Counters.Engine["from_udp"]
}

// Carrier is the relay that carries the traffic between the native host
// and c: the router's multipath choice for the native host's packets to
// c, once c follows it too (a client answers through the relay the native
// host's packets come from, after a connectivity test). It is the only
// relay whose packet count grows while pings go both ways, twice in a
// row. (The router's own answer, ip route get, does not always agree with
// its forwarding.)
func (f *Fleet) Carrier(ctx context.Context, c *Client) (*Relay, error) {
	var last *Relay
	for range 20 {
		grew, err := f.carriers(ctx, func() error { return f.Warm(ctx, c) })
		if err != nil {
			return nil, err
		}
		if len(grew) == 1 && grew[0] == last {
			return last, nil
		}
		last = nil
		if len(grew) == 1 {
			last = grew[0]
		}
	}
	return nil, fmt.Errorf("the traffic with %s does not settle on one relay", c.Host.Name)
}

// carriers lists the relays whose packet count grows while traffic runs.
func (f *Fleet) carriers(ctx context.Context, traffic func() error) ([]*Relay, error) {
	before := make([]uint64, len(f.Relays))
	for i, r := range f.Relays {
		before[i] = r.Packets(ctx)
	}
	if err := traffic(); err != nil {
		return nil, err
	}
	var grew []*Relay
	for i, r := range f.Relays {
		if r.Packets(ctx) > before[i] {
			grew = append(grew, r)
		}
	}
	return grew, nil
}

// FlowRelay is the relay the router sends one echo request from the
// native host's address src to c through, and c's reply comes back by:
// the relays whose count grows (one, once c follows the router's choice
// for that flow).
func (f *Fleet) FlowRelay(ctx context.Context, src netip.Addr, c *Client) ([]*Relay, error) {
	return f.carriers(ctx, func() error { return pingFrom(ctx, f.Native, src, c.Addr) })
}

// Warm pings each way between the native host's first address and c
// until both answer.
func (f *Fleet) Warm(ctx context.Context, c *Client) error {
	if err := pingFrom(ctx, f.Native, f.Native.IPv6(), c.Addr); err != nil {
		return fmt.Errorf("native to %s: %w", c.Host.Name, err)
	}
	if err := pingFrom(ctx, c.Host, c.Addr, f.Native.IPv6()); err != nil {
		return fmt.Errorf("%s to native: %w", c.Host.Name, err)
	}
	return nil
}

// pingFrom sends one echo request from src to dst at a time with ping(8)
// in h, each waiting a second for its reply, until one is answered (at
// most 30 s): Host.Ping, from a given address (the native host has many,
// and each is a flow of its own for the router).
func pingFrom(ctx context.Context, h *lab.Host, src, dst netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		out, err := h.Run(ctx, "ping", "-n", "-q", "-c", "1", "-W", "1", "-I", src.String(), dst.String())
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: ping %s from %s: %w (%s)", h.Name, dst, src, ctx.Err(), strings.TrimSpace(string(out)))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Other is the relay that is not r.
func (f *Fleet) Other(r *Relay) *Relay {
	for _, o := range f.Relays {
		if o != r {
			return o
		}
	}
	return nil
}

// Both pings each way between the native host's first address and c
// every interval, from now until Stop: one conversation, as a TCP
// connection's packets both ways are.
type Both struct {
	Down, Up *Pinger // native → client, client → native
}

// PingBoth starts pinging both ways.
func (f *Fleet) PingBoth(c *Client, interval time.Duration) (*Both, error) {
	down, err := StartPing(f.Native, f.Native.IPv6(), c.Addr, interval)
	if err != nil {
		return nil, err
	}
	up, err := StartPing(c.Host, c.Addr, f.Native.IPv6(), interval)
	if err != nil {
		down.Stop()
		return nil, err
	}
	return &Both{Down: down, Up: up}, nil
}

// Stop ends both and returns what they saw.
func (b *Both) Stop() (down, up Series) { return b.Down.Stop(), b.Up.Stop() }

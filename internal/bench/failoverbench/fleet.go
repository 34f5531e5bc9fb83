// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/miredo-go/miredo/internal/failover"
	"github.com/miredo-go/miredo/internal/lab"
)

// fleetBench is the fleet lab and what the cases share.
type fleetBench struct {
	opt options
	l   *lab.Lab
	f   *failover.Fleet
}

// relayEvent is what a case does to the relay carrying the traffic.
type relayEvent struct {
	name string
	sig  syscall.Signal
	// down and up say which ways to ping.
	down, up bool
	// idle: the event comes before the pings start (and they go on until
	// answered, for up to idleWait).
	idle bool
	// host: the signal goes to the relay host's BIRD too, as when the
	// whole host freezes (and BIRD gets SIGCONT after the measurement).
	host bool
	tcp  bool
}

// idleWait bounds how long an idle case waits for traffic to flow: past
// the 30 s a client trusts a silent peer.
const idleWait = 40 * time.Second

func runFleet(ctx context.Context, opt options, bins failover.Binaries) ([]row, error) {
	return withLab(ctx, lab.Options{Prefix: "failbench", Fleet: true, NAT1: lab.PortRestricted, NAT2: lab.PortRestricted, Logger: opt.log},
		func(l *lab.Lab) ([]row, error) { return fleetCases(ctx, opt, bins, l) })
}

func fleetCases(ctx context.Context, opt options, bins failover.Binaries, l *lab.Lab) (rows []row, err error) {
	f, err := failover.Start(ctx, l, bins, lab.Client1, lab.Client2, lab.Client3, lab.Pub)
	if f != nil {
		defer f.Close()
	}
	if err != nil {
		return nil, err
	}
	b := &fleetBench{opt: opt, l: l, f: f}
	events := []relayEvent{
		{name: "kill", sig: syscall.SIGKILL, down: true, up: true, tcp: true},
		{name: "hang", sig: syscall.SIGSTOP, down: true, up: true, tcp: true},
		{name: "drain", sig: syscall.SIGTERM, down: true, up: true, tcp: true},
		{name: "kill-up", sig: syscall.SIGKILL, up: true, idle: true},
		{name: "kill-down", sig: syscall.SIGKILL, down: true},
		{name: "host-hang", sig: syscall.SIGSTOP, down: true, up: true, host: true},
	}
	labels := map[string]string{
		"kill": "relay killed (SIGKILL)", "hang": "relay hung (SIGSTOP)", "drain": "relay drained (SIGTERM)",
		"kill-up":   "relay killed while idle, then the client pings alone",
		"host-hang": "relay host frozen (relay and BIRD stopped): BFD", "kill-down": "relay killed, native host pinging alone",
	}
	for _, ev := range events {
		if !opt.has(ev.name) {
			continue
		}
		r := row{name: labels[ev.name]}
		for range opt.rounds {
			m, err := b.relayCase(ctx, ev)
			if err != nil {
				return append(rows, r), fmt.Errorf("%s: %w", ev.name, err)
			}
			r.runs = append(r.runs, m)
		}
		rows = append(rows, r)
	}
	if opt.has("restart") {
		r := row{name: "relay restarted (rejoins)"}
		for range opt.rounds {
			m, err := b.restartCase(ctx)
			if err != nil {
				return append(rows, r), fmt.Errorf("restart: %w", err)
			}
			r.runs = append(r.runs, m)
		}
		rows = append(rows, r)
	}
	if opt.has("server") {
		m, err := b.serverCase(ctx)
		rows = append(rows, row{name: "server pair killed", runs: []measure{m}})
		if err != nil {
			return rows, fmt.Errorf("server: %w", err)
		}
	}
	return rows, nil
}

// ready restarts the relays that are not running and waits until the
// router routes over both.
func (b *fleetBench) ready(ctx context.Context) error {
	for _, r := range b.f.Relays {
		select {
		case <-r.Proc.Done():
			if err := b.f.StartRelay(ctx, r); err != nil {
				return err
			}
		default:
		}
	}
	return b.f.WaitRelays(ctx, b.f.Relays...)
}

// relayCase does ev to the relay carrying client1 while pinging, then,
// if asked, again under TCP each way.
func (b *fleetBench) relayCase(ctx context.Context, ev relayEvent) (measure, error) {
	m := newMeasure()
	c := b.f.Clients[0]
	if err := b.ready(ctx); err != nil {
		return m, err
	}
	carrier, err := b.f.Carrier(ctx, c)
	if err != nil {
		return m, err
	}
	signal := func() error {
		if ev.host {
			if err := syscall.Kill(carrier.BIRD.Pid(), ev.sig); err != nil {
				return err
			}
		}
		return syscall.Kill(carrier.Proc.Pid(), ev.sig)
	}
	if ev.host {
		defer syscall.Kill(carrier.BIRD.Pid(), syscall.SIGCONT)
	}
	at := time.Now()
	if ev.idle {
		if err := signal(); err != nil {
			return m, err
		}
		if err := b.f.WaitRelays(ctx, b.f.Other(carrier)); err != nil {
			return m, err
		}
		m.route = time.Since(at)
	}
	var down, up *failover.Pinger
	if ev.down {
		if down, err = failover.StartPing(b.f.Native, b.f.Native.IPv6(), c.Addr, b.opt.interval); err != nil {
			return m, err
		}
	}
	if ev.up {
		if up, err = failover.StartPing(c.Host, c.Addr, b.f.Native.IPv6(), b.opt.interval); err != nil {
			return m, err
		}
	}
	if ev.idle {
		started := time.Now()
		for (up != nil && up.LastReply().Before(started)) || (down != nil && down.LastReply().Before(started)) {
			if time.Since(started) > idleWait {
				m.note = fmt.Sprintf("no reply within %v", idleWait)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	} else {
		time.Sleep(500 * time.Millisecond) // the path before the event
		at = time.Now()
		if err := signal(); err != nil {
			return m, err
		}
		if err := b.f.WaitRelays(ctx, b.f.Other(carrier)); err != nil {
			return m, err
		}
		m.route = time.Since(at)
	}
	time.Sleep(b.opt.after)
	if down != nil {
		s := down.Stop()
		m.down = &s
	}
	if up != nil {
		s := up.Stop()
		m.up = &s
	}
	if ev.sig == syscall.SIGSTOP {
		<-carrier.Proc.Done()
		m.note = fmt.Sprintf("watchdog fired %v after the stop", carrier.Watchdog.FiredAt().Sub(at).Round(100*time.Millisecond))
	}
	if ev.sig == syscall.SIGTERM {
		<-carrier.Proc.Done()
	}
	if !ev.tcp || !b.opt.iperf {
		return m, nil
	}
	for _, dir := range []bool{true, false} {
		if err := b.ready(ctx); err != nil {
			return m, err
		}
		if carrier, err = b.f.Carrier(ctx, c); err != nil {
			return m, err
		}
		length := 2*time.Second + b.opt.after + time.Second
		stall, back, err := tcpThrough(ctx, b.l, b.f.Native, c.Host, dir, 2*time.Second, length, func() {
			_ = syscall.Kill(carrier.Proc.Pid(), ev.sig)
		})
		if err != nil {
			return m, err
		}
		<-carrier.Proc.Done()
		way := "client→native"
		if dir {
			m.tcpDown, way = stall, "native→client"
		} else {
			m.tcpUp = stall
		}
		if !back {
			m.note = joinNote(m.note, fmt.Sprintf("TCP %s not back by the end of its %v run", way, length))
		}
	}
	return m, nil
}

// restartCase kills one relay, lets the traffic settle on the other, then
// starts it again while client1 pings both ways: the router takes it back
// and the flows the hash gives it move back. It also counts how the flows
// from every native address to every client spread.
func (b *fleetBench) restartCase(ctx context.Context) (measure, error) {
	m := newMeasure()
	if err := b.ready(ctx); err != nil {
		return m, err
	}
	back := b.f.Relays[0]
	if err := syscall.Kill(back.Proc.Pid(), syscall.SIGKILL); err != nil {
		return m, err
	}
	<-back.Proc.Done()
	if err := b.f.WaitRelays(ctx, b.f.Other(back)); err != nil {
		return m, err
	}
	c := b.f.Clients[0]
	if err := b.f.Warm(ctx, c); err != nil {
		return m, err
	}
	pings, err := b.f.PingBoth(c, b.opt.interval)
	if err != nil {
		return m, err
	}
	time.Sleep(500 * time.Millisecond)
	at := time.Now()
	if err := b.f.StartRelay(ctx, back); err != nil {
		return m, err
	}
	if err := b.f.WaitRelays(ctx, b.f.Relays...); err != nil {
		return m, err
	}
	m.route = time.Since(at)
	time.Sleep(b.opt.after)
	down, up := pings.Stop()
	m.down, m.up = &down, &up
	spread, err := b.spread(ctx)
	if err != nil {
		return m, err
	}
	m.note = spread
	return m, nil
}

// spread sends one echo request from every native address to every
// client and counts the flows each relay carried (a flow whose relay
// changed, which a client then tests, counts for both).
func (b *fleetBench) spread(ctx context.Context) (string, error) {
	byRelay := map[*failover.Relay]int{}
	flows := 0
	for _, c := range b.f.Clients {
		for _, src := range b.f.Native.IPv6s() {
			relays, err := b.f.FlowRelay(ctx, src, c)
			if err != nil {
				return "", err
			}
			for _, r := range relays {
				byRelay[r]++
			}
			flows++
		}
	}
	var parts []string
	for _, r := range b.f.Relays {
		parts = append(parts, fmt.Sprintf("%s %d", r.Host.Name, byRelay[r]))
	}
	return fmt.Sprintf("flows (native address, client) carried: %s of %d", strings.Join(parts, ", "), flows), nil
}

// serverCase kills the server pair most clients use and follows its
// clients: the time until each has an address from the other pair, then
// until it answers a ping from the native host and reaches it.
func (b *fleetBench) serverCase(ctx context.Context) (measure, error) {
	m := newMeasure()
	if err := b.ready(ctx); err != nil {
		return m, err
	}
	perServer := map[netip.Addr][]*failover.Client{}
	for _, c := range b.f.Clients {
		if err := c.WaitAddr(ctx); err != nil {
			return m, err
		}
		perServer[c.Server()] = append(perServer[c.Server()], c)
	}
	victim := lab.Server
	if len(perServer[b.l.Host(lab.Server2).IPv4()]) > len(perServer[b.l.Host(lab.Server).IPv4()]) {
		victim = lab.Server2
	}
	vh := b.l.Host(victim)
	spread := fmt.Sprintf("clients per pair before: %s %d, %s %d", lab.Server, len(perServer[b.l.Host(lab.Server).IPv4()]),
		lab.Server2, len(perServer[b.l.Host(lab.Server2).IPv4()]))
	affected := perServer[vh.IPv4()]
	at := time.Now()
	if err := syscall.Kill(-b.f.Servers[victim].Pid(), syscall.SIGKILL); err != nil {
		return m, err
	}
	var worstAddr, worstReach, worstDetect, worstRequalify time.Duration
	for _, c := range affected {
		old := c.Addr
		deadline, cancel := context.WithTimeout(ctx, 3*time.Minute)
		for c.Addr == old || c.Server() == vh.IPv4() {
			if err := c.WaitAddr(deadline); err == nil && c.Addr != old {
				break
			}
			select {
			case <-deadline.Done():
				cancel()
				return m, fmt.Errorf("%s kept %s for 3 minutes", c.Host.Name, old)
			case <-time.After(100 * time.Millisecond):
			}
		}
		cancel()
		worstAddr = max(worstAddr, time.Since(at))
		// From the client's log: when it gave its server up, and when it
		// had an address from another.
		log := c.Proc.Tail(500)
		if lost, ok := logTime(log, "Lost Teredo connectivity", at); ok {
			worstDetect = max(worstDetect, lost.Sub(at))
			fresh, ok := logTime(log, "New Teredo address", lost)
			if !ok {
				fresh, ok = logTime(log, "mapping changed: new address", lost)
			}
			if ok {
				worstRequalify = max(worstRequalify, fresh.Sub(lost))
			}
		}
		if err := b.f.Warm(ctx, c); err != nil {
			return m, err
		}
		worstReach = max(worstReach, time.Since(at))
	}
	m.note = fmt.Sprintf("%s; %d client(s) moved (the slowest): server given up after %s (refresh interval 30 s), qualified with the other pair %s later, new address after %s, reached both ways after %s",
		spread, len(affected), fmtDur(worstDetect), fmtDur(worstRequalify), fmtDur(worstAddr), fmtDur(worstReach))
	return m, b.f.StartServer(ctx, victim)
}

// logTime finds the first line of a daemon's log (slog's text format)
// that contains msg and is stamped at or after t.
func logTime(log, msg string, t time.Time) (time.Time, bool) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		stamp, ok := strings.CutPrefix(strings.Fields(line)[0], "time=")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err == nil && !at.Before(t.Truncate(time.Millisecond)) {
			return at, true
		}
	}
	return time.Time{}, false
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

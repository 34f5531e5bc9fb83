// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/miredo-go/miredo/internal/failover"
	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
)

// restartAfter is when a killed relay of the static setup is started
// again: our unit's RestartSec.
const restartAfter = 5 * time.Second

// runStatic measures one relay with a static route, as Miredo is deployed:
// killed, then started again restartAfter later; Debian's Miredo and ours,
// with our server and client. There is no other relay to move to: the gap
// is the outage until the restart and the client's recovery after it.
func runStatic(ctx context.Context, opt options, bins failover.Binaries) ([]row, error) {
	if reason := refmiredo.Missing(); reason != "" {
		return nil, fmt.Errorf("miredo: %s", reason)
	}
	return withLab(ctx, lab.Options{Prefix: "failstat", NAT1: lab.PortRestricted, Logger: opt.log},
		func(l *lab.Lab) ([]row, error) { return staticCases(ctx, opt, bins, l) })
}

func staticCases(ctx context.Context, opt options, bins failover.Binaries, l *lab.Lab) (rows []row, err error) {
	server, relayHost, native := l.Host(lab.Server), l.Host(lab.Relay), l.Host(lab.Native)
	if _, err := l.Start(ctx, server, "server", bins("miredo-server"), "-c", "/dev/null", "--primary", server.IPv4().String(), "--control-socket", ""); err != nil {
		return nil, err
	}
	if err := server.WaitUDP(ctx, 3544); err != nil {
		return nil, err
	}
	c := &failover.Client{Host: l.Host(lab.Client1)}
	if c.Proc, err = l.Start(ctx, c.Host, "client", bins("miredo-client"), "-c", "/dev/null", "--server", server.IPv4().String(), "--control-socket", ""); err != nil {
		return nil, err
	}
	if err := c.WaitAddr(ctx); err != nil {
		return nil, err
	}
	starts := 0
	relays := []struct {
		name  string
		start func() (*lab.Process, error)
	}{
		{"Miredo relay, static route: killed, restarted 5 s later", func() (*lab.Process, error) {
			return refmiredo.StartRelay(ctx, l, relayHost)
		}},
		{"our relay, static route: killed, restarted 5 s later", func() (*lab.Process, error) {
			starts++
			p, err := l.Start(ctx, relayHost, "our-relay-"+strconv.Itoa(starts), bins("miredo-relay"), "-c", "/dev/null", "--cone",
				"--bind-address", relayHost.IPv4().String(), "--bind-port", strconv.Itoa(failover.RelayPort),
				"--control-socket", "", "-p", filepath.Join(l.LogDir, "our-relay.pid"))
			if err != nil {
				return nil, err
			}
			return p, relayHost.WaitLink(ctx, "teredo")
		}},
	}
	for _, rl := range relays {
		r := row{name: rl.name}
		for range opt.rounds {
			p, err := rl.start()
			if err != nil {
				return append(rows, r), err
			}
			m := newMeasure()
			warm := func() error {
				if err := native.Ping(ctx, c.Addr); err != nil {
					return err
				}
				return c.Host.Ping(ctx, native.IPv6())
			}
			if err := warm(); err != nil {
				return append(rows, r), err
			}
			down, err := failover.StartPing(native, native.IPv6(), c.Addr, opt.interval)
			if err != nil {
				return append(rows, r), err
			}
			up, err := failover.StartPing(c.Host, c.Addr, native.IPv6(), opt.interval)
			if err != nil {
				return append(rows, r), err
			}
			time.Sleep(500 * time.Millisecond)
			_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
			<-p.Done()
			time.Sleep(restartAfter)
			p, err = rl.start()
			if err != nil {
				return append(rows, r), err
			}
			// Until both ways answer again (at most a minute), then the
			// usual measuring time.
			back := time.Now()
			deadline := time.Now().Add(time.Minute)
			for (down.LastReply().Before(back) || up.LastReply().Before(back)) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if down.LastReply().Before(back) || up.LastReply().Before(back) {
				m.note = "not back within a minute of the restart"
			}
			time.Sleep(opt.after)
			sd, su := down.Stop(), up.Stop()
			m.down, m.up = &sd, &su
			r.runs = append(r.runs, m)
			_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
			<-p.Done()
		}
		rows = append(rows, r)
	}
	return rows, nil
}

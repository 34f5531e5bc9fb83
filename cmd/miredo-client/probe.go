// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/client/probe"
	"github.com/miredo-go/miredo/pkg/daemon"
)

// probeCommand is `miredo-client probe [--json] SERVER...`: which Teredo
// servers work from here, and what the NAT in front does (package probe).
// It needs no privilege and touches no interface.
func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "ask Teredo servers what a client would get from them, and what the NAT does (no root needed)",
		ArgsUsage: "SERVER...",
		Description: "Solicits each server (a host name or IPv4 address) from a plain UDP socket, as a client\n" +
			"qualifying and probing its NAT would, all servers at once; prints per server whether it works,\n" +
			"each exchange with its round trip, the mapped address, the Teredo address and the NAT type\n" +
			"with its evidence. Exit status 0 when at least one server works, 1 when none does.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
			&cli.DurationFlag{Name: "timeout", Value: probe.DefaultTimeout, Usage: "how long to wait for each answer (and for each name lookup)"},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return &daemon.UsageError{Err: err} },
		Action:       runProbe,
	}
}

func runProbe(c *cli.Context) error {
	if c.NArg() == 0 {
		return daemon.Usagef("probe: name at least one Teredo server")
	}
	timeout := c.Duration("timeout")
	if timeout < 10*time.Millisecond || timeout > time.Minute {
		return daemon.Usagef("probe: --timeout %v: want 10ms to 1m", timeout)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := probe.NewReport(probe.All(ctx, c.Args().Slice(), probe.Config{Timeout: timeout}))
	write := r.WriteText
	if c.Bool("json") {
		write = r.WriteJSON
	}
	if err := write(c.App.Writer); err != nil {
		return err
	}
	if r.Working == 0 {
		return errors.New("probe: no server works")
	}
	return nil
}

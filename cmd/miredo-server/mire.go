// SPDX-License-Identifier: MIT

package main

import (
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/mire"
	"github.com/miredo-go/miredo/pkg/daemon"
)

// mireCommand is `miredo-server mire ADDRESS`: the stateless test responder
// of package mire (Debian's teredo-mire). It lives in the server's binary
// because it needs what a server host has (a public IPv4 address, UDP 3544)
// and nothing a client or relay carries; it shares no code with the server
// role.
func mireCommand() *cli.Command {
	logLevel := *daemon.LogLevelFlag // a flag value belongs to one flag set
	return &cli.Command{
		Name:      "mire",
		Usage:     "run a stateless Teredo test responder (Debian's teredo-mire) on ADDRESS",
		ArgsUsage: "ADDRESS",
		Description: "Answers ICMPv6 echo requests sent over Teredo to the address whose server and mapping\n" +
			"are ADDRESS, with mapped port 3545, and the bubbles that precede them (UDP 3544 and 3545).\n" +
			"Needs no privilege; started as root, it runs as --user once its sockets are open.",
		Flags: []cli.Flag{
			&cli.UintFlag{Name: "reply-rate", Value: mire.DefaultRateLimit, Usage: "most replies sent per second, all askers together"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as when started as root"},
			&logLevel,
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return &daemon.UsageError{Err: err} },
		Action:       runMire,
	}
}

// mireConfig reads the command line of `mire`.
func mireConfig(c *cli.Context) (mire.Config, error) {
	if c.NArg() != 1 {
		if c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-") {
			return mire.Config{}, daemon.Usagef("mire: options go before the address (%s)", c.Args().Get(1))
		}
		return mire.Config{}, daemon.Usagef("mire: give the responder's public IPv4 address, and nothing else")
	}
	addr, err := netip.ParseAddr(c.Args().First())
	if err != nil {
		return mire.Config{}, daemon.Usagef("mire: address: %w", err)
	}
	cfg, err := mire.Config{Addr: addr, RateLimit: uint32(min(c.Uint("reply-rate"), 1<<31)), User: c.String("user")}.Check()
	if err != nil {
		return cfg, daemon.Usagef("mire: %w", err)
	}
	return cfg, nil
}

func runMire(c *cli.Context) error {
	level, err := daemon.ParseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	cfg, err := mireConfig(c)
	if err != nil {
		return err
	}
	// Nothing to reload: a hang-up must not stop it.
	signal.Ignore(syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return mire.Run(ctx, cfg, daemon.NewLogger(os.Stderr, c.App.Name, level).With("command", "mire"))
}

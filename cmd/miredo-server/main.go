// Command miredo-server is a Teredo server (RFC 4380 §5.3): it answers router
// solicitations on two consecutive IPv4 addresses and forwards bubbles.
package main

import (
	"context"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/server"
	"github.com/miredo-go/miredo/pkg/daemon"
)

func main() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "primary", Usage: "primary server IPv4 address (ServerBindAddress)"},
		&cli.StringFlag{Name: "secondary", Usage: "secondary server IPv4 address (default: primary+1)"},
		&cli.StringFlag{Name: "prefix", Value: "2001:0::", Usage: "Teredo prefix to advertise"},
		&cli.IntFlag{Name: "mtu", Value: 1280, Usage: "MTU to advertise (at least 1280)"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "/etc/miredo/miredo-server.conf", Usage: "Miredo server configuration file, used when present"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as"},
		&cli.StringFlag{Name: "chroot", Aliases: []string{"t"}, Usage: "directory to chroot into after start"},
		&cli.StringFlag{Name: "pidfile", Aliases: []string{"p"}, Usage: "pid file to write"},
		daemon.LogLevelFlag,
	}
	app := daemon.NewApp("miredo-server", "Teredo server (RFC 4380)",
		"Answers Teredo router solicitations on the primary and secondary addresses (UDP 3544).",
		true, flags, run)
	os.Exit(daemon.Main(app, os.Args, os.Stderr))
}

func run(c *cli.Context) error {
	level, err := daemon.ParseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	log := daemon.NewLogger(os.Stderr, c.App.Name, level)
	var cfg server.Config
	if s := c.String("primary"); s != "" {
		if cfg.Primary, err = netip.ParseAddr(s); err != nil {
			return daemon.Usagef("--primary: %w", err)
		}
	}
	if s := c.String("secondary"); s != "" {
		if cfg.Secondary, err = netip.ParseAddr(s); err != nil {
			return daemon.Usagef("--secondary: %w", err)
		}
	}
	if cfg.Prefix, err = netip.ParseAddr(c.String("prefix")); err != nil {
		return daemon.Usagef("--prefix: %w", err)
	}
	cfg.MTU = c.Int("mtu")
	cfg.User, cfg.Chroot, cfg.PIDFile = c.String("user"), c.String("chroot"), c.String("pidfile")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg, log)
}

// Command miredo-relay is a Teredo relay (RFC 4380 §5.4): a router between
// native IPv6 and Teredo clients.
package main

import (
	"context"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/relay"
	"github.com/miredo-go/miredo/pkg/daemon"
)

func main() {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "cone", Usage: "cone relay: indirect bubbles only (default)"},
		&cli.BoolFlag{Name: "restricted", Usage: "restricted relay: also send direct bubbles (relay behind a NAT)"},
		&cli.StringFlag{Name: "prefix", Value: "2001:0::", Usage: "Teredo prefix to serve"},
		&cli.StringFlag{Name: "interface", Value: "teredo", Usage: "tunnel interface name"},
		&cli.IntFlag{Name: "mtu", Value: 1280, Usage: "tunnel MTU"},
		&cli.StringFlag{Name: "bind-address", Usage: "local IPv4 address for the UDP socket"},
		&cli.UintFlag{Name: "bind-port", Usage: "local UDP port (default: ephemeral)"},
		&cli.IntFlag{Name: "max-peers", Value: 1 << 20, Usage: "most peers remembered at once"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "/etc/miredo/miredo.conf", Usage: "Miredo configuration file, used when present"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as"},
		&cli.StringFlag{Name: "chroot", Aliases: []string{"t"}, Usage: "directory to chroot into after start"},
		&cli.StringFlag{Name: "pidfile", Aliases: []string{"p"}, Usage: "pid file to write"},
		daemon.LogLevelFlag,
	}
	app := daemon.NewApp("miredo-relay", "Teredo relay (RFC 4380)",
		"Routes the Teredo prefix between native IPv6 and Teredo clients over UDP.",
		false, flags, run)
	os.Exit(daemon.Main(app, os.Args, os.Stderr))
}

func run(c *cli.Context) error {
	level, err := daemon.ParseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	log := daemon.NewLogger(os.Stderr, c.App.Name, level)
	if c.Bool("cone") && c.Bool("restricted") {
		return daemon.Usagef("--cone and --restricted exclude each other")
	}
	cfg := relay.Config{
		Restricted: c.Bool("restricted"),
		Interface:  c.String("interface"),
		MTU:        c.Int("mtu"),
		MaxPeers:   c.Int("max-peers"),
		User:       c.String("user"),
		Chroot:     c.String("chroot"),
		PIDFile:    c.String("pidfile"),
	}
	if cfg.Prefix, err = netip.ParseAddr(c.String("prefix")); err != nil {
		return daemon.Usagef("--prefix: %w", err)
	}
	if s := c.String("bind-address"); s != "" {
		if cfg.BindAddress, err = netip.ParseAddr(s); err != nil {
			return daemon.Usagef("--bind-address: %w", err)
		}
	}
	if p := c.Uint("bind-port"); p > 65535 {
		return daemon.Usagef("--bind-port %d: out of range", p)
	} else {
		cfg.BindPort = uint16(p)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return relay.Run(ctx, cfg, log)
}

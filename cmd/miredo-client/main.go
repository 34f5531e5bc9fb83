// Command miredo-client is a Teredo client (RFC 4380 §5.2): behind a NAT it
// qualifies with a Teredo server and brings up IPv6 on a tunnel interface.
package main

import (
	"context"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/client"
	"github.com/miredo-go/miredo/pkg/daemon"
)

func main() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "server", Usage: "Teredo server host name or IPv4 address (ServerAddress)"},
		&cli.StringFlag{Name: "server2", Usage: "secondary server address (default: primary+1)"},
		&cli.StringFlag{Name: "interface", Value: "teredo", Usage: "tunnel interface name"},
		&cli.StringFlag{Name: "bind-address", Usage: "local IPv4 address for the UDP socket"},
		&cli.UintFlag{Name: "bind-port", Usage: "local UDP port (default: ephemeral)"},
		&cli.StringFlag{Name: "hook", Usage: "script run on each state change, with Miredo's client-hook environment"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "/etc/miredo/miredo.conf", Usage: "Miredo configuration file, used when present"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as"},
		&cli.StringFlag{Name: "chroot", Aliases: []string{"t"}, Usage: "directory to chroot into after start"},
		&cli.StringFlag{Name: "pidfile", Aliases: []string{"p"}, Usage: "pid file to write"},
		daemon.LogLevelFlag,
	}
	app := daemon.NewApp("miredo-client", "Teredo client (RFC 4380)",
		"Qualifies with a Teredo server and configures a Teredo IPv6 address on a tunnel interface.",
		true, flags, run)
	os.Exit(daemon.Main(app, os.Args, os.Stderr))
}

func run(c *cli.Context) error {
	level, err := daemon.ParseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	log := daemon.NewLogger(os.Stderr, c.App.Name, level)
	cfg := client.Config{
		Server:    c.String("server"),
		Server2:   c.String("server2"),
		Interface: c.String("interface"),
		Hook:      c.String("hook"),
		User:      c.String("user"),
		Chroot:    c.String("chroot"),
		PIDFile:   c.String("pidfile"),
	}
	if c.NArg() == 1 { // Miredo takes the server name as its one argument.
		cfg.Server = c.Args().First()
	} else if c.NArg() > 1 {
		return daemon.Usagef("at most one server name may be given")
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
	return client.Run(ctx, cfg, log)
}

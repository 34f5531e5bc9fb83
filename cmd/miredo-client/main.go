// SPDX-License-Identifier: MIT

// Command miredo-client is a Teredo client (RFC 4380 §5.2): behind a NAT it
// qualifies with a Teredo server and brings up IPv6 on a tunnel interface.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/client"
	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/netcfg/tundev"
)

func main() {
	os.Exit(daemon.Main(newApp(), os.Args, os.Stderr))
}

func newApp() *cli.App { return appWith(run) }

// appWith is the client's command line with action to run: run, or a test's.
func appWith(action cli.ActionFunc) *cli.App {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "server", Usage: "Teredo server host name or IPv4 address (ServerAddress)"},
		&cli.StringFlag{Name: "server2", Usage: "secondary server address (ServerAddress2; default: primary+1)"},
		&cli.StringFlag{Name: "interface", Value: "teredo", Usage: "tunnel interface name (InterfaceName)"},
		&cli.StringFlag{Name: "bind-address", Usage: "local IPv4 address for the UDP socket (BindAddress)"},
		&cli.UintFlag{Name: "bind-port", Usage: "local UDP port (BindPort; default: ephemeral)"},
		&cli.StringFlag{Name: "hook", Usage: "script run on each state change, with Miredo's client-hook environment"},
		&cli.DurationFlag{Name: "refresh-interval", Value: client.DefaultTiming().Refresh, Usage: "Teredo refresh interval; each wait is a random 75-100 % of it"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "/etc/miredo/miredo.conf", Usage: "Miredo configuration file, used when present"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as"},
		&cli.StringFlag{Name: "chroot", Aliases: []string{"t"}, Usage: "directory to chroot into after start"},
		&cli.StringFlag{Name: "pidfile", Aliases: []string{"p"}, Usage: "pid file to write"},
		&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "accepted for Miredo compatibility; the client always runs in the foreground"},
		&cli.BoolFlag{Name: "syslog", Usage: "also log to syslog (on when the configuration sets SyslogFacility)"},
		daemon.LogLevelFlag,
		daemon.CheckConfigFlag,
		daemon.ControlSocketFlag("client"),
		daemon.MetricsListenFlag,
		&cli.BoolFlag{Name: client.HelperFlag, Hidden: true},
		&cli.StringFlag{Name: "tun-backend", Value: string(tundev.DefaultBackend), Usage: "how to drive the tunnel: offload (TSO/GRO-like offloads), batch (no offloads) or water (one packet per call; kill switch)"},
		&cli.BoolFlag{Name: "no-gso", Usage: "send one datagram per segment instead of UDP GSO runs (kill switch)"},
		&cli.BoolFlag{Name: "no-gro", Usage: "do not ask the kernel to coalesce received datagrams (UDP GRO; kill switch)"},
		&cli.BoolFlag{Name: "no-upnp", Usage: "take no UPnP port mapping on the local gateway (RFC 6081 UPnP extension)"},
	}
	app := daemon.NewApp("miredo-client", "Teredo client (RFC 4380)",
		"Qualifies with a Teredo server and configures a Teredo IPv6 address on a tunnel interface;\n"+
			"reads Miredo's miredo.conf (client mode). An optional argument names the server, as in Miredo.",
		true, flags, action)
	app.Commands = []*cli.Command{daemon.StatusCommand[client.StatusReport]("client", true), probeCommand()}
	app.UsageText = "miredo-client [options] [server]\n" +
		"miredo-client status [--json] [--peers]   (the running client's state)\n" +
		"miredo-client probe [--json] [--timeout d] SERVER...   (which servers work, what the NAT does; no root)"
	return app
}

// settings is the merged configuration and what the merge noticed.
type settings struct {
	cfg   client.Config
	level slog.Level
	daemon.Loaded
}

// configure reads the configuration file and merges the command line over
// it: a flag given wins over the file, the file over the flag's default.
func configure(c *cli.Context) (settings, error) {
	var (
		s   settings
		bad daemon.Problems
	)
	if c.NArg() > 1 {
		bad.Add(errors.New("at most one server name may be given"))
	}
	ld, err := daemon.Load(c, conf.ClientSchema)
	if err != nil {
		bad.Add(err)
		return s, bad.Err()
	}
	s.Loaded = ld
	file, m := ld.File, ld.Merge
	if s.level, err = ld.LogLevel(c); err != nil {
		bad.Add(err)
	}
	if file.RelayType != conf.ModeClient {
		bad.Add(file.ErrorAt(conf.RelayType,
			errors.New("this is a relay configuration: run miredo-relay for it; miredo-client takes client or autoclient")))
	}
	cfg := client.Config{
		Server:             file.ServerAddress,
		Server2:            file.ServerAddress2,
		Interface:          c.String("interface"),
		BindAddress:        file.BindAddress,
		BindPort:           file.BindPort,
		Hook:               c.String("hook"),
		User:               c.String("user"),
		Chroot:             c.String("chroot"),
		PIDFile:            c.String("pidfile"),
		ControlSocket:      c.String("control-socket"),
		ControlSocketNamed: c.IsSet("control-socket"),
		MetricsListen:      c.String("metrics-listen"),
		Refresh:            c.Duration("refresh-interval"),
		FixedRefresh:       c.IsSet("refresh-interval"),
		LogLevel:           strings.ToLower(s.level.String()),
		TunBackend:         tundev.Backend(c.String("tun-backend")),
		NoGSO:              c.Bool("no-gso"),
		NoGRO:              c.Bool("no-gro"),
		NoUPnP:             c.Bool("no-upnp"),
	}
	if file.IsSet(conf.InterfaceName) && !c.IsSet("interface") {
		cfg.Interface = file.InterfaceName
	}
	m.Given("interface", conf.InterfaceName, cfg.Interface)
	// As in Miredo, a server named on the command line replaces the file's;
	// the file's secondary address then no longer applies.
	server := c.String("server")
	switch {
	case c.NArg() == 1 && server != "":
		bad.Add(errors.New("give the server either as an argument or with --server, not both"))
	case c.NArg() == 1:
		server = c.Args().First()
		m.Replaced(conf.ServerAddress, "the server argument", server, server)
		m.Replaced(conf.ServerAddress2, "the server argument", server, "")
	case m.Given("server", conf.ServerAddress, server):
		m.Replaced(conf.ServerAddress2, "--server", server, "")
	}
	if server != "" {
		cfg.Server, cfg.Server2 = server, ""
	} else {
		for _, d := range []conf.Directive{conf.ServerAddress, conf.ServerAddress2} {
			if v := file.Raw(d); file.IsSet(d) && v != "" {
				if err := client.CheckServerName(v); err != nil {
					bad.Add(file.ErrorAt(d, err))
				}
			}
		}
	}
	if c.IsSet("server2") {
		cfg.Server2 = c.String("server2")
		m.Given("server2", conf.ServerAddress2, cfg.Server2)
	}
	m.Bind(&cfg.BindAddress, &cfg.BindPort, &bad)
	if len(bad) == 0 {
		if s.cfg, err = cfg.Check(); errors.Is(err, client.ErrNoServer) && file.Name != "" {
			err = fmt.Errorf("%s: ServerAddress not set and no server given: %w", file.Name, err)
		}
		bad.Add(err)
	}
	return s, bad.Err()
}

func run(c *cli.Context) error {
	if c.Bool(client.HelperFlag) {
		level, err := daemon.ParseLogLevel(c.String("log-level"))
		if err != nil {
			return err
		}
		log := daemon.NewLogger(os.Stderr, c.App.Name, level).With("process", "helper")
		return client.RunHelper(client.HelperConfig{
			Interface: c.String("interface"), Hook: c.String("hook"), User: c.String("user"),
		}, log)
	}
	// SIGHUP (a reload, Debian's if-up hook) must not kill the daemon
	// while it starts; once it runs, it reloads the configuration.
	hup, stopHup := daemon.CatchHangup()
	defer stopHup()
	s, err := configure(c)
	if c.Bool(daemon.CheckConfigFlag.Name) {
		return daemon.ReportCheck(c, s.Loaded, err)
	}
	if err != nil {
		return err
	}
	var level slog.LevelVar
	level.Set(s.level)
	log, closeLog, err := s.OpenLog(c, &level)
	if err != nil {
		return err
	}
	defer closeLog()

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP also means "the network changed" (Debian's if-up hook): a file
	// that cannot be read again still makes the client qualify again, with
	// the configuration it runs.
	last := s.cfg
	reloads := daemon.Reloads(ctx, hup, log, func() (client.Config, error) {
		s, err := configure(c)
		if err != nil {
			log.Error("SIGHUP: configuration not reloaded; the running one stays", "err", err)
			return last, nil
		}
		level.Set(s.level)
		last = s.cfg
		return s.cfg, nil
	})
	return client.Run(ctx, s.cfg, log, reloads)
}

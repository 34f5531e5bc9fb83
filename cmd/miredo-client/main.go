// SPDX-License-Identifier: MIT

// Command miredo-client is a Teredo client (RFC 4380 §5.2): behind a NAT it
// qualifies with a Teredo server and brings up IPv6 on a tunnel interface.
package main

import (
	"errors"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/client"
	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/netcfg"
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
		&cli.BoolFlag{Name: client.HelperFlag, Hidden: true},
		&cli.StringFlag{Name: "tun-backend", Value: string(netcfg.DefaultBackend), Usage: "how to drive the tunnel: offload (TSO/GRO-like offloads), batch (no offloads) or water (one packet per call; kill switch)"},
		&cli.BoolFlag{Name: "no-gso", Usage: "send one datagram per segment instead of UDP GSO runs (kill switch)"},
		&cli.BoolFlag{Name: "no-gro", Usage: "do not ask the kernel to coalesce received datagrams (UDP GRO; kill switch)"},
		&cli.BoolFlag{Name: "no-upnp", Usage: "take no UPnP port mapping on the local gateway (RFC 6081 UPnP extension)"},
	}
	return daemon.NewApp("miredo-client", "Teredo client (RFC 4380)",
		"Qualifies with a Teredo server and configures a Teredo IPv6 address on a tunnel interface;\n"+
			"reads Miredo's miredo.conf (client mode). An optional argument names the server, as in Miredo.",
		true, flags, action)
}

// settings is the merged configuration and what the merge noticed.
type settings struct {
	cfg client.Config
	daemon.Loaded
}

// configure reads the configuration file and merges the command line over
// it: a flag given wins over the file, the file over the flag's default.
func configure(c *cli.Context) (settings, error) {
	var s settings
	if c.NArg() > 1 {
		return s, daemon.Usagef("at most one server name may be given")
	}
	ld, err := daemon.Load(c, conf.ClientSchema)
	if err != nil {
		return s, err
	}
	s.Loaded = ld
	file, m := ld.File, ld.Merge
	if file.RelayType != conf.ModeClient {
		return s, &daemon.UsageError{Err: file.ErrorAt(conf.RelayType,
			errors.New("this is a relay configuration: run miredo-relay for it; miredo-client takes client or autoclient"))}
	}
	cfg := client.Config{
		Server:      file.ServerAddress,
		Server2:     file.ServerAddress2,
		Interface:   c.String("interface"),
		BindAddress: file.BindAddress,
		BindPort:    file.BindPort,
		Hook:        c.String("hook"),
		User:        c.String("user"),
		Chroot:      c.String("chroot"),
		PIDFile:     c.String("pidfile"),
		Refresh:     c.Duration("refresh-interval"),
		LogLevel:    c.String("log-level"),
		TunBackend:  netcfg.Backend(c.String("tun-backend")),
		NoGSO:       c.Bool("no-gso"),
		NoGRO:       c.Bool("no-gro"),
		NoUPnP:      c.Bool("no-upnp"),
	}
	if file.IsSet(conf.InterfaceName) && !c.IsSet("interface") {
		cfg.Interface = file.InterfaceName
	}
	m.Given("interface", conf.InterfaceName, cfg.Interface)
	// As in Miredo, a server named on the command line replaces the file's;
	// the file's secondary address then no longer applies.
	server := c.String("server")
	if c.NArg() == 1 {
		if server != "" {
			return s, daemon.Usagef("give the server either as an argument or with --server, not both")
		}
		server = c.Args().First()
		m.Replaced(conf.ServerAddress, "the server argument", server, server)
		m.Replaced(conf.ServerAddress2, "the server argument", server, "")
	} else if m.Given("server", conf.ServerAddress, server) {
		m.Replaced(conf.ServerAddress2, "--server", server, "")
	}
	if server != "" {
		cfg.Server, cfg.Server2 = server, ""
	} else {
		for _, d := range []conf.Directive{conf.ServerAddress, conf.ServerAddress2} {
			if v := file.Raw(d); file.IsSet(d) && v != "" {
				if err := client.CheckServerName(v); err != nil {
					return s, &daemon.UsageError{Err: file.ErrorAt(d, err)}
				}
			}
		}
	}
	if c.IsSet("server2") {
		cfg.Server2 = c.String("server2")
		m.Given("server2", conf.ServerAddress2, cfg.Server2)
	}
	if a := c.String("bind-address"); a != "" {
		if cfg.BindAddress, err = netip.ParseAddr(a); err != nil {
			return s, daemon.Usagef("--bind-address: %w", err)
		}
		m.Given("bind-address", conf.BindAddress, cfg.BindAddress.String())
	}
	if c.IsSet("bind-port") {
		p := c.Uint("bind-port")
		if p > 65535 {
			return s, daemon.Usagef("--bind-port %d: out of range", p)
		}
		cfg.BindPort = uint16(p)
		m.Given("bind-port", conf.BindPort, strconv.Itoa(int(p)))
	}
	if s.cfg, err = cfg.Check(); err != nil {
		if errors.Is(err, client.ErrNoServer) && file.Name != "" {
			return s, daemon.Usagef("%s: ServerAddress not set and no server given: %w", file.Name, err)
		}
		return s, &daemon.UsageError{Err: err}
	}
	return s, nil
}

func run(c *cli.Context) error {
	level, err := daemon.ParseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	if c.Bool(client.HelperFlag) {
		log := daemon.NewLogger(os.Stderr, c.App.Name, level).With("process", "helper")
		return client.RunHelper(client.HelperConfig{
			Interface: c.String("interface"), Hook: c.String("hook"), User: c.String("user"),
		}, log)
	}
	// SIGHUP (the if-up hook, a reload) must not kill the client while it
	// starts; once it runs, it re-qualifies on it (client.Run).
	signal.Ignore(syscall.SIGHUP)
	s, err := configure(c)
	if err != nil {
		return err
	}
	log, closeLog, err := s.OpenLog(c, level)
	if err != nil {
		return err
	}
	defer closeLog()

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return client.Run(ctx, s.cfg, log)
}

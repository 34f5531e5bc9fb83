// Command miredo-client is a Teredo client (RFC 4380 §5.2): behind a NAT it
// qualifies with a Teredo server and brings up IPv6 on a tunnel interface.
package main

import (
	"errors"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/client"
	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/proto"
)

func main() {
	os.Exit(daemon.Main(newApp(), os.Args, os.Stderr))
}

func newApp() *cli.App {
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
	}
	return daemon.NewApp("miredo-client", "Teredo client (RFC 4380)",
		"Qualifies with a Teredo server and configures a Teredo IPv6 address on a tunnel interface;\n"+
			"reads Miredo's miredo.conf (client mode). An optional argument names the server, as in Miredo.",
		true, flags, run)
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
	if c.NArg() > 1 {
		return daemon.Usagef("at most one server name may be given")
	}
	file, warns, err := daemon.LoadConfig(c.String("config"), c.IsSet("config"), conf.ClientSchema,
		conf.Options{LookupIPv4: conf.NetLookup(c.Context, nil), IsGlobalUnicast: proto.IsGlobalUnicastIPv4})
	if err != nil {
		return err
	}
	if file.RelayType != conf.ModeClient {
		return &daemon.UsageError{Err: file.ErrorAt(conf.RelayType,
			errors.New("this is a relay configuration: run miredo-relay for it; miredo-client takes client or autoclient"))}
	}
	log, closeLog, err := daemon.NewDaemonLogger(daemon.LogOptions{
		Program: c.App.Name, Level: level, Stderr: os.Stderr,
		Syslog: c.Bool("syslog") || file.IsSet(conf.SyslogFacility), Facility: file.SyslogFacility,
	})
	if err != nil {
		return err
	}
	defer closeLog()
	daemon.LogWarnings(log, warns)

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
	}
	if file.IsSet(conf.InterfaceName) && !c.IsSet("interface") {
		cfg.Interface = file.InterfaceName
	}
	// As in Miredo, a server named on the command line replaces the file's;
	// the file's secondary address then no longer applies.
	server := c.String("server")
	if c.NArg() == 1 {
		if server != "" {
			return daemon.Usagef("give the server either as an argument or with --server, not both")
		}
		server = c.Args().First()
	}
	if server != "" {
		cfg.Server, cfg.Server2 = server, ""
	} else {
		for _, d := range []conf.Directive{conf.ServerAddress, conf.ServerAddress2} {
			if v := file.Raw(d); file.IsSet(d) && v != "" {
				if err := client.CheckServerName(v); err != nil {
					return &daemon.UsageError{Err: file.ErrorAt(d, err)}
				}
			}
		}
	}
	if c.IsSet("server2") {
		cfg.Server2 = c.String("server2")
	}
	if s := c.String("bind-address"); s != "" {
		if cfg.BindAddress, err = netip.ParseAddr(s); err != nil {
			return daemon.Usagef("--bind-address: %w", err)
		}
	}
	if c.IsSet("bind-port") {
		p := c.Uint("bind-port")
		if p > 65535 {
			return daemon.Usagef("--bind-port %d: out of range", p)
		}
		cfg.BindPort = uint16(p)
	}
	if _, err := cfg.Check(); err != nil {
		if errors.Is(err, client.ErrNoServer) && file.Name != "" {
			return daemon.Usagef("%s: ServerAddress not set and no server given: %w", file.Name, err)
		}
		return &daemon.UsageError{Err: err}
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return client.Run(ctx, cfg, log)
}

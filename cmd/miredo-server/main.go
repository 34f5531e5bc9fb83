// Command miredo-server is a Teredo server (RFC 4380 §5.3): it answers router
// solicitations on two consecutive IPv4 addresses and forwards bubbles.
package main

import (
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/server"
	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/proto"
)

func main() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "primary", Usage: "primary server IPv4 address (ServerBindAddress)"},
		&cli.StringFlag{Name: "secondary", Usage: "secondary server IPv4 address (ServerBindAddress2; default: primary+1)"},
		&cli.StringFlag{Name: "prefix", Value: "2001:0::", Usage: "Teredo prefix to advertise (Prefix)"},
		&cli.IntFlag{Name: "mtu", Value: 1280, Usage: "MTU to advertise, 1280-65535 (InterfaceMTU)"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "/etc/miredo/miredo-server.conf", Usage: "Miredo server configuration file, used when present"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as"},
		&cli.StringFlag{Name: "chroot", Aliases: []string{"t"}, Usage: "directory to chroot into after start"},
		&cli.StringFlag{Name: "pidfile", Aliases: []string{"p"}, Usage: "pid file to write"},
		&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "accepted for Miredo compatibility; the server always runs in the foreground"},
		&cli.BoolFlag{Name: "syslog", Usage: "also log to syslog (on when the configuration sets SyslogFacility)"},
		&cli.IntFlag{Name: "sockets", Usage: "UDP sockets per server address (default: one per CPU)"},
		&cli.UintFlag{Name: "rate-limit", Value: 5000, Usage: "most datagrams sent to one IPv4 /24 per second and socket, against reflection of spoofed solicitations (0: no limit)"},
		&cli.BoolFlag{Name: "no-batch", Usage: "move one datagram per system call instead of batches (for benchmarks)"},
		daemon.LogLevelFlag,
	}
	app := daemon.NewApp("miredo-server", "Teredo server (RFC 4380)",
		"Answers Teredo router solicitations on the primary and secondary addresses (UDP 3544)\n"+
			"and forwards bubbles and connectivity tests; reads Miredo's miredo-server.conf.\n"+
			"An optional argument names the primary address, as in Miredo.",
		true, flags, run)
	os.Exit(daemon.Main(app, os.Args, os.Stderr))
}

func run(c *cli.Context) error {
	// SIGHUP (a reload, Debian's if-up hook) must not kill the server; it
	// is answered once the log is open.
	hup, stopHup := daemon.CatchHangup()
	defer stopHup()
	level, err := daemon.ParseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	if c.NArg() > 1 {
		return daemon.Usagef("at most one server address may be given")
	}
	file, warns, err := daemon.LoadConfig(c.String("config"), c.IsSet("config"), conf.ServerSchema,
		conf.Options{LookupIPv4: conf.NetLookup(c.Context, nil), IsGlobalUnicast: proto.IsGlobalUnicastIPv4})
	if err != nil {
		return err
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

	cfg := server.Config{
		Primary:   file.ServerBindAddress,
		Secondary: file.ServerBindAddress2,
		Prefix:    file.Prefix.Addr(),
		MTU:       int(file.InterfaceMTU),
		User:      c.String("user"),
		Chroot:    c.String("chroot"),
		PIDFile:   c.String("pidfile"),
		Sockets:   c.Int("sockets"),
		NoBatch:   c.Bool("no-batch"),
		RateLimit: uint32(min(c.Uint("rate-limit"), 1<<31)),
	}
	// As in Miredo, a server address on the command line replaces the
	// file's pair: the secondary is then derived from it.
	primary := c.String("primary")
	if c.NArg() == 1 {
		primary = c.Args().First()
	}
	if primary != "" {
		if cfg.Primary, err = netip.ParseAddr(primary); err != nil {
			return daemon.Usagef("primary address %q: %w", primary, err)
		}
		cfg.Secondary = netip.Addr{}
	}
	if s := c.String("secondary"); s != "" {
		if cfg.Secondary, err = netip.ParseAddr(s); err != nil {
			return daemon.Usagef("--secondary %q: %w", s, err)
		}
	}
	if c.IsSet("prefix") || !file.IsSet(conf.Prefix) {
		if cfg.Prefix, err = netip.ParseAddr(c.String("prefix")); err != nil {
			return daemon.Usagef("--prefix %q: %w", c.String("prefix"), err)
		}
	}
	if c.IsSet("mtu") {
		cfg.MTU = c.Int("mtu")
	}
	if _, err := cfg.Check(); err != nil {
		return &daemon.UsageError{Err: err}
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go daemon.LogHangups(ctx, hup, log, "SIGHUP: configuration not reloaded; restart the server to apply changes (its sockets cannot be reopened after the privilege drop)")
	return server.Run(ctx, cfg, log)
}

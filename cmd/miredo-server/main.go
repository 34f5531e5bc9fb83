// SPDX-License-Identifier: MIT

// Command miredo-server is a Teredo server (RFC 4380 §5.3): it answers router
// solicitations on two consecutive IPv4 addresses and forwards bubbles.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/server"
	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/daemon"
)

func main() { os.Exit(daemon.Main(appWith(run), os.Args, os.Stderr)) }

// appWith is the server's command line with action to run: run, or a test's.
func appWith(action cli.ActionFunc) *cli.App {
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
		&cli.IntFlag{Name: "sockets", Usage: "UDP sockets per server address (default: one per CPU, datagrams steered to half of them until the loops saturate)"},
		&cli.UintFlag{Name: "rate-limit", Value: 5000, Usage: "most datagrams sent to one IPv4 /24 per second and socket, against reflection of spoofed solicitations (0: no limit)"},
		&cli.BoolFlag{Name: "no-batch", Usage: "move one datagram per system call instead of batches (for benchmarks)"},
		&cli.DurationFlag{Name: "coalesce", Value: server.DefaultCoalesce, Usage: "longest a busy socket loop sleeps to answer solicitations in batches, 0-10ms (0: answer each at once)"},
		&cli.StringFlag{Name: "xdp", Usage: "serve UDP 3544 through AF_XDP sockets on this interface (falls back to UDP sockets when XDP cannot attach)"},
		daemon.LogLevelFlag,
		daemon.CheckConfigFlag,
		daemon.ControlSocketFlag("server"),
		daemon.MetricsListenFlag,
	}
	app := daemon.NewApp("miredo-server", "Teredo server (RFC 4380)",
		"Answers Teredo router solicitations on the primary and secondary addresses (UDP 3544)\n"+
			"and forwards bubbles and connectivity tests; reads Miredo's miredo-server.conf.\n"+
			"An optional argument names the primary address, as in Miredo.",
		true, flags, action)
	app.Commands = []*cli.Command{daemon.StatusCommand[server.StatusReport]("server", false), mireCommand()}
	app.UsageText = "miredo-server [options] [address]\n" +
		"miredo-server status [--json]   (the running server's state)\n" +
		"miredo-server mire [options] ADDRESS   (a Teredo test responder, see miredo-server(8))"
	return app
}

// settings is the merged configuration and what the merge noticed.
type settings struct {
	cfg   server.Config
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
		bad.Add(errors.New("at most one server address may be given"))
	}
	ld, err := daemon.Load(c, conf.ServerSchema)
	if err != nil {
		bad.Add(err)
		return s, bad.Err()
	}
	s.Loaded = ld
	file, m := ld.File, ld.Merge
	if s.level, err = ld.LogLevel(c); err != nil {
		bad.Add(err)
	}
	cfg := server.Config{
		Primary:            file.ServerBindAddress,
		Secondary:          file.ServerBindAddress2,
		Prefix:             file.Prefix.Addr(),
		MTU:                int(file.InterfaceMTU),
		User:               c.String("user"),
		Chroot:             c.String("chroot"),
		PIDFile:            c.String("pidfile"),
		Sockets:            c.Int("sockets"),
		NoBatch:            c.Bool("no-batch"),
		Coalesce:           c.Duration("coalesce"),
		XDP:                c.String("xdp"),
		RateLimit:          uint32(min(c.Uint("rate-limit"), 1<<31)),
		ControlSocket:      c.String("control-socket"),
		ControlSocketNamed: c.IsSet("control-socket"),
		MetricsListen:      c.String("metrics-listen"),
	}
	// As in Miredo, a server address on the command line replaces the
	// file's pair: the secondary is then derived from it.
	primary, what := c.String("primary"), "--primary"
	if c.NArg() == 1 {
		if primary != "" {
			bad.Add(errors.New("give the primary address either as an argument or with --primary, not both"))
		}
		primary, what = c.Args().First(), "the address argument"
	}
	if primary != "" {
		if cfg.Primary, err = netip.ParseAddr(primary); err != nil {
			bad.Add(fmt.Errorf("primary address %q: %w", primary, err))
		}
		cfg.Secondary = netip.Addr{}
		m.Replaced(conf.ServerBindAddress, what, primary, cfg.Primary.String())
		m.Replaced(conf.ServerBindAddress2, what, primary, "")
	}
	if a := c.String("secondary"); a != "" {
		if cfg.Secondary, err = netip.ParseAddr(a); err != nil {
			bad.Add(fmt.Errorf("--secondary %q: %w", a, err))
		} else {
			m.Given("secondary", conf.ServerBindAddress2, cfg.Secondary.String())
		}
	}
	if pfx := c.String("prefix"); c.IsSet("prefix") || !file.IsSet(conf.Prefix) {
		if cfg.Prefix, err = netip.ParseAddr(pfx); err != nil {
			bad.Add(fmt.Errorf("--prefix %q: %w", pfx, err))
		} else {
			m.Given("prefix", conf.Prefix, cfg.Prefix.String())
		}
	}
	if !m.Given("rate-limit", conf.RateLimit, strconv.FormatUint(uint64(cfg.RateLimit), 10)) && file.IsSet(conf.RateLimit) {
		cfg.RateLimit = file.RateLimit
	}
	if c.IsSet("mtu") {
		cfg.MTU = c.Int("mtu")
		m.Given("mtu", conf.InterfaceMTU, strconv.Itoa(cfg.MTU))
	}
	if len(bad) == 0 {
		s.cfg, err = cfg.Check()
		bad.Add(err)
	}
	return s, bad.Err()
}

func run(c *cli.Context) error {
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
	reloads := daemon.Reloads(ctx, hup, log, func() (server.Config, error) {
		s, err := configure(c)
		if err != nil {
			return server.Config{}, err
		}
		level.Set(s.level)
		return s.cfg, nil
	})
	return server.Run(ctx, s.cfg, log, reloads)
}

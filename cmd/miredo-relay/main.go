// SPDX-License-Identifier: MIT

// Command miredo-relay is a Teredo relay (RFC 4380 §5.4): a router between
// native IPv6 and Teredo clients.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/relay"
	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/control"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/netcfg/tundev"
)

func main() { os.Exit(daemon.Main(newApp(), os.Args, os.Stderr)) }

func newApp() *cli.App { return appWith(run) }

// appWith is the relay's command line with action to run: run, or a test's.
func appWith(action cli.ActionFunc) *cli.App {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "cone", Usage: "cone relay: indirect bubbles only (default; RelayType cone)"},
		&cli.BoolFlag{Name: "restricted", Usage: "restricted relay: also send direct bubbles, for a relay behind a NAT (RelayType restricted)"},
		&cli.StringFlag{Name: "prefix", Value: "2001:0::", Usage: "Teredo prefix to serve (Prefix)"},
		&cli.StringFlag{Name: "interface", Value: "teredo", Usage: "tunnel interface name (InterfaceName)"},
		&cli.IntFlag{Name: "mtu", Value: 1280, Usage: "tunnel MTU, 1280-65535 (InterfaceMTU)"},
		&cli.StringFlag{Name: "bind-address", Usage: "local IPv4 address of the UDP socket (BindAddress; default: any)"},
		&cli.UintFlag{Name: "bind-port", Usage: "local UDP port (BindPort; default: ephemeral)"},
		&cli.IntFlag{Name: "max-peers", Value: 1 << 20, Usage: "most peers remembered at once"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: DefaultConfig, Usage: "configuration file in Miredo's miredo.conf format, used when present (Miredo's own /etc/miredo/miredo.conf only when named)"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as"},
		&cli.StringFlag{Name: "chroot", Aliases: []string{"t"}, Usage: "directory to chroot into after start"},
		&cli.StringFlag{Name: "pidfile", Aliases: []string{"p"}, Usage: "pid file to write"},
		&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "accepted for Miredo compatibility; the relay always runs in the foreground"},
		&cli.BoolFlag{Name: "syslog", Usage: "also log to syslog (on when the configuration sets SyslogFacility)"},
		&cli.BoolFlag{Name: "no-batch", Usage: "move one datagram per system call instead of batches (kill switch, benchmarks)"},
		&cli.BoolFlag{Name: "no-gso", Usage: "send one datagram per segment instead of UDP GSO runs (kill switch)"},
		&cli.BoolFlag{Name: "no-gro", Usage: "do not ask the kernel to coalesce received datagrams (UDP GRO; kill switch)"},
		&cli.StringFlag{Name: "tun-backend", Value: string(tundev.DefaultBackend), Usage: "how to drive the tunnel: offload (TSO/GRO-like offloads), batch (no offloads) or water (one packet per call; kill switch)"},
		&cli.StringFlag{Name: "announce-interface", Usage: "idle tunnel interface held while the relay serves, for a routing daemon to announce the Teredo prefix by (anycast relays; off by default)"},
		&cli.DurationFlag{Name: "drain-time", Value: 2 * time.Second, Usage: "with --announce-interface: how long to forward after withdrawing, on SIGTERM or drain, before exiting"},
		daemon.LogLevelFlag,
		daemon.CheckConfigFlag,
		daemon.ControlSocketFlag("relay"),
		daemon.MetricsListenFlag,
	}
	app := daemon.NewApp("miredo-relay", "Teredo relay (RFC 4380)",
		"Routes the Teredo prefix between native IPv6 and Teredo clients over UDP;\n"+
			"reads Miredo's miredo.conf (RelayType cone or restricted).",
		false, flags, action)
	app.Commands = []*cli.Command{daemon.StatusCommand[relay.StatusReport]("relay", true), drainCommand()}
	return app
}

// errClientConfig is what a client's miredo.conf gets.
var errClientConfig = errors.New("this binary is the Teredo relay (RelayType cone or restricted); for a client use miredo-client")

// DefaultConfig is the relay's own configuration file, in Miredo's format.
// It is not Miredo's miredo.conf: on a host with Debian's miredo installed,
// that file configures Miredo's client, and a relay started with its usage
// line must not pick it up (it is read when named with -c).
const DefaultConfig = "/etc/miredo/miredo-relay.conf"

// settings is the merged configuration and what the merge noticed.
type settings struct {
	cfg   relay.Config
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
	if c.Bool("cone") && c.Bool("restricted") {
		bad.Add(daemon.Usagef("--cone and --restricted exclude each other"))
	}
	path := c.String("config")
	ld, err := daemon.Load(c, conf.RelaySchema)
	if err != nil {
		bad.Add(err)
		return s, bad.Err()
	}
	s.Loaded = ld
	file, m := ld.File, ld.Merge
	if s.level, err = ld.LogLevel(c); err != nil {
		bad.Add(err)
	}
	cfg := relay.Config{
		Restricted:         file.RelayType == conf.ModeRestricted,
		Prefix:             file.Prefix.Addr(),
		Interface:          file.InterfaceName,
		MTU:                int(file.InterfaceMTU),
		BindAddress:        file.BindAddress,
		BindPort:           file.BindPort,
		MaxPeers:           c.Int("max-peers"),
		User:               c.String("user"),
		Chroot:             c.String("chroot"),
		PIDFile:            c.String("pidfile"),
		ControlSocket:      c.String("control-socket"),
		ControlSocketNamed: c.IsSet("control-socket"),
		MetricsListen:      c.String("metrics-listen"),
		NoBatch:            c.Bool("no-batch"),
		NoGSO:              c.Bool("no-gso"),
		NoGRO:              c.Bool("no-gro"),
		TunBackend:         tundev.Backend(c.String("tun-backend")),

		AnnounceInterface: c.String("announce-interface"),
		DrainTime:         c.Duration("drain-time"),
	}
	switch {
	case m.Given("cone", conf.RelayType, conf.ModeCone.String()):
		cfg.Restricted = false
	case m.Given("restricted", conf.RelayType, conf.ModeRestricted.String()):
		cfg.Restricted = true
	case file.RelayType == conf.ModeClient && file.IsSet(conf.RelayType):
		bad.Add(file.ErrorAt(conf.RelayType, errClientConfig))
	case file.Name != "" && fileExists(path) && !file.IsSet(conf.RelayType):
		// Miredo's default RelayType is client: a file the relay
		// reads must say it is for a relay, or the command line must.
		bad.Add(fmt.Errorf("%s: RelayType not set, which means client (set it, or give --cone or --restricted): %w", path, errClientConfig))
	}
	if pfx := c.String("prefix"); c.IsSet("prefix") || !file.IsSet(conf.Prefix) {
		if cfg.Prefix, err = netip.ParseAddr(pfx); err != nil {
			bad.Add(fmt.Errorf("--prefix %q: %w", pfx, err))
		} else {
			m.Given("prefix", conf.Prefix, cfg.Prefix.String())
		}
	}
	if c.IsSet("interface") || !file.IsSet(conf.InterfaceName) {
		cfg.Interface = c.String("interface")
		m.Given("interface", conf.InterfaceName, cfg.Interface)
	}
	if c.IsSet("mtu") || !file.IsSet(conf.InterfaceMTU) {
		cfg.MTU = c.Int("mtu")
		m.Given("mtu", conf.InterfaceMTU, strconv.Itoa(cfg.MTU))
	}
	m.Bind(&cfg.BindAddress, &cfg.BindPort, &bad)
	if len(bad) == 0 {
		s.cfg, err = cfg.Check()
		bad.Add(err)
	}
	return s, bad.Err()
}

// fileExists reports whether path names something (a file the parser could
// not read has already been reported).
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// drainCommand is "miredo-relay drain": the running relay withdraws its
// announcement, forwards for its drain time, then exits, as on SIGTERM.
func drainCommand() *cli.Command {
	return &cli.Command{
		Name:  "drain",
		Usage: "withdraw the running relay's announcement, forward for its drain time, then stop it",
		Flags: []cli.Flag{daemon.ControlSocketFlag("relay")},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return daemon.Usagef("drain takes no arguments")
			}
			raw, err := control.Query(c.Context, c.String("control-socket"), control.Request{Command: control.CommandDrain})
			if err != nil {
				return err
			}
			var r relay.DrainReply
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("the daemon's answer: %w", err)
			}
			if r.Withdrawn {
				_, err = fmt.Fprintf(c.App.Writer, "announcement withdrawn; the relay exits in %s\n", r.ExitIn)
			} else {
				_, err = fmt.Fprintln(c.App.Writer, "the relay announces nothing; it exits now")
			}
			return err
		},
	}
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
	reloads := daemon.Reloads(ctx, hup, log, func() (relay.Config, error) {
		s, err := configure(c)
		if err != nil {
			return relay.Config{}, err
		}
		level.Set(s.level)
		return s.cfg, nil
	})
	return relay.Run(ctx, s.cfg, log, reloads)
}

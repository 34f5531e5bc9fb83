// Command miredo-relay is a Teredo relay (RFC 4380 §5.4): a router between
// native IPv6 and Teredo clients.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/relay"
	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/daemon"
	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/proto"
)

func main() { os.Exit(daemon.Main(newApp(), os.Args, os.Stderr)) }

func newApp() *cli.App {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "cone", Usage: "cone relay: indirect bubbles only (default; RelayType cone)"},
		&cli.BoolFlag{Name: "restricted", Usage: "restricted relay: also send direct bubbles, for a relay behind a NAT (RelayType restricted)"},
		&cli.StringFlag{Name: "prefix", Value: "2001:0::", Usage: "Teredo prefix to serve (Prefix)"},
		&cli.StringFlag{Name: "interface", Value: "teredo", Usage: "tunnel interface name (InterfaceName)"},
		&cli.IntFlag{Name: "mtu", Value: 1280, Usage: "tunnel MTU, 1280-65535 (InterfaceMTU)"},
		&cli.StringFlag{Name: "bind-address", Usage: "local IPv4 address of the UDP socket (BindAddress; default: any)"},
		&cli.UintFlag{Name: "bind-port", Usage: "local UDP port (BindPort; default: ephemeral)"},
		&cli.IntFlag{Name: "max-peers", Value: 1 << 20, Usage: "most peers remembered at once"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: "/etc/miredo/miredo.conf", Usage: "Miredo configuration file, used when present"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "nobody", Usage: "unprivileged user to run as"},
		&cli.StringFlag{Name: "chroot", Aliases: []string{"t"}, Usage: "directory to chroot into after start"},
		&cli.StringFlag{Name: "pidfile", Aliases: []string{"p"}, Usage: "pid file to write"},
		&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "accepted for Miredo compatibility; the relay always runs in the foreground"},
		&cli.BoolFlag{Name: "syslog", Usage: "also log to syslog (on when the configuration sets SyslogFacility)"},
		&cli.BoolFlag{Name: "no-batch", Usage: "move one datagram per system call instead of batches (kill switch, benchmarks)"},
		&cli.BoolFlag{Name: "no-gso", Usage: "send one datagram per segment instead of UDP GSO runs (kill switch)"},
		&cli.BoolFlag{Name: "no-gro", Usage: "do not ask the kernel to coalesce received datagrams (UDP GRO; kill switch)"},
		&cli.StringFlag{Name: "tun-backend", Value: string(netcfg.DefaultBackend), Usage: "how to drive the tunnel: offload (TSO/GRO-like offloads), batch (no offloads) or water (one packet per call; kill switch)"},
		daemon.LogLevelFlag,
	}
	return daemon.NewApp("miredo-relay", "Teredo relay (RFC 4380)",
		"Routes the Teredo prefix between native IPv6 and Teredo clients over UDP;\n"+
			"reads Miredo's miredo.conf (RelayType cone or restricted).",
		false, flags, run)
}

// errClientConfig is what a client's miredo.conf gets.
var errClientConfig = errors.New("this binary is the Teredo relay (RelayType cone or restricted); for a client use miredo-client")

func run(c *cli.Context) error {
	// SIGHUP (a reload, Debian's if-up hook) must not kill the relay; it
	// is answered once the log is open.
	hup, stopHup := daemon.CatchHangup()
	defer stopHup()
	level, err := daemon.ParseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	if c.Bool("cone") && c.Bool("restricted") {
		return daemon.Usagef("--cone and --restricted exclude each other")
	}
	path := c.String("config")
	_, statErr := os.Stat(path)
	present := statErr == nil || !errors.Is(statErr, fs.ErrNotExist)
	file, warns, err := daemon.LoadConfig(path, c.IsSet("config"), conf.RelaySchema,
		conf.Options{LookupIPv4: conf.NetLookup(c.Context, nil), IsGlobalUnicast: proto.IsGlobalUnicastIPv4})
	if err != nil {
		return err
	}
	if present {
		// A file the relay reads must say it is for a relay: Miredo's
		// default RelayType is client.
		switch {
		case !file.IsSet(conf.RelayType):
			return daemon.Usagef("%s: RelayType not set, which means client: %w", path, errClientConfig)
		case file.RelayType == conf.ModeClient:
			return &daemon.UsageError{Err: file.ErrorAt(conf.RelayType, errClientConfig)}
		}
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

	cfg := relay.Config{
		Restricted:  file.RelayType == conf.ModeRestricted,
		Prefix:      file.Prefix.Addr(),
		Interface:   file.InterfaceName,
		MTU:         int(file.InterfaceMTU),
		BindAddress: file.BindAddress,
		BindPort:    file.BindPort,
		MaxPeers:    c.Int("max-peers"),
		User:        c.String("user"),
		Chroot:      c.String("chroot"),
		PIDFile:     c.String("pidfile"),
		NoBatch:     c.Bool("no-batch"),
		NoGSO:       c.Bool("no-gso"),
		NoGRO:       c.Bool("no-gro"),
		TunBackend:  netcfg.Backend(c.String("tun-backend")),
	}
	// Flags given on the command line win over the file; the file wins
	// over flag defaults.
	switch {
	case c.Bool("cone"):
		cfg.Restricted = false
	case c.Bool("restricted"):
		cfg.Restricted = true
	}
	if c.IsSet("prefix") || !file.IsSet(conf.Prefix) {
		if cfg.Prefix, err = netip.ParseAddr(c.String("prefix")); err != nil {
			return daemon.Usagef("--prefix %q: %w", c.String("prefix"), err)
		}
	}
	if c.IsSet("interface") || !file.IsSet(conf.InterfaceName) {
		cfg.Interface = c.String("interface")
	}
	if c.IsSet("mtu") || !file.IsSet(conf.InterfaceMTU) {
		cfg.MTU = c.Int("mtu")
	}
	if s := c.String("bind-address"); s != "" {
		if cfg.BindAddress, err = netip.ParseAddr(s); err != nil {
			return daemon.Usagef("--bind-address %q: %w", s, err)
		}
	}
	if c.IsSet("bind-port") {
		p := c.Uint("bind-port")
		if p > 65535 {
			return daemon.Usagef("--bind-port %d: out of range", p)
		}
		cfg.BindPort = uint16(p)
	}
	if cfg, err = cfg.Check(); err != nil {
		return &daemon.UsageError{Err: fmt.Errorf("configuration: %w", err)}
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go daemon.LogHangups(ctx, hup, log, "SIGHUP: configuration not reloaded; restart the relay to apply changes (its tunnel and socket cannot be reopened after the privilege drop)")
	return relay.Run(ctx, cfg, log)
}

// SPDX-License-Identifier: MIT

package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/tundev"
	"github.com/miredo-go/miredo/pkg/proto"
)

// Config is what the relay needs to run, after flags and miredo.conf have been
// merged.
type Config struct {
	Restricted  bool       // RelayType restricted: also send direct bubbles
	Prefix      netip.Addr // Teredo prefix routed to the tunnel (first 32 bits used)
	Interface   string     // InterfaceName
	MTU         int        // InterfaceMTU
	BindAddress netip.Addr // IPv4 of the UDP socket; unset means any
	BindPort    uint16     // 0 means ephemeral
	MaxPeers    int        // peer table bound; 0 means Miredo's 1,048,576
	User        string
	Chroot      string
	PIDFile     string
	// ControlSocket is where `miredo-relay status` asks; "" for none.
	ControlSocket string
	// ControlSocketNamed says the operator chose ControlSocket: then it must
	// be free (see control.ListenOrWarn).
	ControlSocketNamed bool
	// MetricsListen is where Prometheus metrics are served (host:port); "" for none.
	MetricsListen string
	// NoBatch turns recvmmsg/sendmmsg off (a kill switch, and the baseline
	// for benchmarks).
	NoBatch bool
	// NoGSO and NoGRO turn UDP segmentation offload off on send and on
	// receive (kill switches; both are on by default where the kernel has
	// them).
	NoGSO, NoGRO bool
	// TunBackend is how the tunnel is opened: tundev.BackendOffload (the
	// default: TSO super-segments split on read, TCP segments coalesced on
	// write), BackendBatch, or BackendWater (the kill switch).
	TunBackend tundev.Backend
	// AnnounceInterface, if set, is an idle TUN interface the relay holds
	// while it serves, for a routing daemon to announce the Teredo prefix
	// by (anycast relays, announce.go).
	AnnounceInterface string
	// DrainTime is how long an announcing relay forwards after withdrawing
	// its announcement on SIGTERM or the drain command, before it exits.
	DrainTime time.Duration
}

// Errors from Config.Check, so callers can point at the flag or directive.
var (
	ErrPrefix   = errors.New("the Teredo prefix must be an IPv6 unicast address")
	ErrMTU      = fmt.Errorf("the tunnel MTU must be within %d-%d", netcfg.MinMTU, netcfg.MaxMTU)
	ErrBind     = errors.New("the bind address must be IPv4")
	ErrMaxPeers = errors.New("--max-peers must be positive")
	// ErrAnnounceIsTunnel: the announce interface must be one of its own.
	ErrAnnounceIsTunnel = errors.New("the announce interface must not be the tunnel interface")
)

// Check validates c and fills in defaults.
func (c Config) Check() (Config, error) {
	if !c.Prefix.IsValid() {
		c.Prefix = proto.PrefixAddr(proto.DefaultPrefix)
	}
	if !c.Prefix.Is6() || c.Prefix.Is4In6() || c.Prefix.IsMulticast() {
		return c, fmt.Errorf("prefix %v: %w", c.Prefix, ErrPrefix)
	}
	c.Prefix = proto.PrefixAddr(proto.PrefixOf(c.Prefix))
	if c.MTU == 0 {
		c.MTU = proto.MinMTU
	}
	if c.MTU < netcfg.MinMTU || c.MTU > netcfg.MaxMTU {
		return c, fmt.Errorf("MTU %d: %w", c.MTU, ErrMTU)
	}
	if !c.BindAddress.IsValid() {
		c.BindAddress = netip.IPv4Unspecified()
	}
	c.BindAddress = c.BindAddress.Unmap()
	if !c.BindAddress.Is4() {
		return c, fmt.Errorf("bind address %v: %w", c.BindAddress, ErrBind)
	}
	if c.Interface == "" {
		c.Interface = netcfg.DefaultName
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = tunnel.DefaultMaxPeers
	}
	if c.MaxPeers < 0 {
		return c, ErrMaxPeers
	}
	b, err := tundev.ParseBackend(string(c.TunBackend))
	if err != nil {
		return c, err
	}
	c.TunBackend = b
	if c.AnnounceInterface != "" {
		if err := netcfg.ValidateName(c.AnnounceInterface); err != nil {
			return c, fmt.Errorf("announce interface: %w", err)
		}
		if c.AnnounceInterface == c.Interface {
			return c, fmt.Errorf("announce interface %q: %w", c.AnnounceInterface, ErrAnnounceIsTunnel)
		}
	}
	if c.DrainTime < 0 || c.DrainTime > MaxDrainTime {
		return c, fmt.Errorf("drain time %v: %w", c.DrainTime, ErrDrainTime)
	}
	return c, nil
}

// mode is the engine mode the relay type asks for.
func (c Config) mode() tunnel.Mode {
	if c.Restricted {
		return tunnel.RestrictedRelay
	}
	return tunnel.ConeRelay
}

// unapplied names the settings of next that differ from c's and that a
// running relay cannot take (by directive, or by flag when there is none).
func (c Config) unapplied(next Config) []string {
	var names []string
	for _, d := range []struct {
		changed bool
		name    string
	}{
		{c.Restricted != next.Restricted, "RelayType"},
		{c.Prefix != next.Prefix, "Prefix"},
		{c.Interface != next.Interface, "InterfaceName"},
		{c.MTU != next.MTU, "InterfaceMTU"},
		{c.BindAddress != next.BindAddress, "BindAddress"},
		{c.BindPort != next.BindPort, "BindPort"},
		{c.MaxPeers != next.MaxPeers, "--max-peers"},
		{c.User != next.User || c.Chroot != next.Chroot || c.PIDFile != next.PIDFile, "--user/--chroot/--pidfile"},
		{c.NoBatch != next.NoBatch || c.NoGSO != next.NoGSO || c.NoGRO != next.NoGRO || c.TunBackend != next.TunBackend, "I/O switches"},
		{c.ControlSocket != next.ControlSocket || c.MetricsListen != next.MetricsListen, "--control-socket/--metrics-listen"},
		{c.AnnounceInterface != next.AnnounceInterface || c.DrainTime != next.DrainTime, "--announce-interface/--drain-time"},
	} {
		if d.changed {
			names = append(names, d.name)
		}
	}
	return names
}

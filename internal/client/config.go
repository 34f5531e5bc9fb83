// SPDX-License-Identifier: MIT

package client

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/tundev"
	"github.com/miredo-go/miredo/pkg/proto"
)

// Config is what the client needs to run, after flags and miredo.conf have
// been merged.
type Config struct {
	Server      string     // ServerAddress: host name or IPv4, resolved at start and after loss
	Server2     string     // ServerAddress2: primary+1 when empty
	Interface   string     // InterfaceName; netcfg.DefaultName when empty
	BindAddress netip.Addr // BindAddress; unspecified means any
	BindPort    uint16     // BindPort; 0 means ephemeral
	Hook        string     // script run with Miredo's client-hook environment
	User        string
	Chroot      string
	PIDFile     string
	// ControlSocket is where `miredo-client status` asks; "" for none.
	ControlSocket string
	// ControlSocketNamed says the operator chose ControlSocket: then it must
	// be free (see control.ListenOrWarn).
	ControlSocketNamed bool
	// MetricsListen is where Prometheus metrics are served (host:port); "" for none.
	MetricsListen string
	// Refresh is the Teredo refresh interval (RFC 4380 §5.2.5; Windows'
	// "netsh interface teredo set state refreshinterval="); 0 means 30 s.
	// Unless FixedRefresh, it is where the determination procedure
	// (RFC 4380 §5.2.7, interval.go) starts from.
	Refresh time.Duration
	// FixedRefresh keeps Refresh as it is: the operator chose it.
	FixedRefresh bool
	// LogLevel is passed on to the privileged helper.
	LogLevel string
	// TunBackend is how the tunnel is opened (tundev.BackendOffload by
	// default; "water" is the kill switch).
	TunBackend tundev.Backend
	// NoGSO and NoGRO turn UDP segmentation offload off (kill switches).
	NoGSO, NoGRO bool
	// NoUPnP: no UPnP port mapping (RFC 6081 §5.3), no SSDP search.
	NoUPnP bool
}

// Errors from Config.Check, so callers can point at the flag or directive.
var (
	ErrNoServer   = errors.New("no Teredo server: give --server, a server name or ServerAddress")
	ErrNotGlobal  = errors.New("server addresses must be global unicast IPv4")
	ErrBind       = errors.New("bind address must be IPv4")
	ErrRefresh    = errors.New("refresh interval must be within 1 s - 1 h")
	ErrServerName = errors.New("not an IPv4 address or host name")
	ErrInterface  = errors.New("invalid interface name")
)

// Check validates c and fills in defaults. Server names are checked for
// syntax only; they are resolved when the client starts and after a loss.
func (c Config) Check() (Config, error) {
	if c.Server == "" {
		return c, ErrNoServer
	}
	for _, s := range []*string{&c.Server, &c.Server2} {
		if *s == "" {
			continue
		}
		if err := CheckServerName(*s); err != nil {
			return c, fmt.Errorf("server %q: %w", *s, err)
		}
		if a, err := netip.ParseAddr(*s); err == nil {
			*s = a.Unmap().String()
		}
	}
	if c.Interface == "" {
		c.Interface = netcfg.DefaultName
	}
	// The file's InterfaceName passed this check with its line; --interface
	// gets it here, before the name reaches the kernel and the hook's
	// environment.
	if err := conf.CheckInterfaceName(c.Interface); err != nil {
		return c, fmt.Errorf("--interface %q: %w: %w", c.Interface, ErrInterface, err)
	}
	if !c.BindAddress.IsValid() {
		c.BindAddress = netip.IPv4Unspecified()
	}
	c.BindAddress = c.BindAddress.Unmap()
	if !c.BindAddress.Is4() {
		return c, fmt.Errorf("%v: %w", c.BindAddress, ErrBind)
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultTiming().Refresh
	}
	if c.Refresh < time.Second || c.Refresh > time.Hour {
		return c, fmt.Errorf("%v: %w", c.Refresh, ErrRefresh)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	b, err := tundev.ParseBackend(string(c.TunBackend))
	if err != nil {
		return c, err
	}
	c.TunBackend = b
	return c, nil
}

// CheckServerName checks a server given as an IPv4 address (it must be
// global unicast) or a host name (it must look like one).
func CheckServerName(s string) error {
	if a, err := netip.ParseAddr(s); err == nil {
		if a = a.Unmap(); !a.Is4() || !proto.IsGlobalUnicastIPv4(a) {
			return ErrNotGlobal
		}
		return nil
	}
	if !validHostName(s) {
		return ErrServerName
	}
	return nil
}

// validHostName accepts what a DNS name may look like (RFC 1123 labels, an
// optional final dot), so that a typo such as "1.2.3" is not sent to the
// resolver as a name.
func validHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	digitsOnly := true
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			switch ch := label[i]; {
			case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch == '-':
				digitsOnly = false
			case ch >= '0' && ch <= '9':
			default:
				return false
			}
		}
	}
	return !digitsOnly
}

// unapplied names the settings of next that differ from c's and that a
// running client cannot take: they shape the tunnel, the socket or the
// privileged helper.
func (c Config) unapplied(next Config) []string {
	var names []string
	for _, d := range []struct {
		changed bool
		name    string
	}{
		{c.Interface != next.Interface, "InterfaceName"},
		{c.BindAddress != next.BindAddress, "BindAddress"},
		{c.BindPort != next.BindPort, "BindPort"},
		{c.Hook != next.Hook, "--hook"},
		{c.User != next.User || c.Chroot != next.Chroot || c.PIDFile != next.PIDFile, "--user/--chroot/--pidfile"},
		{c.TunBackend != next.TunBackend || c.NoGSO != next.NoGSO || c.NoGRO != next.NoGRO, "I/O switches"},
		{c.ControlSocket != next.ControlSocket || c.MetricsListen != next.MetricsListen, "--control-socket/--metrics-listen"},
	} {
		if d.changed {
			names = append(names, d.name)
		}
	}
	return names
}

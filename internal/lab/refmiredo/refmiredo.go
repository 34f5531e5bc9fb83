// SPDX-License-Identifier: MIT

// Package refmiredo runs Debian's Miredo 1.2.6 in a lab host, in any role, as
// the reference every role of ours is compared against.
//
// Each instance runs in the foreground (-f) with a generated configuration
// and its own pid file beside its log in the lab's log directory. It starts as
// root and switches to the "miredo" user by itself (it refuses to keep root).
// Miredo treats 10/8 and other private ranges as non-global, so its servers
// and the NATs in front of its clients use documentation ranges, as the lab
// does.
package refmiredo

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"

	"github.com/miredo-go/miredo/internal/lab"
)

// Debian's binaries: miredo is the client and the relay.
const (
	MiredoBinary = "/usr/sbin/miredo"
	ServerBinary = "/usr/sbin/miredo-server"
)

// TeredoPort is the Teredo server's UDP port.
const TeredoPort = 3544

// DefaultIfname is the tunnel interface the helpers configure; Miredo's own
// default is "tun0", whatever its manual says.
const DefaultIfname = "teredo"

// teredoPrefix is 2001::/32 (RFC 4380 section 2.6).
var teredoPrefix = netip.MustParsePrefix("2001::/32")

// TeredoPrefix returns 2001::/32, where every Teredo address lives.
func TeredoPrefix() netip.Prefix { return teredoPrefix }

// Missing says why Miredo cannot run here ("" if it can): the binaries or
// the user it switches to are absent.
func Missing() string {
	for _, bin := range []string{MiredoBinary, ServerBinary} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("needs Debian's Miredo (%s missing; apt-get install miredo miredo-server)", bin)
		}
	}
	if _, err := user.Lookup("miredo"); err != nil {
		return "needs the miredo user that Debian's miredo package creates"
	}
	return ""
}

// ServerConfig is a miredo-server.conf for a server on primary and the
// address after it.
func ServerConfig(primary netip.Addr) string {
	return fmt.Sprintf("ServerBindAddress %s\n", primary)
}

// RelayConfig is a miredo.conf for a cone relay bound to bind, with tunnel
// interface ifname.
func RelayConfig(bind netip.Addr, ifname string) string {
	return fmt.Sprintf("RelayType cone\nInterfaceName %s\nBindAddress %s\nPrefix 2001::\n", ifname, bind)
}

// ClientConfig is a miredo.conf for a client of server, with tunnel
// interface ifname.
func ClientConfig(server netip.Addr, ifname string) string {
	return fmt.Sprintf("RelayType client\nInterfaceName %s\nServerAddress %s\n", ifname, server)
}

// Start runs binary (MiredoBinary or ServerBinary) in h with configuration
// conf, as lab process name. The configuration and pid file are written
// beside the log as <name>.conf and <name>.pid.
func Start(ctx context.Context, l *lab.Lab, h *lab.Host, name, binary, conf string) (*lab.Process, error) {
	confPath := filepath.Join(l.LogDir, name+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("refmiredo: %s: %w", name, err)
	}
	pidPath := filepath.Join(l.LogDir, name+".pid")
	_ = os.Remove(pidPath) // Miredo refuses to start over a live-looking pid file
	return l.Start(ctx, h, name, binary, "-f", "-c", confPath, "-p", pidPath)
}

// StartServer runs miredo-server on h's first two IPv4 addresses and waits
// until it listens.
func StartServer(ctx context.Context, l *lab.Lab, h *lab.Host) (*lab.Process, error) {
	p, err := Start(ctx, l, h, "miredo-server", ServerBinary, ServerConfig(h.IPv4()))
	if err != nil {
		return nil, err
	}
	if err := h.WaitUDP(ctx, TeredoPort); err != nil {
		return p, fmt.Errorf("refmiredo: server: %w\n%s", err, p.Tail(10))
	}
	return p, nil
}

// StartRelay runs a cone relay on h's first IPv4 address and waits until its
// tunnel interface is up. The host must forward IPv6 and be the route to
// 2001::/32, as the lab's relay host is.
func StartRelay(ctx context.Context, l *lab.Lab, h *lab.Host) (*lab.Process, error) {
	p, err := Start(ctx, l, h, "miredo-relay", MiredoBinary, RelayConfig(h.IPv4(), DefaultIfname))
	if err != nil {
		return nil, err
	}
	if err := h.WaitLink(ctx, DefaultIfname); err != nil {
		return p, fmt.Errorf("refmiredo: relay: %w\n%s", err, p.Tail(10))
	}
	return p, nil
}

// StartClient runs a client of server on h, named name (so that successive
// clients keep separate logs). It does not wait: see Qualified.
func StartClient(ctx context.Context, l *lab.Lab, h *lab.Host, name string, server netip.Addr) (*lab.Process, error) {
	return Start(ctx, l, h, name, MiredoBinary, ClientConfig(server, DefaultIfname))
}

// Qualified waits until the client on h has qualified with its server: its
// tunnel interface has a Teredo address and the hook has added the default
// route through it (the hook adds the address first, so waiting for the
// address alone races with the route).
func Qualified(ctx context.Context, h *lab.Host) (netip.Addr, error) {
	addr, err := h.WaitAddr(ctx, DefaultIfname, teredoPrefix)
	if err != nil {
		return addr, err
	}
	return addr, h.WaitDefaultRoute(ctx, DefaultIfname)
}

// Decode splits a Teredo address into its server, flags and the client's
// mapped address and port (stored inverted, RFC 4380 section 4).
func Decode(a netip.Addr) (server netip.Addr, flags uint16, mapped netip.AddrPort, err error) {
	if !teredoPrefix.Contains(a) {
		return netip.Addr{}, 0, netip.AddrPort{}, fmt.Errorf("refmiredo: %s is not a Teredo address", a)
	}
	b := a.As16()
	server = netip.AddrFrom4([4]byte(b[4:8]))
	flags = uint16(b[8])<<8 | uint16(b[9])
	port := ^(uint16(b[10])<<8 | uint16(b[11]))
	ip := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
	return server, flags, netip.AddrPortFrom(netip.AddrFrom4(ip), port), nil
}

// Summary is a one-line description of a Teredo address for test logs.
func Summary(a netip.Addr) string {
	server, flags, mapped, err := Decode(a)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s (server %s, flags %#04x, cone %v, mapped %s)", a, server, flags, flags&0x8000 != 0, mapped)
}

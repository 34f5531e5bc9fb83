// SPDX-License-Identifier: MIT

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Host is one namespace of the lab.
type Host struct {
	lab *Lab
	// Name is the host's name in the topology (Server, Client1, ...).
	Name string
	// Netns is the namespace's name, as ip-netns(8) knows it.
	Netns string
	// Ifname is the host's uplink interface (empty for the router).
	Ifname string
	v4, v6 []netip.Addr
}

// NetnsPath is the namespace's file, for setns(2) or nsenter --net=.
func (h *Host) NetnsPath() string { return filepath.Join(netnsDir, h.Netns) }

// IPv4 is the host's first IPv4 address (invalid for IPv6-only hosts). For a
// NAT box it is the first WAN address; see Lab.WAN for the one in use.
func (h *Host) IPv4() netip.Addr { return first(h.v4) }

// IPv6 is the host's first global IPv6 address (invalid for IPv4-only hosts).
func (h *Host) IPv6() netip.Addr { return first(h.v6) }

// IPv4s lists all the host's IPv4 addresses on its uplink.
func (h *Host) IPv4s() []netip.Addr { return append([]netip.Addr(nil), h.v4...) }

func first(a []netip.Addr) netip.Addr {
	if len(a) == 0 {
		return netip.Addr{}
	}
	return a[0]
}

// Command returns a command that runs argv inside the host's namespace (with
// ip netns exec, which execs argv so the process id is argv's own).
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns}, argv...)...)
}

// Run runs argv in the host's namespace and returns its combined output; the
// error carries that output.
func (h *Host) Run(ctx context.Context, argv ...string) ([]byte, error) {
	return run(ctx, "", append([]string{"ip", "netns", "exec", h.Netns}, argv...)...)
}

// RunInput is Run with stdin.
func (h *Host) RunInput(ctx context.Context, stdin string, argv ...string) ([]byte, error) {
	return run(ctx, stdin, append([]string{"ip", "netns", "exec", h.Netns}, argv...)...)
}

// Do runs fn on a dedicated OS thread switched into the host's namespace.
// Sockets fn creates belong to the namespace for their whole life and may be
// used from any goroutine afterwards; goroutines fn starts do not run in the
// namespace.
func (h *Host) Do(fn func() error) error {
	return inNetns(h.NetnsPath(), fn)
}

// ListenUDP opens a UDP socket in the host's namespace. The lab closes it at
// Close if the caller has not (an open socket would keep the namespace alive).
func (h *Host) ListenUDP(laddr netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := h.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listen udp %s: %w", h.Name, laddr, err)
	}
	h.lab.track(c)
	return c, nil
}

// Addrs lists the global addresses on the host's interface ifname.
func (h *Host) Addrs(ifname string) ([]netip.Addr, error) {
	ns, err := netns.GetFromPath(h.NetnsPath())
	if err != nil {
		return nil, fmt.Errorf("%s: open netns: %w", h.Name, err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("%s: netlink: %w", h.Name, err)
	}
	defer nh.Close()
	link, err := nh.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("%s: link %s: %w", h.Name, ifname, err)
	}
	list, err := nh.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("%s: addresses of %s: %w", h.Name, ifname, err)
	}
	var out []netip.Addr
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && ip.Unmap().IsGlobalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// WaitAddr polls every 20 ms until an address in prefix shows up on ifname
// (which may not exist yet), or ctx ends.
func (h *Host) WaitAddr(ctx context.Context, ifname string, prefix netip.Prefix) (netip.Addr, error) {
	var found netip.Addr
	err := poll(ctx, func() (bool, error) {
		addrs, err := h.Addrs(ifname)
		if nf := (netlink.LinkNotFoundError{}); errors.As(err, &nf) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		for _, a := range addrs {
			if prefix.Contains(a) {
				found = a
				return true, nil
			}
		}
		return false, nil
	}, "%s: an address in %s on %s", h.Name, prefix, ifname)
	return found, err
}

// Ping sends one ICMP echo request to dst at a time, each waiting up to a
// second for its reply, until one is answered or ctx ends (at most 30 s),
// with ping(8) in the host's namespace. Errors that end a ping(8) run early
// (no route yet, an ICMP error while a tunnel peer is being set up) are
// retried like timeouts.
func (h *Host) Ping(ctx context.Context, dst netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last []byte
	err := poll(ctx, func() (bool, error) {
		out, err := h.Run(ctx, "ping", "-n", "-q", "-c", "1", "-W", "1", dst.String())
		last = out
		return err == nil, nil
	}, "%s: ping %s", h.Name, dst)
	if err != nil {
		return fmt.Errorf("%w (last attempt: %s)", err, strings.TrimSpace(string(last)))
	}
	return nil
}

// WaitDefaultRoute polls every 20 ms until an IPv6 default route through
// ifname exists, or ctx ends.
func (h *Host) WaitDefaultRoute(ctx context.Context, ifname string) error {
	return poll(ctx, func() (bool, error) {
		out, err := h.Run(ctx, "ip", "-6", "route", "show", "default", "dev", ifname)
		return err == nil && len(bytes.TrimSpace(out)) > 0, nil
	}, "%s: IPv6 default route via %s", h.Name, ifname)
}

// WaitLink polls every 20 ms until interface ifname exists and is up, or ctx
// ends.
func (h *Host) WaitLink(ctx context.Context, ifname string) error {
	return poll(ctx, func() (bool, error) {
		ns, err := netns.GetFromPath(h.NetnsPath())
		if err != nil {
			return false, fmt.Errorf("%s: open netns: %w", h.Name, err)
		}
		defer ns.Close()
		nh, err := netlink.NewHandleAt(ns)
		if err != nil {
			return false, fmt.Errorf("%s: netlink: %w", h.Name, err)
		}
		defer nh.Close()
		link, err := nh.LinkByName(ifname)
		if nf := (netlink.LinkNotFoundError{}); errors.As(err, &nf) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("%s: link %s: %w", h.Name, ifname, err)
		}
		return link.Attrs().Flags&net.FlagUp != 0, nil
	}, "%s: interface %s up", h.Name, ifname)
}

// WaitUDP polls every 20 ms until a UDP socket (IPv4 or IPv6) is bound to
// port in the host's namespace, or ctx ends: a daemon's sign that it listens.
func (h *Host) WaitUDP(ctx context.Context, port uint16) error {
	return poll(ctx, func() (bool, error) {
		var found bool
		err := h.Do(func() error {
			for _, f := range []string{"/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"} {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				if udpTableHasPort(string(b), port) {
					found = true
				}
			}
			return nil
		})
		return found, err
	}, "%s: UDP port %d bound", h.Name, port)
}

// udpTableHasPort reads /proc/net/udp{,6}, whose second column is the local
// address as HEXADDR:HEXPORT.
func udpTableHasPort(table string, port uint16) bool {
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasSuffix(f[1], suffix) {
			return true
		}
	}
	return false
}

// poll calls cond every 20 ms until it reports true or an error, or ctx ends;
// what names the awaited condition in the timeout error.
func poll(ctx context.Context, cond func() (bool, error), what string, args ...any) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for "+what+": %w", append(args, ctx.Err())...)
		case <-tick.C:
		}
	}
}

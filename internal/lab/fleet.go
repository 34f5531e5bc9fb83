// SPDX-License-Identifier: MIT

package lab

// A fleet lab (Options.Fleet) is the scale-out topology of
// docs/anycast-relays.md on top of the usual one:
//
//	native 2001:db8:2::2 (and 2001:db8:2::10-1f, sources for many flows)
//	   |
//	router: BIRD learns 2001::/32 from the relays by BGP (with BFD) and
//	   |    routes it over every relay that announces it (ECMP, hashed on
//	   |    source and destination address only); no static route
//	   +-- relay   192.0.2.20 2001:db8:1::2  BIRD + a relay
//	   +-- relay2  192.0.2.21 2001:db8:1::3  BIRD + a relay
//	   +-- server  192.0.2.10/.11            a server pair
//	   +-- server2 192.0.2.12/.13            another server pair
//	   +-- dns     192.0.2.53                dnsmasq: teredo.example.net is
//	   |                                     192.0.2.10 and 192.0.2.12
//	   +-- nat1, nat2, pub, inet1, inet2 and the clients, as always
//
// The BIRD and dnsmasq configurations are the checked-in ones of
// packaging/anycast, included after the lab's own values, as an operator
// does. Hosts resolve through dns only in the programs started with
// Resolving: nothing is written outside the lab.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miredo-go/miredo/packaging/anycast"
)

// Fleet hosts, present when Options.Fleet is set.
const (
	Relay2  = "relay2"  // 192.0.2.21, 2001:db8:1::3
	Server2 = "server2" // 192.0.2.12 and 192.0.2.13, 2001:db8:1::12
	DNS     = "dns"     // 192.0.2.53: dnsmasq for the server pool's name
)

// Fleet BGP: the relays' AS and the router's, and where relays peer from.
const (
	RelayAS    = 65001
	UpstreamAS = 65000
)

var relayRange = pfx("2001:db8:1::/64")

// nativeFlows is how many extra addresses the fleet's native host has, as
// sources of distinct flows for the router's multipath hash.
const nativeFlows = 16

// fleetSpecs is the usual topology plus the fleet's hosts.
func fleetSpecs() []hostSpec {
	specs := hostSpecs()
	for i := range specs {
		switch specs[i].name {
		case Router:
			// Multipath by source and destination address only (policy 3,
			// fields 0x3): one native host and one Teredo client always
			// meet on one relay, whatever the flow label or ports.
			specs[i].sysctl = map[string]string{
				"net/ipv6/fib_multipath_hash_policy": "3",
				"net/ipv6/fib_multipath_hash_fields": "0x0003",
			}
		case Native:
			for k := range nativeFlows {
				specs[i].v6 = append(specs[i].v6, pfx(fmt.Sprintf("2001:db8:2::%x/64", 0x10+k)))
			}
		}
	}
	return append(specs,
		hostSpec{name: Relay2, ifname: "eth0", bridged: true, upstream: Router, fwd6: true,
			v4: []netip.Prefix{pfx("192.0.2.21/24")},
			v6: []netip.Prefix{pfx("2001:db8:1::3/64")}, gw4: ixGW4, gw6: ixGW6},
		hostSpec{name: Server2, ifname: "eth0", bridged: true, upstream: Router,
			v4: []netip.Prefix{pfx("192.0.2.12/24"), pfx("192.0.2.13/24")},
			v6: []netip.Prefix{pfx("2001:db8:1::12/64")}, gw4: ixGW4, gw6: ixGW6},
		hostSpec{name: DNS, ifname: "eth0", bridged: true, upstream: Router,
			v4: []netip.Prefix{pfx("192.0.2.53/24")}, gw4: ixGW4},
	)
}

// IPv6s lists all the host's IPv6 addresses on its uplink.
func (h *Host) IPv6s() []netip.Addr { return append([]netip.Addr(nil), h.v6...) }

// BIRD is a BIRD daemon the lab runs in a host.
type BIRD struct {
	*Process
	// Socket is its control socket, for birdc -s.
	Socket string
}

// StartRelayBIRD runs BIRD on a fleet relay host with the checked-in relay
// configuration: it announces 2001::/32 to the router while the relay's
// announce interface is up.
func (l *Lab) StartRelayBIRD(ctx context.Context, h *Host) (*BIRD, error) {
	return l.startBIRD(ctx, h, anycast.RelayBIRD, fmt.Sprintf(
		"define UPSTREAM_ADDR = %s;\ndefine UPSTREAM_AS = %d;\ndefine RELAY_AS = %d;\n", ixGW6, UpstreamAS, RelayAS))
}

// StartRouterBIRD runs BIRD on the fleet's router with the checked-in
// upstream configuration: any relay on the bridge may peer, and 2001::/32
// goes over all that announce it.
func (l *Lab) StartRouterBIRD(ctx context.Context) (*BIRD, error) {
	return l.startBIRD(ctx, l.Host(Router), anycast.UpstreamBIRD, fmt.Sprintf(
		"define RELAY_RANGE = %s;\ndefine RELAY_AS = %d;\ndefine UPSTREAM_AS = %d;\n", relayRange, RelayAS, UpstreamAS))
}

// startBIRD writes the checked-in file and a main file with the defines
// that includes it, runs bird in the foreground and waits for its socket.
func (l *Lab) startBIRD(ctx context.Context, h *Host, file, defines string) (*BIRD, error) {
	dir := filepath.Join(l.LogDir, "bird-"+h.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: bird: %w", err)
	}
	text, err := anycast.File(file)
	if err != nil {
		return nil, fmt.Errorf("lab: bird: %w", err)
	}
	inc := filepath.Join(dir, file)
	main := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(inc, text, 0o644); err != nil {
		return nil, fmt.Errorf("lab: bird: %w", err)
	}
	if err := os.WriteFile(main, fmt.Appendf(nil, "%sinclude %q;\n", defines, inc), 0o644); err != nil {
		return nil, fmt.Errorf("lab: bird: %w", err)
	}
	b := &BIRD{Socket: filepath.Join(dir, "bird.ctl")}
	b.Process, err = l.Start(ctx, h, "bird-"+h.Name, "bird", "-f", "-c", main, "-s", b.Socket, "-P", filepath.Join(dir, "bird.pid"))
	if err != nil {
		return nil, err
	}
	err = poll(ctx, func() (bool, error) {
		if b.Err() != nil {
			return false, fmt.Errorf("bird exited: %v\n%s", b.Err(), b.Tail(10))
		}
		_, err := b.Show(ctx, "show status")
		return err == nil, nil
	}, "%s: bird's control socket", h.Name)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Show runs one birdc command and returns its output.
func (b *BIRD) Show(ctx context.Context, command string) (string, error) {
	out, err := run(ctx, "", append([]string{"birdc", "-s", b.Socket}, strings.Fields(command)...)...)
	return string(out), err
}

// TeredoNextHops lists the next hops of the kernel's route to 2001::/32 in
// the host's namespace (the relays the router spreads over), sorted.
func (h *Host) TeredoNextHops(ctx context.Context) ([]netip.Addr, error) {
	out, err := h.Run(ctx, "ip", "-6", "route", "show", teredoPrefix.String())
	if err != nil {
		return nil, err
	}
	var hops []netip.Addr
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "via" && i+1 < len(f) {
			if a, err := netip.ParseAddr(f[i+1]); err == nil {
				hops = append(hops, a)
			}
		}
	}
	return sortedAddrs(hops), nil
}

// WaitTeredoNextHops polls every 20 ms until the route to 2001::/32 in
// the host's namespace goes through exactly want (in any order).
func (h *Host) WaitTeredoNextHops(ctx context.Context, want ...netip.Addr) error {
	want = sortedAddrs(want)
	var last []netip.Addr
	err := poll(ctx, func() (bool, error) {
		got, err := h.TeredoNextHops(ctx)
		if err != nil {
			return false, err
		}
		last = got
		return fmt.Sprint(got) == fmt.Sprint(want), nil
	}, "%s: 2001::/32 via %v", h.Name, want)
	if err != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return nil
}

func sortedAddrs(a []netip.Addr) []netip.Addr {
	out := append([]netip.Addr(nil), a...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Less(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// StartPoolDNS runs dnsmasq on the fleet's dns host with the checked-in
// pool configuration, and waits until it answers on port 53.
func (l *Lab) StartPoolDNS(ctx context.Context) (*Process, error) {
	h := l.Host(DNS)
	text, err := anycast.File(anycast.PoolDNSMasq)
	if err != nil {
		return nil, fmt.Errorf("lab: dnsmasq: %w", err)
	}
	conf := filepath.Join(l.LogDir, anycast.PoolDNSMasq)
	if err := os.WriteFile(conf, text, 0o644); err != nil {
		return nil, fmt.Errorf("lab: dnsmasq: %w", err)
	}
	p, err := l.Start(ctx, h, "dnsmasq", "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-queries",
		"--conf-file="+conf, "--listen-address="+h.IPv4().String(), "--bind-interfaces",
		"--pid-file="+filepath.Join(l.LogDir, "dnsmasq.pid"))
	if err != nil {
		return nil, err
	}
	if err := h.WaitUDP(ctx, 53); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, p.Tail(10))
	}
	return p, nil
}

// Resolving wraps argv so that it resolves host names through nameserver:
// the program runs with a resolv.conf of the lab's bind-mounted over
// /etc/resolv.conf in the private mount namespace that ip netns exec gives
// it (nothing outside the lab changes, and the mount goes with the
// process). Pass the result to Start or Host.Run.
func (l *Lab) Resolving(nameserver netip.Addr, argv ...string) ([]string, error) {
	path := filepath.Join(l.LogDir, "resolv.conf-"+nameserver.String())
	text := fmt.Sprintf("# the lab's resolver\nnameserver %s\noptions timeout:1 attempts:2\n", nameserver)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("lab: resolv.conf: %w", err)
	}
	// sh replaces itself with argv, keeping the process id.
	return append([]string{"sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, path}, argv...), nil
}

// WaitNoLink polls every 20 ms until interface ifname is gone from the
// host, or ctx ends.
func (h *Host) WaitNoLink(ctx context.Context, ifname string) error {
	return poll(ctx, func() (bool, error) {
		_, err := h.Run(ctx, "ip", "link", "show", "dev", ifname)
		return err != nil, nil
	}, "%s: interface %s gone", h.Name, ifname)
}

// BFDUp counts the BFD sessions in state Up.
func (b *BIRD) BFDUp(ctx context.Context) (int, error) {
	out, err := b.Show(ctx, "show bfd sessions")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == "Up" {
			n++
		}
	}
	return n, nil
}

// settle is how long a fleet's BGP sessions may take to come up.
const settle = 30 * time.Second

// WaitBGP waits until the router's BIRD has n BGP sessions established.
func (b *BIRD) WaitBGP(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, settle)
	defer cancel()
	var last string
	err := poll(ctx, func() (bool, error) {
		out, err := b.Show(ctx, "show protocols")
		last = out
		return err == nil && strings.Count(out, "Established") >= n, nil
	}, "%d BGP sessions established", n)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, last)
	}
	return nil
}

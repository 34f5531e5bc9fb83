// SPDX-License-Identifier: MIT

package lab

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
)

// lanHostRE keeps extra host names short enough for an interface name on
// the NAT box (IFNAMSIZ) and clear of the topology's names.
var lanHostRE = regexp.MustCompile(`^x[a-z0-9]{1,8}$`)

// AddLANHost adds a host named name ("x" then up to 8 letters or digits)
// on the LAN of nat (NAT1 or NAT2) with address v4, beyond the topology's
// three clients: for tests that need many clients behind a NAT, such as
// the soak. Its namespace goes with the lab's; the lab's Host and Hosts do
// not list it, so the caller keeps the returned Host.
func (l *Lab) AddLANHost(ctx context.Context, nat, name string, v4 netip.Addr) (*Host, error) {
	if !lanHostRE.MatchString(name) {
		return nil, fmt.Errorf("lab: extra host name %q: want x and 1 to 8 lower-case letters or digits", name)
	}
	st, err := l.natOnly(nat)
	if err != nil {
		return nil, err
	}
	lan := st.spec.lan
	if !lan.Contains(v4) || v4 == lan.Addr() || !v4.Is4() {
		return nil, fmt.Errorf("lab: %s: address %v is not a free host address of %v's LAN %v", name, v4, nat, lan.Masked())
	}
	h := &Host{lab: l, Name: name, Netns: l.ns(name), Ifname: "eth0", v4: []netip.Addr{v4}}
	if _, err := run(ctx, "", "ip", "netns", "add", h.Netns); err != nil {
		return nil, err
	}
	if err := writeSysctls(h.NetnsPath(), hostSpec{}.sysctls()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	natScript := fmt.Sprintf("link add %s type veth peer name eth0 netns %s\nlink set %s master %s\nlink set %s up\n",
		name, h.Netns, name, lanIfname, name)
	if _, err := run(ctx, natScript, "ip", "-n", l.ns(nat), "-batch", "-"); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	hostScript := fmt.Sprintf("link set lo up\naddr add %s/%d dev eth0\nlink set eth0 up\nroute add 0.0.0.0/0 via %s\n",
		v4, lan.Bits(), lan.Addr())
	if _, err := run(ctx, hostScript, "ip", "-n", h.Netns, "-batch", "-"); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return h, nil
}

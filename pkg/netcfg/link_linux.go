// SPDX-License-Identifier: MIT

package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Route is an IPv6 route through the tunnel interface (no gateway: the
// tunnel is point-to-point).
type Route struct {
	Prefix netip.Prefix
	// Metric is the route priority; 0 lets the kernel choose (1024 for
	// IPv6). Miredo's client hook uses 1029 for the default route, its
	// relay 1024 for 2001::/32.
	Metric int
}

func (r Route) String() string {
	if r.Metric == 0 {
		return r.Prefix.String()
	}
	return fmt.Sprintf("%s metric %d", r.Prefix, r.Metric)
}

// Link configures one interface, by name, through a netlink handle. The
// handle decides the network namespace: netlink.NewHandle() for the current
// one, netlink.NewHandleAt(ns) for another. Each call looks the interface up
// again, so a Link survives the interface being recreated.
type Link struct {
	h    *netlink.Handle
	name string
}

// NewLink returns a Link for the interface called name, reached through h.
// It does not check that the interface exists.
func NewLink(h *netlink.Handle, name string) (*Link, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("netcfg: nil netlink handle")
	}
	return &Link{h: h, name: name}, nil
}

// Name is the interface name the Link configures.
func (l *Link) Name() string { return l.name }

func (l *Link) link() (netlink.Link, error) {
	nl, err := l.h.LinkByName(l.name)
	if err != nil {
		return nil, classifyNetlinkError("ip link show dev "+l.name, err)
	}
	return nl, nil
}

// Index is the interface index (the client hook's IFINDEX).
//
// Equivalent to: ip link show dev NAME
func (l *Link) Index() (int, error) {
	nl, err := l.link()
	if err != nil {
		return 0, err
	}
	return nl.Attrs().Index, nil
}

// SetMTU sets the interface MTU. MTUs outside [MinMTU, MaxMTU] are refused
// before any syscall.
//
// Equivalent to: ip link set dev NAME mtu MTU
func (l *Link) SetMTU(mtu int) error {
	if err := validateMTU(mtu); err != nil {
		return err
	}
	nl, err := l.link()
	if err != nil {
		return err
	}
	if err := l.h.LinkSetMTU(nl, mtu); err != nil {
		return classifyNetlinkError(fmt.Sprintf("ip link set dev %s mtu %d", l.name, mtu), err)
	}
	return nil
}

// SetUp brings the interface up.
//
// Equivalent to: ip link set dev NAME up
func (l *Link) SetUp() error {
	nl, err := l.link()
	if err != nil {
		return err
	}
	if err := l.h.LinkSetUp(nl); err != nil {
		return classifyNetlinkError("ip link set dev "+l.name+" up", err)
	}
	return nil
}

// SetDown takes the interface down.
//
// Equivalent to: ip link set dev NAME down
func (l *Link) SetDown() error {
	nl, err := l.link()
	if err != nil {
		return err
	}
	if err := l.h.LinkSetDown(nl); err != nil {
		return classifyNetlinkError("ip link set dev "+l.name+" down", err)
	}
	return nil
}

// AddAddr adds an IPv6 address with its prefix length, without duplicate
// address detection: with DAD the address would stay "tentative" for a
// second or more and could not be used as a source, and on a point-to-point
// Teredo tunnel there is nobody to collide with. Adding an address that is
// already there fails with an error that matches os.ErrExist.
//
// Equivalent to: ip -6 addr add PREFIX dev NAME nodad
func (l *Link) AddAddr(p netip.Prefix) error {
	ipnet, err := toIPNet(p)
	if err != nil {
		return err
	}
	nl, err := l.link()
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: ipnet, Flags: unix.IFA_F_NODAD}
	if err := l.h.AddrAdd(nl, addr); err != nil {
		return classifyNetlinkError(fmt.Sprintf("ip -6 addr add %s dev %s nodad", p, l.name), err)
	}
	return nil
}

// DelAddr removes an IPv6 address; the prefix length must match the one it
// was added with.
//
// Equivalent to: ip -6 addr del PREFIX dev NAME
func (l *Link) DelAddr(p netip.Prefix) error {
	ipnet, err := toIPNet(p)
	if err != nil {
		return err
	}
	nl, err := l.link()
	if err != nil {
		return err
	}
	if err := l.h.AddrDel(nl, &netlink.Addr{IPNet: ipnet}); err != nil {
		return classifyNetlinkError(fmt.Sprintf("ip -6 addr del %s dev %s", p, l.name), err)
	}
	return nil
}

// Addrs lists the interface's IPv6 addresses, link-local ones included.
//
// Equivalent to: ip -6 addr show dev NAME
func (l *Link) Addrs() ([]netip.Prefix, error) {
	nl, err := l.link()
	if err != nil {
		return nil, err
	}
	addrs, err := l.addrs(nl)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if p, ok := fromIPNet(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (l *Link) addrs(nl netlink.Link) ([]netlink.Addr, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) {
		return l.h.AddrList(nl, netlink.FAMILY_V6)
	})
	if err != nil {
		return nil, classifyNetlinkError("ip -6 addr show dev "+l.name, err)
	}
	return addrs, nil
}

// AddRoute adds an IPv6 route through the interface. Adding a route that is
// already there (same prefix and metric) fails with an error that matches
// os.ErrExist.
//
// Equivalent to: ip -6 route add PREFIX dev NAME metric METRIC
func (l *Link) AddRoute(r Route) error {
	rt, err := l.route(r)
	if err != nil {
		return err
	}
	if err := l.h.RouteAdd(rt); err != nil {
		return classifyNetlinkError(fmt.Sprintf("ip -6 route add %s dev %s", r, l.name), err)
	}
	return nil
}

// DelRoute removes an IPv6 route through the interface. With Metric 0 the
// kernel removes the first route to Prefix whatever its metric.
//
// Equivalent to: ip -6 route del PREFIX dev NAME metric METRIC
func (l *Link) DelRoute(r Route) error {
	rt, err := l.route(r)
	if err != nil {
		return err
	}
	if err := l.h.RouteDel(rt); err != nil {
		return classifyNetlinkError(fmt.Sprintf("ip -6 route del %s dev %s", r, l.name), err)
	}
	return nil
}

func (l *Link) route(r Route) (*netlink.Route, error) {
	dst, err := toIPNet(r.Prefix)
	if err != nil {
		return nil, err
	}
	if r.Metric < 0 {
		return nil, fmt.Errorf("netcfg: route %s: negative metric", r.Prefix)
	}
	nl, err := l.link()
	if err != nil {
		return nil, err
	}
	return &netlink.Route{
		LinkIndex: nl.Attrs().Index,
		Dst:       dst,
		Priority:  r.Metric,
		Family:    netlink.FAMILY_V6,
	}, nil
}

// Routes lists the IPv6 routes of the main table through the interface,
// including those the kernel derives from addresses (proto kernel).
//
// Equivalent to: ip -6 route show dev NAME
func (l *Link) Routes() ([]Route, error) {
	nl, err := l.link()
	if err != nil {
		return nil, err
	}
	routes, err := l.routes(nl)
	if err != nil {
		return nil, err
	}
	out := make([]Route, 0, len(routes))
	for _, r := range routes {
		out = append(out, toRoute(r))
	}
	return out, nil
}

func (l *Link) routes(nl netlink.Link) ([]netlink.Route, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return l.h.RouteListFiltered(netlink.FAMILY_V6,
			&netlink.Route{LinkIndex: nl.Attrs().Index}, netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return nil, classifyNetlinkError("ip -6 route show dev "+l.name, err)
	}
	return routes, nil
}

// Cleaned reports what CleanStart removed.
type Cleaned struct {
	Addrs  []netip.Prefix
	Routes []Route
}

// CleanStart removes the IPv6 routes and addresses that a crashed run left
// on the interface, so the daemon starts from a known state: every IPv6
// route through it except those the kernel derives from addresses (they go
// with the addresses), then every IPv6 address, link-local included, as
// Miredo's client hook does. The link's state and MTU are left alone.
// It removes what it can and returns the first error with the rest.
//
// Equivalent to: ip -6 route flush dev NAME; ip -6 addr flush dev NAME
func (l *Link) CleanStart() (Cleaned, error) {
	var done Cleaned
	nl, err := l.link()
	if err != nil {
		return done, err
	}
	var errs []error
	routes, err := l.routes(nl)
	errs = append(errs, err)
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		if err := l.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, classifyNetlinkError(fmt.Sprintf("ip -6 route del %s dev %s", toRoute(r), l.name), err))
			continue
		}
		done.Routes = append(done.Routes, toRoute(r))
	}
	addrs, err := l.addrs(nl)
	errs = append(errs, err)
	for _, a := range addrs {
		p, _ := fromIPNet(a.IPNet)
		if err := l.h.AddrDel(nl, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, classifyNetlinkError(fmt.Sprintf("ip -6 addr del %s dev %s", p, l.name), err))
			continue
		}
		done.Addrs = append(done.Addrs, p)
	}
	return done, errors.Join(errs...)
}

// DeleteStaleLink deletes a TUN or TAP interface called name that no
// process holds any more (a persistent one, typically left by 'ip tuntap
// add' or a crashed daemon that set persist), and reports whether there was
// one. It works in the network namespace ns, or in the calling thread's own
// if ns is netns.None(). It refuses, with ErrNameTaken, to touch an
// interface that is not TUN/TAP or that a process still has open: that one
// belongs to a running daemon, not to a crashed one.
//
// Equivalent to: ip link del dev NAME (after checking nobody holds it)
func DeleteStaleLink(ns netns.NsHandle, name string) (bool, error) {
	if err := ValidateName(name); err != nil {
		return false, err
	}
	if !ns.IsOpen() {
		return deleteStaleLink(name)
	}
	var deleted bool
	err := RunInNetNS(ns, func() error {
		var err error
		deleted, err = deleteStaleLink(name)
		return err
	})
	return deleted, err
}

// deleteStaleLink works in the calling thread's namespace. Whether a
// process holds a single-queue TUN is not visible through netlink, so it
// asks the driver: it attaches to the device itself, which fails with EBUSY
// when another file descriptor is attached. Once attached, clearing the
// persist flag makes the device go away when the descriptor closes.
func deleteStaleLink(name string) (bool, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return false, fmt.Errorf("netcfg: netlink socket: %w", err)
	}
	defer h.Close()
	nl, err := h.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return false, nil
	}
	if err != nil {
		return false, classifyNetlinkError("ip link show dev "+name, err)
	}
	tun, ok := nl.(*netlink.Tuntap)
	if !ok {
		return false, fmt.Errorf("netcfg: delete stale %s: %w (it is a %s device, not TUN/TAP: not touching it)", name, ErrNameTaken, nl.Type())
	}
	if tun.Queues > 0 { // reported for multi-queue devices only
		return false, fmt.Errorf("netcfg: delete stale %s: %w (a process still has it open)", name, ErrNameTaken)
	}

	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, ClassifyCreateError(name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, fmt.Errorf("netcfg: %w: %w", ErrInvalidName, err)
	}
	ifr.SetUint16(uint16(tun.Mode) | unix.IFF_NO_PI | uint16(tun.Flags&netlink.TUNTAP_MULTI_QUEUE))
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return false, fmt.Errorf("netcfg: delete stale %s: %w (a process still has it open)", name, ErrNameTaken)
		}
		return false, ClassifyCreateError(name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0); err != nil {
		return false, fmt.Errorf("netcfg: clear persist flag of %s: %w", name, err)
	}
	return true, nil // the deferred close removes the device
}

// maxDumpTries bounds retries of a netlink dump that a concurrent change
// interrupted (NLM_F_DUMP_INTR); such a dump may be inconsistent.
const maxDumpTries = 5

func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range maxDumpTries {
		var out []T
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, fmt.Errorf("dump interrupted %d times in a row: %w", maxDumpTries, err)
}

// toIPNet converts an IPv6 prefix for netlink, refusing IPv4 and
// IPv4-mapped prefixes: the tunnel carries IPv6 only.
func toIPNet(p netip.Prefix) (*net.IPNet, error) {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() {
		return nil, fmt.Errorf("netcfg: %w: %s", ErrInvalidPrefix, p)
	}
	a := p.Addr().As16()
	return &net.IPNet{IP: net.IP(a[:]), Mask: net.CIDRMask(p.Bits(), 128)}, nil
}

func fromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a, bits), true
}

// toRoute reads a kernel route back; a missing destination is the default
// route.
func toRoute(r netlink.Route) Route {
	p, ok := fromIPNet(r.Dst)
	if !ok {
		p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return Route{Prefix: p, Metric: r.Priority}
}

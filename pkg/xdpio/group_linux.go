// SPDX-License-Identifier: MIT

package xdpio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Group is the steering program attached to one interface and the Conns
// (one per receive queue) it steers to. Close detaches the program and
// releases everything.
type Group struct {
	conns    []*Conn
	mode     Mode
	ifname   string
	prog     *ebpf.Program
	xsks     *ebpf.Map
	link     link.Link
	hops     *hopCache
	nl       *netlink.Handle
	kfds     []int // the next Conn's kernel sockets, during Attach
	closeOne sync.Once
	closeErr error
}

// Attach loads the steering program for cfg, opens one Conn per receive
// queue of cfg.Interface and attaches the program, in the driver if it can
// (ModeAuto), else generically. It runs in the caller's network namespace
// and needs privileges (see the package doc); once it returns, the Conns
// need none. Any failure undoes what was done and says why, so the caller
// can fall back to plain sockets.
func Attach(cfg Config) (_ *Group, err error) {
	cfg, err = cfg.check()
	if err != nil {
		return nil, err
	}
	g := &Group{ifname: cfg.Interface}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("xdpio: netlink: %w", err)
	}
	lk, err := g.nl.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("xdpio: interface %q: %w", cfg.Interface, err)
	}
	la := lk.Attrs()
	if len(la.HardwareAddr) != 6 {
		return nil, fmt.Errorf("xdpio: interface %s has no Ethernet address", cfg.Interface)
	}
	if err := checkAddrs(g.nl, lk, cfg.Addrs); err != nil {
		return nil, err
	}
	queues := max(la.NumRxQueues, 1)
	if cfg.Queues > 0 {
		queues = min(queues, cfg.Queues)
	}
	// The first Conn's kernel sockets come first: whatever the program
	// passes from now on finds a socket.
	if err := g.openKernelSockets(cfg); err != nil {
		return nil, err
	}
	g.xsks, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "xdpio_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(max(la.NumRxQueues, queues)),
	})
	if err != nil {
		return nil, fmt.Errorf("xdpio: create XSKMAP (needs CAP_BPF and CAP_NET_ADMIN): %w", err)
	}
	insns, err := steerProgram(cfg.Addrs, cfg.Port, rxFrameMax, g.xsks.FD(), xdpPass, binary.NativeEndian)
	if err != nil {
		return nil, err
	}
	g.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdpio_steer", Type: ebpf.XDP, License: license, Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("xdpio: load XDP program (needs CAP_BPF and CAP_NET_ADMIN): %w", err)
	}
	if g.link, g.mode, err = attach(g.prog, la.Index, cfg.Mode); err != nil {
		return nil, fmt.Errorf("xdpio: attach XDP program to %s: %w", cfg.Interface, err)
	}
	g.hops = newHopCache(g.nl, la.Index, cfg.MaxHops, cfg.HopTTL)
	for q := range queues {
		x, err := openQueue(la.Index, q, cfg.Frames, g.mode == ModeDriver && !cfg.CopyOnly)
		if errors.Is(err, unix.EINVAL) && q > 0 {
			// NumRxQueues counts the queues the device allocated; bind
			// accepts only those in use (veth allocates one per CPU
			// and uses one), and tells by EINVAL.
			break
		}
		if err != nil {
			return nil, err
		}
		if len(g.kfds) == 0 {
			if err := g.openKernelSockets(cfg); err != nil {
				x.close()
				return nil, err
			}
		}
		c, err := newConn(x, cfg.Addrs, cfg.Port, g.kfds, g.hops, [6]byte(la.HardwareAddr), la.MTU, !cfg.NoUDPChecksum)
		if err != nil {
			x.close()
			return nil, err
		}
		g.kfds = nil
		g.conns = append(g.conns, c)
		if err := g.xsks.Update(uint32(q), uint32(x.fd), ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("xdpio: add the socket of queue %d to the XSKMAP: %w", q, err)
		}
	}
	return g, nil
}

// openKernelSockets opens the next Conn's kernel sockets, one per address,
// into g.kfds.
func (g *Group) openKernelSockets(cfg Config) error {
	for _, a := range cfg.Addrs {
		fd, err := openKernelSocket(a, cfg.Port)
		if err != nil {
			return err
		}
		g.kfds = append(g.kfds, fd)
	}
	return nil
}

// license is the program's licence string for the kernel, which only checks
// it to allow GPL-only helpers; bpf_redirect_map is not one.
const license = "MIT"

// attach attaches prog to ifindex as mode asks (ModeAuto: driver, then
// generic) through a BPF link, which the kernel detaches when its last
// descriptor closes, even if the process dies.
func attach(prog *ebpf.Program, ifindex int, mode Mode) (link.Link, Mode, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	}
	switch mode {
	case ModeDriver:
		l, err := try(link.XDPDriverMode)
		return l, ModeDriver, err
	case ModeGeneric:
		l, err := try(link.XDPGenericMode)
		return l, ModeGeneric, err
	}
	l, errDrv := try(link.XDPDriverMode)
	if errDrv == nil {
		return l, ModeDriver, nil
	}
	l, errGen := try(link.XDPGenericMode)
	if errGen == nil {
		return l, ModeGeneric, nil
	}
	return nil, ModeAuto, fmt.Errorf("driver mode: %w; generic mode: %w", errDrv, errGen)
}

// openQueue opens the AF_XDP socket of one queue, in zero-copy mode if
// asked and the driver allows it, else in copy mode. The kernel lets go of
// a closed socket's queue asynchronously (its UMEM is released by a work
// item), so a bind right after another Group closed, or a restart, may find
// the queue busy: that is retried for up to bindRetry.
func openQueue(ifindex, queue, frames int, zeroCopy bool) (*xsk, error) {
	deadline := time.Now().Add(bindRetry)
	for {
		x, err := openQueueOnce(ifindex, queue, frames, zeroCopy)
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return x, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bindRetry bounds how long openQueue waits for a busy queue.
const bindRetry = time.Second

func openQueueOnce(ifindex, queue, frames int, zeroCopy bool) (*xsk, error) {
	cfg := xskConfig{ifindex: ifindex, queue: queue, frames: frames, zeroCopy: zeroCopy}
	if zeroCopy {
		if x, err := openXSK(cfg); err == nil {
			return x, nil
		}
		cfg.zeroCopy = false
	}
	return openXSK(cfg)
}

// checkAddrs makes sure every address is configured on lk: the program sees
// only that interface's frames.
func checkAddrs(nl *netlink.Handle, lk netlink.Link, addrs []netip.Addr) error {
	list, err := nl.AddrList(lk, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("xdpio: addresses of %s: %w", lk.Attrs().Name, err)
	}
	for _, a := range addrs {
		found := false
		for _, l := range list {
			if ip, ok := netip.AddrFromSlice(l.IP); ok && ip.Unmap() == a {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("xdpio: %v is not an address of %s", a, lk.Attrs().Name)
		}
	}
	return nil
}

// check validates c and fills in the defaults.
func (c Config) check() (Config, error) {
	if c.Interface == "" {
		return c, errors.New("xdpio: no interface")
	}
	if len(c.Addrs) == 0 || len(c.Addrs) > maxSteerAddrs {
		return c, fmt.Errorf("xdpio: %d addresses, want 1 to %d", len(c.Addrs), maxSteerAddrs)
	}
	addrs := make([]netip.Addr, len(c.Addrs))
	for i, a := range c.Addrs {
		a = a.Unmap()
		if !a.Is4() {
			return c, fmt.Errorf("xdpio: %v: %w", c.Addrs[i], ErrNotIPv4)
		}
		for _, b := range addrs[:i] {
			if a == b {
				return c, fmt.Errorf("xdpio: %v given twice", a)
			}
		}
		addrs[i] = a
	}
	c.Addrs = addrs
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Frames == 0 {
		c.Frames = defaultFrames
	}
	if c.Frames < 2 || c.Frames&(c.Frames-1) != 0 {
		return c, fmt.Errorf("xdpio: %d UMEM frames: want a power of two ≥ 2", c.Frames)
	}
	if c.HopTTL <= 0 {
		c.HopTTL = defaultHopTTL
	}
	if c.MaxHops <= 0 {
		c.MaxHops = defaultMaxHops
	}
	if c.Mode > ModeGeneric {
		return c, fmt.Errorf("xdpio: unknown mode %d", c.Mode)
	}
	return c, nil
}

// Conns are the Group's Conns, one per receive queue, in queue order.
func (g *Group) Conns() []*Conn { return append([]*Conn(nil), g.conns...) }

// Mode is how the program is attached: ModeDriver or ModeGeneric.
func (g *Group) Mode() Mode { return g.mode }

// Interface is the name of the interface the program is attached to.
func (g *Group) Interface() string { return g.ifname }

// Close detaches the program, then closes every Conn (waking their
// readers), the map, the program and the resolver. It is idempotent.
func (g *Group) Close() error {
	g.closeOne.Do(func() {
		var errs []error
		if g.link != nil {
			errs = append(errs, g.link.Close())
		}
		for _, c := range g.conns {
			errs = append(errs, c.Close())
		}
		for _, fd := range g.kfds {
			errs = append(errs, unix.Close(fd))
		}
		if g.hops != nil {
			g.hops.close()
		}
		if g.prog != nil {
			errs = append(errs, g.prog.Close())
		}
		if g.xsks != nil {
			errs = append(errs, g.xsks.Close())
		}
		if g.nl != nil {
			g.nl.Close()
		}
		if err := errors.Join(errs...); err != nil {
			g.closeErr = fmt.Errorf("xdpio: close %s: %w", g.ifname, err)
		}
	})
	return g.closeErr
}

// SPDX-License-Identifier: MIT

package tundev

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
)

// tunLink is what every backend keeps about its interface besides the
// descriptor: the name, and a netlink socket opened in the device's
// namespace at creation, so MTU works from any thread and after privileges
// are dropped (reading link attributes needs no capability).
type tunLink struct {
	name  string
	index int
	nl    *netlink.Handle

	mu     sync.Mutex // guards nl against Close
	closed atomic.Bool
}

// waterDevice is the Device backed by songgao/water: one packet per Read,
// one write(2) per packet. water opens the TUN with IFF_TUN|IFF_NO_PI, so
// packets are bare IPv6 with no packet-information header.
type waterDevice struct {
	tunLink
	ifce *water.Interface
}

var _ Device = (*waterDevice)(nil)

// CreateTUN creates (or attaches to a persistent) TUN interface called name
// ([netcfg.DefaultName] if empty) in the calling thread's network
// namespace; for a normal process that is the process's namespace. The
// interface is not persistent: it disappears with its addresses and
// routes when the Device is closed or the process exits.
//
// Equivalent to: ip tuntap add dev NAME mode tun (without persist)
func CreateTUN(name string) (Device, error) {
	if name == "" {
		name = netcfg.DefaultName
	}
	if err := netcfg.ValidateName(name); err != nil {
		return nil, err
	}
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		return nil, netcfg.ClassifyCreateError(name, err)
	}
	d := &waterDevice{ifce: ifce, tunLink: tunLink{name: ifce.Name()}}
	if err := d.attachNetlink(); err != nil {
		ifce.Close()
		return nil, err
	}
	return d, nil
}

// attachNetlink opens the device's own netlink socket. It must run on the
// thread that created the TUN, which is in the same namespace.
func (d *tunLink) attachNetlink() error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netcfg: netlink socket for %s: %w", d.name, err)
	}
	l, err := h.LinkByName(d.name)
	if err != nil {
		h.Close()
		return fmt.Errorf("netcfg: look up new TUN %s: %w", d.name, err)
	}
	d.nl, d.index = h, l.Attrs().Index
	return nil
}

// CreateTUNInNetNS is CreateTUN inside the network namespace ns.
// /dev/net/tun puts the interface in the namespace of the thread that opens
// it, so this runs the creation on a dedicated OS thread switched into ns
// (see [netcfg.RunInNetNS]). The returned Device works from any goroutine.
func CreateTUNInNetNS(ns netns.NsHandle, name string) (Device, error) {
	var dev Device
	err := netcfg.RunInNetNS(ns, func() error {
		var err error
		dev, err = CreateTUN(name)
		return err
	})
	if err != nil {
		if dev != nil { // created, but the thread could not switch back
			dev.Close()
		}
		return nil, err
	}
	return dev, nil
}

// Read reads one packet into bufs[0][offset:]; this backend's batch is 1.
func (d *waterDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if offset < 0 || offset >= len(bufs[0]) || len(sizes) == 0 {
		return 0, fmt.Errorf("netcfg: read %s: no room in buffer (len %d, offset %d, %d sizes)", d.name, len(bufs[0]), offset, len(sizes))
	}
	n, err := d.ifce.Read(bufs[0][offset:])
	if err != nil {
		return 0, d.ioError("read", err)
	}
	sizes[0] = n
	return 1, nil
}

// Write writes each packet with its own write(2).
func (d *waterDevice) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if offset < 0 || offset > len(b) {
			return i, fmt.Errorf("netcfg: write %s: offset %d beyond buffer of %d bytes", d.name, offset, len(b))
		}
		if _, err := d.ifce.Write(b[offset:]); err != nil {
			return i, d.ioError("write", err)
		}
	}
	return len(bufs), nil
}

// ioError maps "file already closed" to net.ErrClosed, the error read loops
// test for, and adds the device name.
func (d *tunLink) ioError(op string, err error) error {
	if errors.Is(err, os.ErrClosed) || d.closed.Load() {
		return fmt.Errorf("netcfg: %s %s: %w", op, d.name, net.ErrClosed)
	}
	return fmt.Errorf("netcfg: %s %s: %w", op, d.name, err)
}

// BatchSize is 1: water reads and writes one packet per syscall.
func (d *waterDevice) BatchSize() int { return 1 }

// Name is the kernel's name for the interface.
func (d *tunLink) Name() string { return d.name }

// MTU asks the kernel through the device's own netlink socket.
//
// Equivalent to: ip link show dev NAME
func (d *tunLink) MTU() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return 0, fmt.Errorf("netcfg: MTU of %s: %w", d.name, net.ErrClosed)
	}
	l, err := d.nl.LinkByIndex(d.index)
	if err != nil {
		return 0, fmt.Errorf("netcfg: MTU of %s: %w", d.name, err)
	}
	return l.Attrs().MTU, nil
}

// Close closes the TUN file descriptor, which unblocks a pending Read, and
// the netlink socket.
func (d *waterDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Swap(true) {
		return nil
	}
	d.nl.Close()
	if err := d.ifce.Close(); err != nil {
		return fmt.Errorf("netcfg: close %s: %w", d.name, err)
	}
	return nil
}

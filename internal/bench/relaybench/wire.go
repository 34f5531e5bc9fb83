package main

import (
	"context"
	"fmt"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/internal/lab"
)

// wireEnd is the receiving end of a veth that a daemon sends into: the
// router's bridge port facing the relay host (the relay's datagrams to
// clients and its packets to native IPv6 both leave that way) and nat1's
// LAN side facing the client host (the client's datagrams).
type wireEnd struct{ host, dev string }

var daemonWireEnds = []wireEnd{{lab.Router, lab.Relay}, {lab.NAT1, "lan"}}

// threadWire moves the lab's delivery of what the relay and the client
// send out of their system calls. By default a veth hands a packet to its
// peer's backlog and the sender's system call runs that softirq on the
// spot: the relay's sendmmsg or tunnel write carries the packet through
// the router, the NAT and into the receiver's socket, and is charged for
// all of it. With GRO on, a veth receives through NAPI, and threaded NAPI
// polls in a napi/<dev> kernel thread, so each daemon pays only for its own
// system calls down to its veth. The work is the same and the machine the
// same two cores; only the bill moves (and the delivery is pipelined).
func threadWire(ctx context.Context, l *lab.Lab) error {
	for _, e := range daemonWireEnds {
		h := l.Host(e.host)
		if err := h.Do(func() error { return setGRO(e.dev, true) }); err != nil {
			return fmt.Errorf("%s: GRO on %s: %w", e.host, e.dev, err)
		}
		// ip netns exec mounts the namespace's own sysfs.
		path := filepath.Join("/sys/class/net", e.dev, "threaded")
		if _, err := h.RunInput(ctx, "1\n", "tee", path); err != nil {
			return fmt.Errorf("%s: threaded NAPI on %s: %w", e.host, e.dev, err)
		}
	}
	return nil
}

// ifreqData is struct ifreq with ifr_data, the form SIOCETHTOOL takes.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct{ cmd, data uint32 }

// setGRO is ethtool -K ifname gro on|off, in the calling thread's network
// namespace, with the legacy ETHTOOL_SGRO command (no ethtool(8) needed).
func setGRO(ifname string, on bool) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: unix.ETHTOOL_SGRO}
	if on {
		v.data = 1
	}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return fmt.Errorf("SIOCETHTOOL set GRO: %w", errno)
	}
	return nil
}

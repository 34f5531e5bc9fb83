// SPDX-License-Identifier: MIT

package lab

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offload names an interface offload that SetOffload switches, as
// ethtool -K does.
type Offload uint32

// Offloads benchmarks switch.
const (
	GRO Offload = unix.ETHTOOL_SGRO // ethtool -K dev gro on|off
	TSO Offload = unix.ETHTOOL_STSO // ethtool -K dev tso on|off
)

// SetOffload switches an offload of interface ifname in h on or off, with
// the legacy ethtool ioctl so that ethtool(8) is not needed.
func (h *Host) SetOffload(ifname string, o Offload, on bool) error {
	if err := h.Do(func() error { return setOffload(ifname, uint32(o), on) }); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
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

func setOffload(ifname string, cmd uint32, on bool) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: cmd}
	if on {
		v.data = 1
	}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return fmt.Errorf("SIOCETHTOOL %#x on %s: %w", cmd, ifname, errno)
	}
	return nil
}

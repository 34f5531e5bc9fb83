// SPDX-License-Identifier: MIT

package netcfg

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// DefaultName is the tunnel interface name when the caller gives none; it is
// what Debian's miredo.conf sets with InterfaceName.
const DefaultName = "teredo"

// MTU bounds for the tunnel. IPv6 needs at least 1280 (RFC 8200 §5) and
// Teredo advertises exactly that; Miredo refuses anything outside this range
// too (tun6_setMTU).
const (
	MinMTU = 1280
	MaxMTU = 65535
)

// Sentinel errors. Errors from this package and from tundev wrap one of
// these (test with errors.Is) together with the underlying errno, and say
// what to do.
var (
	// ErrNoTUN: the TUN driver or /dev/net/tun is not available.
	ErrNoTUN = errors.New("TUN device unavailable")
	// ErrPermission: the process lacks CAP_NET_ADMIN (or device access).
	ErrPermission = errors.New("permission denied")
	// ErrNameTaken: an interface of that name exists and cannot be used.
	ErrNameTaken = errors.New("interface name taken")
	// ErrInvalidName: the name is not a valid Linux interface name.
	ErrInvalidName = errors.New("invalid interface name")
	// ErrInvalidMTU: the MTU is outside [MinMTU, MaxMTU].
	ErrInvalidMTU = errors.New("invalid MTU")
	// ErrInvalidPrefix: an address or route prefix that is not IPv6.
	ErrInvalidPrefix = errors.New("invalid IPv6 prefix")
)

// ValidateName applies the kernel's rules for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or
// white space. Checking here gives a clear error instead of EINVAL.
// Exported for tundev, which checks a name before creating the device.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("netcfg: %w: empty", ErrInvalidName)
	case len(name) >= syscall.IFNAMSIZ:
		return fmt.Errorf("netcfg: %w: %q is longer than %d bytes", ErrInvalidName, name, syscall.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("netcfg: %w: %q", ErrInvalidName, name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r"):
		return fmt.Errorf("netcfg: %w: %q contains '/', ':' or white space", ErrInvalidName, name)
	}
	return nil
}

// validateMTU refuses MTUs IPv6 or Teredo cannot use, before any syscall.
func validateMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("netcfg: %w: %d is outside %d..%d (IPv6 needs at least %d)", ErrInvalidMTU, mtu, MinMTU, MaxMTU, MinMTU)
	}
	return nil
}

// ClassifyCreateError turns a failed TUN creation into an error that names
// the cause and the fix. err comes from opening /dev/net/tun or from the
// TUNSETIFF ioctl: tundev's when it creates the device, DeleteStaleLink's
// when it attaches to a leftover.
func ClassifyCreateError(name string, err error) error {
	var kind error
	var hint string
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
		kind = ErrNoTUN
		hint = "/dev/net/tun is missing or has no driver: load it with 'modprobe tun'; in a container, pass the device in (e.g. --device /dev/net/tun)"
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		kind = ErrPermission
		hint = "creating a TUN interface needs CAP_NET_ADMIN: run as root or grant CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN, DeviceAllow=/dev/net/tun rw)"
	case errors.Is(err, syscall.EBUSY):
		kind = ErrNameTaken
		hint = fmt.Sprintf("another process holds interface %q: stop it or choose another interface name", name)
	case errors.Is(err, syscall.EINVAL):
		kind = ErrNameTaken
		hint = fmt.Sprintf("an interface %q exists that is not a compatible TUN device (see 'ip -d link show %s'): remove it or choose another name", name, name)
	default:
		return fmt.Errorf("netcfg: create TUN %q: %w", name, err)
	}
	return fmt.Errorf("netcfg: create TUN %q: %w (%s): %w", name, kind, hint, err)
}

// classifyNetlinkError adds context to a failed netlink request: the ip(8)
// command that does the same, and a hint when the cause is a missing
// capability.
func classifyNetlinkError(cmd string, err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("netcfg: %s: %w (needs CAP_NET_ADMIN: run as root or grant it): %w", cmd, ErrPermission, err)
	}
	return fmt.Errorf("netcfg: %s: %w", cmd, err)
}

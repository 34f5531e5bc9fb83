// SPDX-License-Identifier: MIT

//go:build linux

package udpio

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// setOptions applies opt to a socket before it is bound. Each option says
// why it is there; the ones a Teredo socket cannot do without fail Listen,
// the others are best effort and visible in Stats.
func setOptions(fd int, opt Options) error {
	// Teredo must never send to a broadcast address; without SO_BROADCAST
	// the kernel refuses such sends with EACCES. Go's net package turns it
	// on for every datagram socket (setDefaultSockopts), so turn it off.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 0); err != nil {
		return fmt.Errorf("udpio: SO_BROADCAST=0: %w", err)
	}
	// Teredo datagrams must leave without DF, so that a path whose MTU is
	// below the 1280-byte IPv6 minimum plus encapsulation fragments them
	// instead of dropping them (RFC 4380 §5.1.2; Miredo's teredo_socket
	// does the same). IP_PMTUDISC_DONT also keeps the kernel from learning
	// a path MTU and refusing our sends with EMSGSIZE.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
		return fmt.Errorf("udpio: IP_MTU_DISCOVER=IP_PMTUDISC_DONT: %w", err)
	}
	// Several sockets on one address and port, each read by its own
	// goroutine, so that receiving scales with cores instead of contending
	// on one receive-queue lock. Must be set before bind.
	if opt.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("udpio: SO_REUSEPORT: %w", err)
		}
	}
	// Big buffers absorb bursts (a server answering a flood of router
	// solicitations, a relay behind a fast link) instead of dropping them.
	// The FORCE variants need CAP_NET_ADMIN but are not capped by
	// net.core.{r,w}mem_max; the plain ones are, silently.
	var errs []error
	if opt.RecvBuffer > 0 {
		errs = append(errs, setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, opt.RecvBuffer))
	}
	if opt.SendBuffer > 0 {
		errs = append(errs, setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, opt.SendBuffer))
	}
	return errors.Join(errs...)
}

// setBuffer tries the privileged option, then the plain one.
func setBuffer(fd, force, plain, size int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size); err != nil {
		return fmt.Errorf("udpio: socket buffer of %d bytes: %w", size, err)
	}
	return nil
}

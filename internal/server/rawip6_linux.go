// SPDX-License-Identifier: MIT

package server

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// rawIPv6 sends whole IPv6 packets, headers included, to the native IPv6
// network: the clients' direct connectivity tests (RFC 4380 §5.2.9) leave the
// server with the client's Teredo source address, so the reply goes to the
// nearest relay and not back to us. Opening it needs CAP_NET_RAW; sending on
// it afterwards needs nothing, so the server drops every capability.
type rawIPv6 struct {
	fd   int
	once sync.Once
}

func openRawIPv6() (*rawIPv6, error) {
	// IPPROTO_RAW implies IPV6_HDRINCL on Linux: we supply the header.
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("raw IPv6 socket: %w (needs root or CAP_NET_RAW)", err)
		}
		return nil, fmt.Errorf("raw IPv6 socket: %w", err)
	}
	// Never read from it: a receive filter would only cost memory.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
	return &rawIPv6{fd: fd}, nil
}

// send transmits pkt to its destination. A raw socket reports ICMP errors
// earlier packets caused on a later send; those are retried a few times, as
// they say nothing about this packet.
func (r *rawIPv6) send(pkt []byte, dst netip.Addr) error {
	sa := unix.SockaddrInet6{Addr: dst.As16()}
	var err error
	for range 3 {
		err = unix.Sendto(r.fd, pkt, unix.MSG_DONTWAIT, &sa)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH),
			errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.EINTR):
			continue
		default:
			return fmt.Errorf("raw IPv6 send to %v: %w", dst, err)
		}
	}
	return fmt.Errorf("raw IPv6 send to %v: %w", dst, err)
}

// close closes the socket once; later calls do nothing (the number may
// belong to another descriptor by then).
func (r *rawIPv6) close() (err error) {
	r.once.Do(func() { err = unix.Close(r.fd) })
	return err
}

// SPDX-License-Identifier: MIT

package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Spoofed is one UDP datagram sent with a source address of the sender's
// choosing.
type Spoofed struct {
	From, To netip.AddrPort // IPv4
	Payload  []byte
}

// SendSpoofed sends datagrams from h through a raw IPv4 socket with the
// sources they name, as an attacker who can forge source addresses does.
// The packets only travel inside the lab like any other.
func (h *Host) SendSpoofed(datagrams []Spoofed) error {
	var fd int
	err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: raw socket: %w", h.Name, err)
	}
	defer unix.Close(fd)
	var pkt []byte
	for _, d := range datagrams {
		pkt = appendIPv4UDP(pkt[:0], d.From, d.To, d.Payload)
		sa := unix.SockaddrInet4{Addr: d.To.Addr().As4()}
		for {
			err := unix.Sendto(fd, pkt, 0, &sa)
			if err == unix.ENOBUFS || err == unix.EINTR {
				continue // the queue is full: wait for it rather than lose the datagram
			}
			if err != nil {
				return fmt.Errorf("%s: spoofed send %v -> %v: %w", h.Name, d.From, d.To, err)
			}
			break
		}
	}
	return nil
}

// appendIPv4UDP appends an IPv4 header (no options, DF clear, TTL 64) and a
// UDP header with its checksum, then the payload.
func appendIPv4UDP(b []byte, from, to netip.AddrPort, payload []byte) []byte {
	total := 20 + 8 + len(payload)
	s, d := from.Addr().As4(), to.Addr().As4()
	b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0, 0, 64, unix.IPPROTO_UDP, 0, 0)
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	binary.BigEndian.PutUint16(b[10:], checksum(0, b[:20]))
	u := len(b)
	b = binary.BigEndian.AppendUint16(b, from.Port())
	b = binary.BigEndian.AppendUint16(b, to.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, 0, 0)
	b = append(b, payload...)
	// Pseudo-header: addresses, protocol, UDP length.
	sum := uint32(unix.IPPROTO_UDP) + uint32(8+len(payload))
	for i := 0; i < 4; i += 2 {
		sum += (uint32(s[i])<<8 | uint32(s[i+1])) + (uint32(d[i])<<8 | uint32(d[i+1]))
	}
	c := checksum(sum, b[u:])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[u+6:], c)
	return b
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

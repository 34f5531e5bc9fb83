// SPDX-License-Identifier: MIT

package udpio

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Steer sets which sockets of c's SO_REUSEPORT group the kernel hands
// datagrams to: the first active ones (in the order they were bound, as
// ListenGroup returns them), spread by a hash of the datagram's source
// address and port, so that one peer keeps landing on one socket while
// active stays the same. Without it the kernel spreads over every socket
// of the group. A server keeps the sockets of all its cores open and
// steers to fewer while fewer can do the work: a loop that wakes for half
// the datagrams gathers half the batch, so below saturation one busy loop
// costs less per datagram than two half-busy ones, and at saturation a
// second loop takes a second core's share.
//
// It attaches a classic BPF program to the group (SO_ATTACH_REUSEPORT_CBPF,
// Linux ≥ 4.5), replacing the one attached before; any socket of the group
// may set it. active is capped at MaxGroup; a program's answer past the
// group's last socket makes the kernel fall back to its own spreading. The
// kernel's order of a group's sockets is the order they were bound in only
// while none has been closed, and it takes in any other socket bound to the
// same address and port by the same user: steer groups that one owner
// opened together and keeps whole.
func Steer(c *Conn, active int) error {
	if active < 1 {
		return fmt.Errorf("udpio: steer %v: need at least 1 socket, got %d", c.local, active)
	}
	prog := steerProgram(min(active, MaxGroup))
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return fmt.Errorf("udpio: steer %v: %w", c.local, c.rcErr(err))
	}
	if serr != nil {
		return fmt.Errorf("udpio: steer %v over %d sockets: %w", c.local, active, os.NewSyscallError("setsockopt SO_ATTACH_REUSEPORT_CBPF", serr))
	}
	return nil
}

// SteerIndex is the socket of a group steered to active sockets that the
// kernel hands src's datagrams to: what the program of Steer computes, for
// callers (and tests) that must predict it.
func SteerIndex(src netip.AddrPort, active int) int {
	if active <= 1 {
		return 0
	}
	a := src.Addr().Unmap().As4()
	return int((uint64(binary.BigEndian.Uint32(a[:])) + uint64(src.Port())) % uint64(min(active, MaxGroup)))
}

// steerProgram returns a socket index below active: 0 for one socket,
// else (source address + source port) mod active. The program runs with
// the packet's data at the UDP payload; SKF_NET_OFF reaches back to the
// IPv4 header (the port's offset assumes no IP options: with options it
// reads other bytes, which still give an index below active).
func steerProgram(active int) []unix.SockFilter {
	if active == 1 {
		return []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	}
	const net = 0xfff00000 // SKF_NET_OFF, as the uint32 a load's offset is
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: net + 12}, // A = source address
		{Code: unix.BPF_MISC | unix.BPF_TAX},                         // X = A
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: net + 20}, // A = source port
		{Code: unix.BPF_ALU | unix.BPF_ADD | unix.BPF_X},             // A += X
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(active)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
}

// SPDX-License-Identifier: MIT

//go:build !linux

package udpio

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
)

// MaxGroup is 1 off Linux: elsewhere SO_REUSEPORT either does not spread
// datagrams over the sockets or is spelt differently.
const MaxGroup = 1

// errNoReusePort is returned for Options.ReusePort off Linux.
var errNoReusePort = errors.New("SO_REUSEPORT load balancing needs Linux")

// Conn is an IPv4 UDP socket. Off Linux it is a thin wrapper that moves one
// datagram per system call, does not report truncation or kernel drops, and
// leaves the DF bit and SO_BROADCAST (which Go's net package turns on) as
// they are; it exists so that the tree builds and its portable tests run on
// a developer's laptop.
type Conn struct {
	uc     *net.UDPConn
	local  netip.AddrPort
	stats  counters
	closed atomic.Bool
}

// Listen opens an IPv4 UDP socket bound to addr (port 0 picks an ephemeral
// port).
func Listen(addr netip.AddrPort, opt Options) (*Conn, error) {
	addr, err := checkListenAddr(addr)
	if err != nil {
		return nil, err
	}
	if opt.ReusePort {
		return nil, fmt.Errorf("udpio: listen on %v: %w", addr, errNoReusePort)
	}
	uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("udpio: listen on %v: %w", addr, err)
	}
	if opt.RecvBuffer > 0 {
		_ = uc.SetReadBuffer(opt.RecvBuffer) // best effort, as on Linux
	}
	if opt.SendBuffer > 0 {
		_ = uc.SetWriteBuffer(opt.SendBuffer)
	}
	la := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	return &Conn{uc: uc, local: netip.AddrPortFrom(la.Addr().Unmap(), la.Port())}, nil
}

// LocalAddr is the address the socket is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Close closes the socket; calls after the first return nil.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if err := c.uc.Close(); err != nil {
		return fmt.Errorf("udpio: close %v: %w", c.local, err)
	}
	return nil
}

// Stats returns the socket's counters.
func (c *Conn) Stats() Stats { return c.stats.snapshot() }

// ReadBatch blocks until a datagram arrives and reads it into msgs[0].
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	n, from, err := c.uc.ReadFromUDPAddrPort(msgs[0].Buf)
	if err != nil {
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, err)
	}
	msgs[0].N, msgs[0].Truncated = n, false
	msgs[0].Addr = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	c.stats.readCalls.Add(1)
	c.stats.readDatagrams.Add(1)
	return 1, nil
}

// WriteBatch sends each message in turn, with the same contract as on Linux.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	sent := 0
	var first error
	for i := range msgs {
		b, dst, err := sendable(&msgs[i])
		if err == nil {
			_, err = c.uc.WriteToUDPAddrPort(b, dst)
			if errors.Is(err, net.ErrClosed) {
				return sent, fmt.Errorf("udpio: write on %v: %w", c.local, err)
			}
			if err != nil {
				err = fmt.Errorf("udpio: send to %v: %w", dst, err)
			}
		}
		if err != nil {
			c.stats.writeErrors.Add(1)
			if first == nil {
				first = err
			}
			continue
		}
		c.stats.writeCalls.Add(1)
		c.stats.writeDatagrams.Add(1)
		sent++
	}
	return sent, first
}

// ReadEach reads batches into msgs and passes each to handle until handle
// or a read fails, returning that error (see the Linux version; here it is
// ReadBatch in a loop).
func (c *Conn) ReadEach(msgs []Message, handle func(n int) error) error {
	return readEachBatch(c.ReadBatch, msgs, handle)
}

// Steer is a no-op for one socket off Linux, where a group has no more.
func Steer(c *Conn, active int) error {
	if active != 1 {
		return fmt.Errorf("udpio: steer %v over %d sockets: %w", c.local, active, errNoReusePort)
	}
	return nil
}

// SPDX-License-Identifier: MIT

// Package fakeio has the Teredo socket and the tunnel device as
// programmable fakes, for tests of the daemons' loops: reads do what a test
// says (by default they block until Close, as a quiet socket does), writes
// are recorded. Only tests import it.
package fakeio

import (
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// Conn is a fake udpio.PacketConn.
type Conn struct {
	// ReadFunc, if set, answers each ReadBatch until Close; nil blocks
	// until Close.
	ReadFunc func(msgs []udpio.Message) (int, error)
	// WriteErr, if set, fails every WriteBatch (nothing is sent).
	WriteErr error
	// OnWrite, if set, sees each datagram as it is sent, before WriteBatch
	// returns: a fast network's answer.
	OnWrite func(udpio.Message)
	// Local is LocalAddr's answer.
	Local netip.AddrPort

	mu     sync.Mutex
	reads  int
	sent   []udpio.Message
	closed chan struct{}
	once   sync.Once
}

var _ udpio.PacketConn = (*Conn)(nil)

// NewConn returns a Conn whose reads block until Close.
func NewConn() *Conn {
	return &Conn{Local: netip.MustParseAddrPort("10.0.0.2:40000"), closed: make(chan struct{})}
}

// ReadBatch implements udpio.PacketConn.
func (c *Conn) ReadBatch(msgs []udpio.Message) (int, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if c.ReadFunc != nil {
		return c.ReadFunc(msgs)
	}
	<-c.closed
	return 0, net.ErrClosed
}

// WriteBatch implements udpio.PacketConn: it records copies of msgs.
func (c *Conn) WriteBatch(msgs []udpio.Message) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if c.WriteErr != nil {
		return 0, c.WriteErr
	}
	c.mu.Lock()
	for _, m := range msgs {
		c.sent = append(c.sent, udpio.Message{Buf: append([]byte(nil), m.Buf[:m.N]...), N: m.N, Addr: m.Addr})
	}
	c.mu.Unlock()
	if c.OnWrite != nil {
		for _, m := range msgs {
			c.OnWrite(m)
		}
	}
	return len(msgs), nil
}

// LocalAddr implements udpio.PacketConn.
func (c *Conn) LocalAddr() netip.AddrPort { return c.Local }

// Close implements udpio.PacketConn; it is idempotent.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Reads is how many times ReadBatch was called.
func (c *Conn) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// Sent returns copies of the datagrams sent so far.
func (c *Conn) Sent() []udpio.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]udpio.Message(nil), c.sent...)
}

// Dev is a fake tunnel device (tundev.Device).
type Dev struct {
	// ReadFunc, if set, answers each Read until Close; nil blocks until
	// Close.
	ReadFunc func(bufs [][]byte, sizes []int, offset int) (int, error)
	// Refuse, if set, says which packets the device refuses (EINVAL),
	// as a kernel refuses one with no route back.
	Refuse func(pkt []byte) bool

	mu      sync.Mutex
	reads   int
	written [][]byte
	closed  chan struct{}
	once    sync.Once
}

// NewDev returns a Dev whose reads block until Close.
func NewDev() *Dev { return &Dev{closed: make(chan struct{})} }

// Read implements tundev.Device.
func (d *Dev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.mu.Lock()
	d.reads++
	d.mu.Unlock()
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	default:
	}
	if d.ReadFunc != nil {
		return d.ReadFunc(bufs, sizes, offset)
	}
	<-d.closed
	return 0, net.ErrClosed
}

// Write implements tundev.Device: it records copies of the packets, up to
// the first one Refuse refuses.
func (d *Dev) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	default:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, b := range bufs {
		if d.Refuse != nil && d.Refuse(b[offset:]) {
			return i, syscall.EINVAL
		}
		d.written = append(d.written, append([]byte(nil), b[offset:]...))
	}
	return len(bufs), nil
}

// BatchSize implements tundev.Device.
func (d *Dev) BatchSize() int { return 1 }

// MTU implements tundev.Device.
func (d *Dev) MTU() (int, error) { return 1280, nil }

// Name implements tundev.Device.
func (d *Dev) Name() string { return "teredo" }

// Close implements tundev.Device; it is idempotent.
func (d *Dev) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

// Reads is how many times Read was called.
func (d *Dev) Reads() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reads
}

// Written returns copies of the packets written so far.
func (d *Dev) Written() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.written...)
}

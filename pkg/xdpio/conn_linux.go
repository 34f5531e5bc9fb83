// SPDX-License-Identifier: MIT

package xdpio

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is one receive queue's AF_XDP socket, plus a kernel UDP socket on each
// steered address (port Config.Port, SO_REUSEPORT across the Conns of a
// Group) for what the program passes to the kernel and for sending where the
// next hop is unknown. Create Conns with Attach.
//
// ReadBatch waits on an epoll set of all of the Conn's sockets, which Go's
// netpoller watches, so a blocked read parks its goroutine, not a thread,
// and Close wakes it.
type Conn struct {
	x     *xsk
	addrs []netip.Addr // steered addresses; kfds[i] is bound to addrs[i]
	port  uint16
	kfds  []int
	ep    *os.File // the epoll set, registered with the netpoller
	rc    syscall.RawConn
	hops  *hopCache
	// maxFrame is the longest frame WriteBatch sends through the ring:
	// what a UMEM frame and the link MTU both allow.
	maxFrame int

	rdMu sync.Mutex
	// The in/out values of one readFn callback, bound once so that
	// ReadBatch allocates nothing.
	rdMsgs  []Message
	rdN     int
	rdTurns uint32
	readFn  func(fd uintptr) bool
	rdName  unix.RawSockaddrInet4
	rdNameN uint32

	wrMu   sync.Mutex
	hdr    frameHeader
	wrName unix.RawSockaddrInet4
	// wrHops holds one chunk's next-hop lookups, taken under one lock.
	wrHops [MaxBatch]struct {
		mac [6]byte
		ok  bool
	}

	stats  counters
	closed atomic.Bool
	// closeMu keeps Close from closing the descriptors under Stats, which
	// must not wait for rdMu (held by a parked ReadBatch).
	closeMu sync.RWMutex
}

// kernelEvery: while the ring keeps ReadBatch busy, the kernel sockets are
// still read on every kernelEvery-th call, so what the program passes is
// not starved by what it steers.
const kernelEvery = 16

// counters are the live form of Stats.
type counters struct {
	readCalls, readDatagrams, kernelReads, truncated atomic.Uint64
	rxDropped                                        [NumRXDrops]atomic.Uint64
	writeDatagrams, txFrames, txKicks                atomic.Uint64
	kernelNoHop, kernelTooLong, kernelRingFull       atomic.Uint64
	writeErrors                                      atomic.Uint64
}

// openKernelSocket opens a non-blocking UDP socket bound to addr:port with
// SO_REUSEPORT, so each Conn of a Group has one per address.
func openKernelSocket(addr netip.Addr, port uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("xdpio: UDP socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("xdpio: SO_REUSEPORT: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.As4(), Port: int(port)}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("xdpio: bind UDP socket to %v: %w", netip.AddrPortFrom(addr, port), err)
	}
	return fd, nil
}

// newConn wraps x and the kernel sockets kfds (one per address) into a Conn.
// On error it closes nothing: the caller owns x and kfds until it succeeds.
func newConn(x *xsk, addrs []netip.Addr, port uint16, kfds []int, hops *hopCache, srcMAC [6]byte, mtu int, udpChecksum bool) (*Conn, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("xdpio: epoll: %w", err)
	}
	for _, fd := range append([]int{x.fd}, kfds...) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(epfd)
			return nil, fmt.Errorf("xdpio: epoll add: %w", err)
		}
	}
	// A non-blocking descriptor makes os.NewFile register it with the
	// netpoller (an epoll set is pollable: readable when a member is).
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("xdpio: epoll: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "xdpio-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("xdpio: epoll: %w", err)
	}
	c := &Conn{
		x: x, addrs: addrs, port: port, kfds: kfds, ep: ep, rc: rc, hops: hops,
		maxFrame: min(frameSize, ethHeaderLen+mtu),
		hdr:      frameHeader{srcMAC: srcMAC, udpChecksum: udpChecksum},
	}
	c.readFn = c.readReady
	return c, nil
}

// Queue is the receive queue the Conn's socket serves.
func (c *Conn) Queue() int { return c.x.queue }

// Addrs are the steered addresses.
func (c *Conn) Addrs() []netip.Addr { return append([]netip.Addr(nil), c.addrs...) }

// ReadBatch blocks until at least one datagram has arrived, then reads up to
// min(len(msgs), MaxBatch) of them without waiting for more, setting N,
// Addr, Local and Truncated of each; the payload is copied into Buf, so the
// caller owns every buffer as soon as it returns. It returns how many it
// read. Malformed frames are dropped and counted (Stats.RXDropped), never
// returned. After Close it returns an error wrapping net.ErrClosed.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	c.rdMu.Lock()
	defer c.rdMu.Unlock()
	if c.closed.Load() {
		return 0, c.errClosed("read")
	}
	c.rdMsgs, c.rdN = msgs[:min(len(msgs), MaxBatch)], 0
	err := c.rc.Read(c.readFn)
	c.rdMsgs = nil
	if err != nil {
		if c.closed.Load() {
			return 0, c.errClosed("read")
		}
		return 0, fmt.Errorf("xdpio: read on queue %d: %w", c.x.queue, err)
	}
	c.stats.readCalls.Add(1)
	c.stats.readDatagrams.Add(uint64(c.rdN))
	return c.rdN, nil
}

func (c *Conn) errClosed(op string) error {
	return fmt.Errorf("xdpio: %s on queue %d: %w", op, c.x.queue, net.ErrClosed)
}

// readReady is the netpoller callback: false means "nothing yet, wait".
func (c *Conn) readReady(uintptr) bool {
	msgs := c.rdMsgs
	n := c.readRing(msgs)
	c.rdTurns++
	if n < len(msgs) && (n == 0 || c.rdTurns%kernelEvery == 0) {
		n += c.readKernel(msgs[n:])
	}
	if n > 0 {
		c.rdN = n
		return true
	}
	if c.x.fill.needWakeup() {
		c.x.kickFill()
	}
	return false
}

// readRing takes up to len(msgs) frames from the RX ring, hands their
// frames straight back to the fill ring once parsed and copied, and returns
// how many datagrams it stored.
func (c *Conn) readRing(msgs []Message) int {
	x := c.x
	k := min(x.rx.available(), uint32(len(msgs)))
	if k == 0 {
		return 0
	}
	// The fill ring holds every receive frame we do not, so it has room
	// for the k we are about to return; free refreshes our view of it.
	x.fill.free(k)
	n := 0
	var truncated uint64
	for i := range k {
		d := &x.rx.descs[(x.rx.cachedCons+i)&x.rx.mask]
		x.fill.addrs[(x.fill.cachedProd+i)&x.fill.mask] = d.Addr &^ (frameSize - 1)
		if d.Addr+uint64(d.Len) > uint64(len(x.umem)) {
			c.stats.rxDropped[DropShort].Add(1) // the kernel never does this
			continue
		}
		dg, why := parseFrame(x.umem[d.Addr : d.Addr+uint64(d.Len)])
		local := -1
		if why == rxOK {
			if local = c.localIndex(dg.dst.Addr()); local < 0 || dg.dst.Port() != c.port {
				why = DropNotOurs
			}
		}
		if why != rxOK {
			c.stats.rxDropped[why].Add(1)
			continue
		}
		m := &msgs[n]
		n++
		m.N = copy(m.Buf, dg.payload)
		m.Truncated = len(dg.payload) > len(m.Buf)
		if m.Truncated {
			truncated++
		}
		m.Addr = dg.src
		m.Local = c.addrs[local]
	}
	x.rx.release(k)
	x.fill.submit(k)
	if truncated > 0 {
		c.stats.truncated.Add(truncated)
	}
	return n
}

// localIndex returns a's index in c.addrs, or -1.
func (c *Conn) localIndex(a netip.Addr) int {
	for i, l := range c.addrs {
		if l == a {
			return i
		}
	}
	return -1
}

// readKernel reads what is waiting on the kernel sockets, without blocking,
// into msgs.
func (c *Conn) readKernel(msgs []Message) int {
	n := 0
	for i, fd := range c.kfds {
		for n < len(msgs) {
			m := &msgs[n]
			var buf unsafe.Pointer
			if len(m.Buf) > 0 {
				buf = unsafe.Pointer(&m.Buf[0])
			}
			c.rdNameN = unix.SizeofSockaddrInet4
			// MSG_TRUNC: return the datagram's real length. A raw
			// system call, as it never waits (see kickTX).
			r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(buf), uintptr(len(m.Buf)),
				unix.MSG_DONTWAIT|unix.MSG_TRUNC, uintptr(unsafe.Pointer(&c.rdName)), uintptr(unsafe.Pointer(&c.rdNameN)))
			if e == unix.EINTR {
				continue
			}
			if e != 0 {
				break // EAGAIN: empty (any other error: try again next time)
			}
			m.N = min(int(r), len(m.Buf))
			m.Truncated = int(r) > len(m.Buf)
			if m.Truncated {
				c.stats.truncated.Add(1)
			}
			p := (*[2]byte)(unsafe.Pointer(&c.rdName.Port))
			m.Addr = netip.AddrPortFrom(netip.AddrFrom4(c.rdName.Addr), uint16(p[0])<<8|uint16(p[1]))
			m.Local = c.addrs[i]
			n++
		}
	}
	if n > 0 {
		c.stats.kernelReads.Add(uint64(n))
	}
	return n
}

// WriteBatch sends msgs[i].Buf[:N] to msgs[i].Addr from msgs[i].Local, in
// order. A datagram goes out through the TX ring when its next hop is known
// and it fits a frame and the link MTU; otherwise through the kernel socket
// of its local address (which resolves the neighbour, fragments, or routes
// it through another interface as the kernel would), so nothing is dropped
// for want of a next hop. A datagram that cannot be sent (not IPv4, N out
// of range, Local not ours, refused by the kernel) is skipped and counted,
// and the rest still go. It returns how many were sent and the first error.
// It never blocks for long: when the kernel socket's buffer is full, the
// datagram is dropped and counted. After Close it returns net.ErrClosed.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	c.wrMu.Lock()
	defer c.wrMu.Unlock()
	if c.closed.Load() {
		return 0, c.errClosed("write")
	}
	now := time.Now().UnixNano()
	sent := 0
	var first error
	for len(msgs) > 0 {
		k := min(len(msgs), MaxBatch)
		n, err := c.writeChunk(msgs[:k], now)
		sent += n
		if first == nil {
			first = err
		}
		msgs = msgs[k:]
	}
	c.stats.writeDatagrams.Add(uint64(sent))
	return sent, first
}

// writeChunk sends at most MaxBatch messages.
func (c *Conn) writeChunk(msgs []Message, now int64) (sent int, first error) {
	x := c.x
	c.hops.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		h := &c.wrHops[i]
		h.ok = false
		if ip := m.Addr.Addr(); ip.Is4() || ip.Is4In6() {
			h.mac, h.ok = c.hops.lookupLocked(ip.Unmap(), c.source(m), now)
		}
	}
	c.hops.mu.Unlock()
	x.reapCompletions()
	queued := uint32(0)
	fail := func(err error) {
		c.stats.writeErrors.Add(1)
		if first == nil {
			first = err
		}
	}
	for i := range msgs {
		m := &msgs[i]
		payload, dst, local, err := c.sendable(m)
		if err != nil {
			fail(err)
			continue
		}
		via := &c.stats.kernelNoHop
		if headersLen+len(payload) > c.maxFrame {
			via = &c.stats.kernelTooLong
		} else if c.wrHops[i].ok {
			if len(x.freeTX) == 0 || x.tx.free(queued+1) < queued+1 {
				// Everything is in flight: push what we have and
				// collect what the kernel is done with.
				c.flushTX(queued)
				queued = 0
				x.reapCompletions()
			}
			if len(x.freeTX) > 0 && x.tx.free(queued+1) >= queued+1 {
				addr := x.freeTX[len(x.freeTX)-1]
				x.freeTX = x.freeTX[:len(x.freeTX)-1]
				c.hdr.dstMAC = c.wrHops[i].mac
				n := buildFrame(x.umem[addr:addr+frameSize], &c.hdr, netip.AddrPortFrom(c.addrs[local], c.port), dst, payload)
				d := &x.tx.descs[(x.tx.cachedProd+queued)&x.tx.mask]
				d.Addr, d.Len, d.Options = addr, uint32(n), 0
				queued++
				sent++
				continue
			}
			via = &c.stats.kernelRingFull
		}
		if err := c.kernelSend(local, payload, dst); err != nil {
			fail(err)
			continue
		}
		via.Add(1)
		sent++
	}
	c.flushTX(queued)
	return sent, first
}

// source is the address m is to be sent from (the first one if unset), for
// the route lookup; sendable checks it.
func (c *Conn) source(m *Message) netip.Addr {
	if m.Local.IsValid() {
		return m.Local.Unmap()
	}
	return c.addrs[0]
}

// sendable checks one outgoing message and returns its payload, its
// destination (unmapped) and the index of its local address.
func (c *Conn) sendable(m *Message) ([]byte, netip.AddrPort, int, error) {
	if m.N < 0 || m.N > len(m.Buf) {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("xdpio: send to %v: length %d outside buffer of %d bytes", m.Addr, m.N, len(m.Buf))
	}
	ip := m.Addr.Addr().Unmap()
	if !ip.Is4() {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("xdpio: send to %v: %w", m.Addr, ErrNotIPv4)
	}
	local := c.localIndex(c.source(m))
	if local < 0 {
		return nil, netip.AddrPort{}, 0, fmt.Errorf("xdpio: send from %v: %w", m.Local, ErrNotLocal)
	}
	return m.Buf[:m.N], netip.AddrPortFrom(ip, m.Addr.Port()), local, nil
}

// flushTX publishes queued descriptors and, when the kernel asks for it
// (always in copy mode), kicks it to send them. A kick that reports more to
// do (EAGAIN: the budget of one call, or a full completion ring), a device
// drop (EBUSY) or a lack of buffers (ENOBUFS) is retried a few times,
// collecting completions in between; what is left goes with the next kick.
func (c *Conn) flushTX(queued uint32) {
	x := c.x
	if queued > 0 {
		x.tx.submit(queued)
		c.stats.txFrames.Add(uint64(queued))
	}
	for range 4 {
		if atomic.LoadUint32(x.tx.consumer) == x.tx.cachedProd || !x.tx.needWakeup() {
			return
		}
		e := x.kickTX()
		c.stats.txKicks.Add(1)
		switch e {
		case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
			x.reapCompletions()
		default:
			return // the device is gone or down: the next kick tries again
		}
	}
}

// kernelSend sends payload to dst from addrs[local] through the kernel
// socket.
// It is a raw system call, as it never waits (see kickTX).
func (c *Conn) kernelSend(local int, payload []byte, dst netip.AddrPort) error {
	c.wrName = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&c.wrName.Port))
	p[0], p[1] = byte(dst.Port()>>8), byte(dst.Port())
	var buf unsafe.Pointer
	if len(payload) > 0 {
		buf = unsafe.Pointer(&payload[0])
	}
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(c.kfds[local]), uintptr(buf), uintptr(len(payload)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&c.wrName)), unix.SizeofSockaddrInet4)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("xdpio: send to %v through the kernel: %w", dst, os.NewSyscallError("sendto", e))
		}
		return nil
	}
}

// Stats returns the Conn's counters; the ring counters cost one getsockopt
// (zero after Close).
func (c *Conn) Stats() Stats {
	s := Stats{
		Queue:               c.x.queue,
		ZeroCopy:            c.x.zeroCopy,
		ReadCalls:           c.stats.readCalls.Load(),
		ReadDatagrams:       c.stats.readDatagrams.Load(),
		KernelReads:         c.stats.kernelReads.Load(),
		Truncated:           c.stats.truncated.Load(),
		WriteDatagrams:      c.stats.writeDatagrams.Load(),
		TXFrames:            c.stats.txFrames.Load(),
		TXKicks:             c.stats.txKicks.Load(),
		KernelSendsNoHop:    c.stats.kernelNoHop.Load(),
		KernelSendsTooLong:  c.stats.kernelTooLong.Load(),
		KernelSendsRingFull: c.stats.kernelRingFull.Load(),
		WriteErrors:         c.stats.writeErrors.Load(),
	}
	for i := range s.RXDropped {
		s.RXDropped[i] = c.stats.rxDropped[i].Load()
	}
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed.Load() {
		return s
	}
	if st, err := c.x.statistics(); err == nil {
		s.RingRXDropped, s.RingRXInvalid, s.RingTXInvalid = st.Rx_dropped, st.Rx_invalid_descs, st.Tx_invalid_descs
		s.RingRXFull, s.RingFillEmpty, s.RingTXEmpty = st.Rx_ring_full, st.Rx_fill_ring_empty_descs, st.Tx_ring_empty_descs
	}
	return s
}

// Close closes the Conn's sockets and releases its UMEM, after waking a
// pending ReadBatch (which returns net.ErrClosed) and waiting for calls in
// progress to leave. It is idempotent. The steering program stays attached
// until the Group is closed; frames for this queue then go to the kernel.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	errs := []error{c.ep.Close()} // wakes a reader parked in the netpoller
	c.rdMu.Lock()
	c.wrMu.Lock()
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	defer c.wrMu.Unlock()
	defer c.rdMu.Unlock()
	for _, fd := range c.kfds {
		errs = append(errs, unix.Close(fd))
	}
	errs = append(errs, c.x.close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xdpio: close queue %d: %w", c.x.queue, err)
	}
	return nil
}

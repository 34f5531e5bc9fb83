// SPDX-License-Identifier: MIT

//go:build linux

package udpio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxGroup caps ListenGroup: past 16 sockets the receive-queue locks are no
// longer the bottleneck on any machine we target (tailscale's udprelay uses
// the same cap).
const MaxGroup = 16

// Conn is an IPv4 UDP socket read and written in batches. Create it with
// Listen or ListenGroup.
//
// The socket is the net package's, so a blocked read parks its goroutine in
// Go's netpoller rather than an OS thread, and Close wakes it. The batch
// calls run inside syscall.RawConn Read/Write callbacks with MSG_DONTWAIT:
// EAGAIN hands the wait back to the poller.
type Conn struct {
	uc      *net.UDPConn // nil with BlockingReads
	closer  io.Closer    // uc, or the os.File of a blocking socket
	rc      syscall.RawConn
	local   netip.AddrPort
	noBatch bool
	raw     bool // Options.RawSyscalls
	// blocking is Options.BlockingReads in effect: the socket is in
	// blocking mode and ReadEach waits in recvmmsg or recvfrom.
	blocking bool

	// gsoMax is the largest segment WriteBatch may send with GSO: 0 with
	// GSO off (not asked for, not supported, or refused), lowered when the
	// kernel finds a segment too long for the device MTU. gro is non-nil
	// when UDP_GRO is on.
	gsoMax atomic.Int32
	gro    *groState
	// refuseGSO is a test hook: when set, sendmmsg fails a UDP_SEGMENT
	// send with this errno, as a kernel without GSO support would.
	refuseGSO syscall.Errno

	// rd and wr are the kernel headers of each direction, preallocated so
	// that a batch allocates nothing; each is guarded by its own mutex, so a
	// reader and a writer never wait for each other.
	rdMu sync.Mutex
	rd   mmsgs
	wrMu sync.Mutex
	wr   mmsgs
	// recvFn, sendFn and eachFn are the RawConn callbacks, bound once: a
	// method value or closure made per call would allocate.
	recvFn, sendFn, eachFn func(fd uintptr) bool
	// The arguments and result of a ReadEach, for eachFn.
	eachMsgs   []Message
	eachHandle func(n int) error
	eachErr    error
	// singles is how many more waits of a blocking ReadEach read one
	// datagram (recvfrom) rather than a batch: see readEachReady.
	singles int
	// coal is the coalescing state of a blocking ReadEach: see
	// Options.Coalesce and readEachReady.
	coal coalescer

	stats          counters
	rcvBuf, sndBuf int
	drops          atomic.Uint64 // last sk_drops read, kept for Stats after Close
	closed         atomic.Bool
}

// mmsgs is one direction's recvmmsg/sendmmsg argument array, with the
// iovecs, socket addresses and control messages its headers point at, and
// the in/out values of one RawConn callback.
type mmsgs struct {
	hdrs  [MaxBatch]unix.Mmsghdr
	iovs  [MaxBatch]unix.Iovec
	names [MaxBatch]unix.RawSockaddrInet4
	ctrl  [MaxBatch]cmsg // UDP_SEGMENT out, UDP_GRO in
	// When writing, iovs[i] holds the caller's message i and ok[i] says
	// whether it is sendable; header j carries messages dst[j] to
	// dst[j]+segs[j]-1 (segs[j] > 1 for a GSO send).
	ok   [MaxBatch]bool
	dst  [MaxBatch]int
	segs [MaxBatch]int

	off, cnt int           // in: hdrs[off:off+cnt] go to the kernel
	dirty    int           // reading: hdrs[:dirty] were filled since rearm
	got      int           // out: datagrams moved
	errno    syscall.Errno // out: the call's error, 0 if none
	call     string        // out: the system call that failed, for errno's message
}

func (m *mmsgs) init() {
	m.dirty = len(m.hdrs)
	for i := range m.hdrs {
		h := &m.hdrs[i].Hdr
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
	}
}

// setBuf points header i's iovec at b.
func (m *mmsgs) setBuf(i int, b []byte) {
	m.iovs[i].Base = nil
	if len(b) > 0 {
		m.iovs[i].Base = &b[0]
	}
	m.iovs[i].SetLen(len(b))
}

// release drops the references to caller buffers left in the first n
// iovecs, so a Conn does not keep them alive between calls.
func (m *mmsgs) release(n int) {
	for i := range n {
		m.iovs[i].Base = nil
	}
}

// Listen opens an IPv4 UDP socket bound to addr (port 0 picks an ephemeral
// port; 0.0.0.0 binds every local address).
func Listen(addr netip.AddrPort, opt Options) (*Conn, error) {
	addr, err := checkListenAddr(addr)
	if err != nil {
		return nil, err
	}
	blocking := opt.BlockingReads && !opt.NoBatch && !opt.GRO
	var c *Conn
	if blocking {
		c, err = listenBlocking(addr, opt)
	} else {
		c, err = listenPolled(addr, opt)
	}
	if err != nil {
		return nil, fmt.Errorf("udpio: listen on %v: %w", addr, err)
	}
	c.noBatch, c.raw, c.blocking = opt.NoBatch, opt.RawSyscalls, blocking
	if blocking && opt.Coalesce > 0 {
		c.coal.init(opt.Coalesce)
	}
	c.rd.init()
	c.wr.init()
	c.recvFn = c.recvmmsg
	c.sendFn = c.sendmmsg
	c.eachFn = c.readEachReady
	var gso, gro bool
	_ = c.rc.Control(func(fd uintptr) {
		c.rcvBuf, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		c.sndBuf, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		gso, gro = offloads(int(fd), opt)
	})
	if gso {
		c.gsoMax.Store(maxUDPPayload)
	}
	if gro {
		c.gro = newGROState(&c.rd)
	}
	return c, nil
}

// listenPolled opens the socket through the net package: non-blocking,
// waited for by Go's netpoller.
func listenPolled(addr netip.AddrPort, opt Options) (*Conn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = setOptions(int(fd), opt) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
	if err != nil {
		return nil, err
	}
	uc := pc.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	la := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	return &Conn{uc: uc, closer: uc, rc: rc, local: netip.AddrPortFrom(la.Addr().Unmap(), la.Port())}, nil
}

// rcErr reports a RawConn call's failure on a closed blocking socket (an
// os.File, which says "use of closed file") as the net package reports a
// closed socket, so that callers test for one error.
func (c *Conn) rcErr(err error) error {
	if err != nil && c.blocking && c.closed.Load() {
		return net.ErrClosed
	}
	return err
}

// errClosedErrno marks, in mmsgs.errno, a blocking read that Close woke:
// the read returns net.ErrClosed. No system call returns it (errno values
// are positive).
const errClosedErrno = syscall.Errno(^uintptr(0))

// blockingTimeout bounds each wait in a system call of a socket with
// BlockingReads (SO_RCVTIMEO, SO_SNDTIMEO): a backstop for Close, which
// wakes a waiting read itself, and a bound on a send into a full buffer.
const blockingTimeout = 200 * time.Millisecond

// listenBlocking opens the socket for BlockingReads: in blocking mode, and
// not through the net package, whose netpoller would otherwise wake for
// every datagram as well, to find nobody waiting (epoll reports the
// socket's readiness whether or not a goroutine waits on it). os.NewFile
// leaves a blocking descriptor out of the poller; its RawConn still takes
// the descriptor's reference counts, so Close is safe against a read in
// progress.
func listenBlocking(addr netip.AddrPort, opt Options) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(err error) (*Conn, error) {
		unix.Close(fd)
		return nil, err
	}
	if err := setOptions(fd, opt); err != nil {
		return fail(err)
	}
	tv := unix.NsecToTimeval(int64(blockingTimeout))
	for _, o := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, o, &tv); err != nil {
			return fail(os.NewSyscallError("setsockopt", err))
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
		return fail(os.NewSyscallError("bind", err))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(os.NewSyscallError("getsockname", err))
	}
	sa4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return fail(fmt.Errorf("bound to a non-IPv4 address %v", sa))
	}
	f := os.NewFile(uintptr(fd), "udp4:"+addr.String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Conn{closer: f, rc: rc, local: netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(sa4.Port))}, nil
}

// LocalAddr is the address the socket is bound to, with the port the kernel
// picked if Listen was given 0.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Close closes the socket and unblocks a pending ReadBatch or WriteBatch,
// which then return net.ErrClosed. It is idempotent: calls after the first
// return nil.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.readDrops() // last chance: the counter dies with the socket
	if c.blocking {
		// Wake a ReadEach waiting in a read: it holds the descriptor,
		// and uc.Close waits for it. On an unconnected UDP socket
		// shutdown fails with ENOTCONN but still marks the socket shut
		// for reading and wakes its readers; a wait that begins after
		// this returns at once.
		_ = c.rc.Control(func(fd uintptr) { _ = unix.Shutdown(int(fd), unix.SHUT_RD) })
	}
	if err := c.closer.Close(); err != nil {
		return fmt.Errorf("udpio: close %v: %w", c.local, err)
	}
	return nil
}

// Stats returns the socket's counters. Drops costs one getsockopt; after
// Close it is the last value seen.
func (c *Conn) Stats() Stats {
	s := c.stats.snapshot()
	c.readDrops()
	s.Drops = c.drops.Load()
	s.RecvBuffer, s.SendBuffer = c.rcvBuf, c.sndBuf
	s.GSO, s.GRO = c.gsoMax.Load() > 0, c.gro != nil
	return s
}

// readDrops refreshes c.drops from SO_MEMINFO. We read the kernel's drop
// counter on demand rather than asking for SO_RXQ_OVFL: that would add a
// control message to every datagram and only reports drops once a later
// datagram arrives, while SO_MEMINFO (Linux ≥ 4.6) reads the same sk_drops
// counter at no cost to the data path.
func (c *Conn) readDrops() {
	var info [unix.SK_MEMINFO_VARS]uint32
	var errno syscall.Errno
	err := c.rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(info))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err == nil && errno == 0 {
		c.drops.Store(uint64(info[unix.SK_MEMINFO_DROPS]))
	}
}

// ReadBatch blocks until at least one datagram has arrived, then reads up to
// min(len(msgs), MaxBatch) of them without waiting for more, setting N, Addr
// and Truncated of each. It returns how many it read. With len(msgs) == 0 it
// returns 0 at once. With GRO on, datagrams left over from a coalesced read
// that did not fit in the previous call's msgs come first, and alone: the
// call returns them without reading the socket.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	if c.noBatch {
		return c.readOne(&msgs[0])
	}
	c.rdMu.Lock()
	defer c.rdMu.Unlock()
	if c.gro != nil {
		return c.readGRO(msgs)
	}
	m := &c.rd
	k := min(len(msgs), MaxBatch)
	for i := range k {
		m.setBuf(i, msgs[i].Buf)
	}
	m.rearm()
	m.off, m.cnt = 0, k
	err := c.rcErr(c.rc.Read(c.recvFn))
	m.release(k)
	if err != nil {
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, err)
	}
	if m.errno == errClosedErrno {
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, net.ErrClosed)
	}
	if m.errno != 0 {
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, os.NewSyscallError("recvmmsg", m.errno))
	}
	c.received(msgs, m.got)
	return m.got, nil
}

// rearm readies the read headers for a recvmmsg: the kernel writes back
// the name length, flags and length of each header it fills, so only the
// ones it filled since the last rearm (dirty) need it. A loop that wakes
// for a datagram at a time then touches one header, not MaxBatch of them
// (64 cache lines).
func (m *mmsgs) rearm() {
	for i := range m.dirty {
		m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		m.hdrs[i].Hdr.Flags = 0
		m.hdrs[i].Len = 0
	}
	m.dirty = 0
}

// received fills in msgs[:n] from the read headers and counts them.
func (c *Conn) received(msgs []Message, n int) {
	m := &c.rd
	m.dirty = max(m.dirty, n)
	var trunc uint64
	for i := range n {
		h := &m.hdrs[i]
		msgs[i].N = int(h.Len)
		msgs[i].Addr = addrPortOf(&m.names[i], h.Hdr.Namelen)
		msgs[i].Truncated = h.Hdr.Flags&unix.MSG_TRUNC != 0
		if msgs[i].Truncated {
			trunc++
		}
	}
	c.stats.readCalls.Add(1)
	c.stats.readDatagrams.Add(uint64(n))
	if trunc > 0 {
		c.stats.truncated.Add(trunc)
	}
}

// receivedOne fills in msg after waitOne returned the datagram's length n.
func (c *Conn) receivedOne(msg *Message, n int) {
	m := &c.rd
	m.dirty = max(m.dirty, 1)
	msg.N = min(n, len(msg.Buf))
	msg.Addr = addrPortOf(&m.names[0], m.hdrs[0].Hdr.Namelen)
	msg.Truncated = n > len(msg.Buf)
	c.stats.readCalls.Add(1)
	c.stats.readDatagrams.Add(1)
	if msg.Truncated {
		c.stats.truncated.Add(1)
	}
}

// ReadEach reads batches into msgs, as ReadBatch does, and passes each to
// handle (which finds n datagrams in msgs[:n]), until handle returns an
// error, which ReadEach returns, or a read fails: it returns that error,
// one wrapping net.ErrClosed after Close. handle may write to c or any
// other socket, but must not read from c.
//
// Why not ReadBatch in a loop: Go's netpoller forgets a readiness event
// that came between two reads, so every ReadBatch must try the socket
// before it waits, and after a batch that emptied the queue that try finds
// nothing. ReadEach stays inside one wait: after a batch shorter than msgs
// (the queue was empty) it waits for the poller's word that more came. A
// loop that wakes for each datagram or two, as a server below saturation
// does, saves one system call in three that way (issue 14).
//
// With NoBatch or GRO it is ReadBatch in a loop.
func (c *Conn) ReadEach(msgs []Message, handle func(n int) error) error {
	if len(msgs) == 0 {
		return fmt.Errorf("udpio: ReadEach on %v: no messages to read into", c.local)
	}
	if c.noBatch || c.gro != nil {
		return readEachBatch(c.ReadBatch, msgs, handle)
	}
	c.rdMu.Lock()
	defer c.rdMu.Unlock()
	m := &c.rd
	k := min(len(msgs), MaxBatch)
	for i := range k {
		m.setBuf(i, msgs[i].Buf)
	}
	c.eachMsgs, c.eachHandle, c.eachErr = msgs[:k], handle, nil
	m.errno = 0
	err := c.rcErr(c.rc.Read(c.eachFn))
	m.release(k)
	herr := c.eachErr
	c.eachMsgs, c.eachHandle, c.eachErr = nil, nil, nil
	switch {
	case herr != nil:
		return herr
	case err != nil:
		return fmt.Errorf("udpio: read on %v: %w", c.local, err)
	default:
		return fmt.Errorf("udpio: read on %v: %w", c.local, os.NewSyscallError(m.call, m.errno))
	}
}

// readEachReady is ReadEach's RawConn callback: it reads and hands over
// batches until handle fails or a read does (true: ReadEach returns). On a
// polled socket it also returns (false: wait for the poller) once a batch
// shorter than msgs says the queue is empty, rather than read nothing. With
// BlockingReads it waits in the read for the first datagram instead
// (recvmmsg with MSG_WAITFORONE on a blocking socket, or recvfrom for one
// datagram below saturation: see lightSingles), until Close ends the wait.
func (c *Conn) readEachReady(fd uintptr) bool {
	m := &c.rd
	msgs := c.eachMsgs
	for {
		var r uintptr
		var e syscall.Errno
		single, late := false, false
		switch {
		case c.coal.pending:
			// After a coalescing sleep: take what came, without waiting.
			c.coal.pending, late = false, true
			m.rearm()
			r, e = c.batchCall(unix.SYS_RECVMMSG, fd, &m.hdrs[0], len(msgs))
			if e != 0 && c.coal.got(0) {
				c.stats.sleeps.Add(1)
			}
		case c.blocking && c.singles > 0 && !c.coal.active:
			// (A coalescing loop waits for a batch: its length says
			// whether the queue is empty, and so whether to sleep.)
			single = true
			r, e = c.waitOne(fd, &m.iovs[0])
		case c.blocking:
			m.rearm()
			r, e = c.waitCall(fd, &m.hdrs[0], len(msgs), c.raw)
		default:
			m.rearm()
			r, e = c.batchCall(unix.SYS_RECVMMSG, fd, &m.hdrs[0], len(msgs))
		}
		if c.blocking && c.closed.Load() {
			// Close shut the socket for reading, which ends the wait
			// with an empty "datagram": nothing read is handed over.
			c.eachErr = fmt.Errorf("udpio: read on %v: %w", c.local, net.ErrClosed)
			return true
		}
		switch e {
		case 0:
		case unix.EINTR, unix.EAGAIN:
			if !c.blocking {
				if e == unix.EAGAIN {
					return false
				}
				continue
			}
			if late && e == unix.EAGAIN {
				continue // nothing came during the sleep: wait for it
			}
			// A signal or SO_RCVTIMEO ended the wait. The signal may be
			// the runtime's preemption request (a stop-the-world, a
			// stack scan): with RawSyscalls this goroutine holds its P
			// while it waits, and must yield at a safe point for the
			// request to be met.
			runtime.Gosched()
			continue
		default:
			m.errno, m.call = e, "recvmmsg"
			if single {
				m.call = "recvfrom"
			}
			return true
		}
		n := 1
		if single {
			c.singles-- // only a read counts: interrupted waits do not
			c.receivedOne(&msgs[0], int(r))
		} else {
			n = int(r)
			c.received(msgs, n)
			if c.blocking && n == 1 && len(msgs) > 1 {
				c.singles = lightSingles
			}
		}
		if c.coal.on() {
			if !late {
				c.coal.woke()
			} else if c.coal.got(n) {
				c.stats.sleeps.Add(1)
			}
		}
		if c.eachErr = c.eachHandle(n); c.eachErr != nil {
			return true
		}
		// Sleep only after a batch that came back short, which says the
		// queue was empty: a single read (recvfrom) does not say, so a
		// batch read without a wait comes first. A batch of one is always
		// full: it has nothing to coalesce into. After Close the next read
		// ends ReadEach; a sleep would delay it.
		if c.coal.active && len(msgs) > 1 {
			if n < len(msgs) && !single && !c.closed.Load() {
				c.coal.sleep(c.raw)
			}
			c.coal.pending = true
		}
		if n < len(msgs) && !c.blocking {
			return false // the queue is empty: wait, rather than read nothing
		}
	}
}

// lightSingles is how many single-datagram waits follow a batch wait of a
// blocking ReadEach that found one datagram. Below saturation a server
// loop wakes for a datagram at a time, and recvmmsg then pays for a second
// read that finds the queue empty: on this kernel 0.5 µs, a thirtieth of
// all the kernel work of answering a router solicitation (issue 14).
// recvfrom reads just the one, as Miredo's loop does; every
// lightSingles+1-th wait is a batch wait again, so a loop whose load rises
// is back to batches within that many datagrams, each read meanwhile at
// the cost of a single-datagram server's read.
const lightSingles = 15

// waitOne is the single-datagram wait of BlockingReads: a blocking
// recvfrom into iov's buffer, the source in names[0]. MSG_TRUNC makes it
// return the datagram's whole length, so receivedOne can tell a truncated
// one. With RawSyscalls it waits as waitCall does, holding its P, and the
// runtime's preemption signal interrupts it (EINTR).
func (c *Conn) waitOne(fd uintptr, iov *unix.Iovec) (uintptr, syscall.Errno) {
	m := &c.rd
	m.hdrs[0].Hdr.Namelen = unix.SizeofSockaddrInet4
	if c.raw {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(iov.Base)), uintptr(iov.Len),
			unix.MSG_TRUNC, uintptr(unsafe.Pointer(&m.names[0])), uintptr(unsafe.Pointer(&m.hdrs[0].Hdr.Namelen)))
		return r, e
	}
	r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(iov.Base)), uintptr(iov.Len),
		unix.MSG_TRUNC, uintptr(unsafe.Pointer(&m.names[0])), uintptr(unsafe.Pointer(&m.hdrs[0].Hdr.Namelen)))
	return r, e
}

// waitCall is the waiting recvmmsg of BlockingReads (MSG_WAITFORONE on a
// blocking socket). As a raw system call the scheduler is not told: the
// loop keeps its P while it sleeps in the kernel, so that no wake-up goes
// through the scheduler and sysmon has no P in a system call to take and
// hand over (which, with a P taken at every wait longer than 20 µs, kept
// sysmon polling and moved the loop from thread to thread). The runtime
// still reaches the loop: its preemption signal interrupts the wait
// (EINTR, as SO_RCVTIMEO is set), and ReadEach yields then; other
// goroutines run on the spare P the caller provides (see BlockingReads).
// ReadBatch waits as an ordinary system call (raw false): it does not
// yield on EINTR.
func (c *Conn) waitCall(fd uintptr, hdrs *unix.Mmsghdr, cnt int, raw bool) (uintptr, syscall.Errno) {
	return mmsgCall(unix.SYS_RECVMMSG, fd, hdrs, cnt, unix.MSG_WAITFORONE, raw)
}

// recvmmsg is the RawConn read callback: false means "nothing yet, wait
// for the poller".
func (c *Conn) recvmmsg(fd uintptr) bool {
	m := &c.rd
	for {
		r, e := c.batchCall(unix.SYS_RECVMMSG, fd, &m.hdrs[m.off], m.cnt)
		if e == unix.EAGAIN && c.blocking {
			// No poller to wait in (BlockingReads): wait in the call.
			r, e = c.waitCall(fd, &m.hdrs[m.off], m.cnt, false)
			if c.closed.Load() {
				m.got, m.errno = 0, errClosedErrno
				return true
			}
			if e == unix.EAGAIN { // SO_RCVTIMEO: wait again
				continue
			}
		}
		switch e {
		case 0:
			m.got, m.errno = int(r), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			m.got, m.errno, m.call = 0, e, "recvmmsg"
			return true
		}
	}
}

// batchCall makes one recvmmsg or sendmmsg (trap) of cnt headers from hdrs
// on, with MSG_DONTWAIT, as a raw system call with Options.RawSyscalls.
func (c *Conn) batchCall(trap, fd uintptr, hdrs *unix.Mmsghdr, cnt int) (uintptr, syscall.Errno) {
	return mmsgCall(trap, fd, hdrs, cnt, unix.MSG_DONTWAIT, c.raw)
}

// mmsgCall makes one recvmmsg or sendmmsg (trap) of cnt headers from hdrs
// on with flags, as a raw system call (the scheduler not told) if raw.
func mmsgCall(trap, fd uintptr, hdrs *unix.Mmsghdr, cnt int, flags uintptr, raw bool) (uintptr, syscall.Errno) {
	if raw {
		r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(hdrs)), uintptr(cnt), flags, 0, 0)
		return r, e
	}
	r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(hdrs)), uintptr(cnt), flags, 0, 0)
	return r, e
}

// readOne is ReadBatch without batching: one recvmsg through the net
// package, which does not allocate for an AddrPort.
func (c *Conn) readOne(msg *Message) (int, error) {
	n, _, flags, from, err := c.uc.ReadMsgUDPAddrPort(msg.Buf, nil)
	if err != nil {
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, err)
	}
	msg.N = n
	msg.Addr = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	msg.Truncated = flags&unix.MSG_TRUNC != 0
	c.stats.readCalls.Add(1)
	c.stats.readDatagrams.Add(1)
	if msg.Truncated {
		c.stats.truncated.Add(1)
	}
	return 1, nil
}

// WriteBatch sends msgs[i].Buf[:msgs[i].N] to msgs[i].Addr, in order, up to
// MaxBatch per system call, blocking while the send buffer is full. A
// datagram that cannot be sent (not IPv4, N out of range, or refused by the
// kernel: unreachable network, firewall, ...) is skipped and counted, and the
// rest still go: UDP is lossy anyway, and one bad peer must not silence a
// batch of replies to others. It returns how many were sent and the first
// error. After Close it stops at once with net.ErrClosed.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	if c.noBatch {
		return c.writeEach(msgs)
	}
	c.wrMu.Lock()
	defer c.wrMu.Unlock()
	sent := 0
	var first error
	for len(msgs) > 0 {
		k := min(len(msgs), MaxBatch)
		n, fatal, err := c.writeChunk(msgs[:k])
		sent += n
		if first == nil {
			first = err
		}
		if fatal {
			break
		}
		msgs = msgs[k:]
	}
	return sent, first
}

// writeChunk sends at most MaxBatch messages. fatal reports an error that
// ends the whole WriteBatch (the socket is closed or broken).
func (c *Conn) writeChunk(msgs []Message) (sent int, fatal bool, first error) {
	m := &c.wr
	for i := range msgs {
		b, _, err := sendable(&msgs[i])
		m.ok[i] = err == nil
		if err != nil {
			c.stats.writeErrors.Add(1)
			if first == nil {
				first = err
			}
			continue
		}
		m.setBuf(i, b)
	}
	defer m.release(len(msgs))
	cnt := m.plan(msgs, 0, 0, int(c.gsoMax.Load()))
	// After the kernel refuses a GSO send, probe is the header that
	// resends the run's first datagram alone: if that goes out, the
	// kernel refused the segmentation (why: probeErrno; segment size:
	// probeSize), not the destination.
	probe, probeErrno, probeSize := -1, syscall.Errno(0), 0
	for off := 0; off < cnt; {
		m.off, m.cnt = off, cnt-off
		if err := c.rcErr(c.rc.Write(c.sendFn)); err != nil {
			return sent, true, fmt.Errorf("udpio: write on %v: %w", c.local, err)
		}
		if m.errno == 0 && m.got > 0 {
			n, gsoSends, gsoSegs := 0, 0, 0
			for _, k := range m.segs[off : off+m.got] {
				n += k
				if k > 1 {
					gsoSends++
					gsoSegs += k
				}
			}
			if probe >= off && probe < off+m.got {
				probe = -1
				c.gsoRefused(probeErrno, probeSize)
			}
			c.stats.writeCalls.Add(1)
			c.stats.writeDatagrams.Add(uint64(n))
			if gsoSends > 0 {
				c.stats.gsoSends.Add(uint64(gsoSends))
				c.stats.gsoSegments.Add(uint64(gsoSegs))
			}
			sent += n
			off += m.got
			continue
		}
		// sendmmsg reports an error only when the first header fails (the
		// ones before it went out and were counted by the previous round).
		if m.segs[off] > 1 && gsoRefusal(m.errno) {
			// Send the run and the rest of the chunk again, one header
			// per datagram.
			probe, probeErrno, probeSize = off, m.errno, msgs[m.dst[off]].N
			cnt = m.plan(msgs, m.dst[off], off, 0)
			continue
		}
		if probe == off {
			probe = -1 // refused without GSO too: keep GSO as it is
		}
		// Skip this header: its datagrams are lost.
		err := error(io.ErrShortWrite)
		if m.errno != 0 {
			err = os.NewSyscallError(m.call, m.errno)
		}
		c.stats.writeErrors.Add(uint64(m.segs[off]))
		if first == nil {
			first = fmt.Errorf("udpio: send to %v: %w", msgs[m.dst[off]].Addr, err)
		}
		off++
	}
	return sent, false, first
}

// gsoRefused adapts GSO after the kernel refused a GSO send with errno and
// accepted its first datagram alone. EMSGSIZE means a segment of size
// bytes does not fit the device MTU (plain datagrams are fragmented
// instead, DF being off): keep GSO for shorter ones. Anything else means
// the kernel or the device cannot do GSO at all: turn it off.
func (c *Conn) gsoRefused(errno syscall.Errno, size int) {
	c.stats.gsoFallbacks.Add(1)
	if errno != unix.EMSGSIZE {
		c.gsoMax.Store(0)
		return
	}
	for {
		cur := c.gsoMax.Load()
		if int(cur) < size || c.gsoMax.CompareAndSwap(cur, int32(size-1)) {
			return
		}
	}
}

// plan lays the sendable messages from msgs[from] on out as headers from
// hdrs[h] on, each a run of datagrams of at most gsoMax bytes for one UDP
// GSO send (see gsoRun; gsoMax 0 means no GSO) or a single datagram, and
// returns the number of headers in use.
// The iovecs are already set: iovs[i] is msgs[i]'s payload, so a run's
// header points at consecutive iovecs and the kernel gathers the caller's
// buffers itself.
func (m *mmsgs) plan(msgs []Message, from, h, gsoMax int) int {
	for i := from; i < len(msgs); {
		if !m.ok[i] {
			i++
			continue
		}
		k := 1
		if gsoMax > 0 {
			k = gsoRun(msgs[i:], maxGSOSegments, gsoMax)
		}
		hdr := &m.hdrs[h]
		hdr.Hdr.Iov = &m.iovs[i]
		hdr.Hdr.SetIovlen(k)
		setSockaddr(&m.names[h], unmapped(msgs[i].Addr))
		hdr.Hdr.Namelen = unix.SizeofSockaddrInet4
		hdr.Hdr.Control = nil
		hdr.Hdr.SetControllen(0)
		if k > 1 {
			m.ctrl[h].setSegment(msgs[i].N)
			hdr.Hdr.Control = (*byte)(unsafe.Pointer(&m.ctrl[h]))
			hdr.Hdr.SetControllen(unix.CmsgSpace(2))
		}
		hdr.Hdr.Flags = 0
		hdr.Len = 0
		m.dst[h], m.segs[h] = i, k
		h++
		i += k
	}
	return h
}

// sendmmsg is the RawConn write callback: false means "send buffer full,
// wait for the poller".
func (c *Conn) sendmmsg(fd uintptr) bool {
	m := &c.wr
	cnt := m.cnt
	if c.refuseGSO != 0 {
		// The test hook plays a kernel that refuses UDP_SEGMENT: fail the
		// first GSO header, send the ones before it.
		for j := m.off; j < m.off+m.cnt; j++ {
			if m.segs[j] > 1 {
				if j == m.off {
					m.got, m.errno, m.call = 0, c.refuseGSO, "sendmmsg"
					return true
				}
				cnt = j - m.off
				break
			}
		}
	}
	// A lone datagram goes out with sendto (see sendCall).
	one := cnt == 1 && m.segs[m.off] == 1
	for {
		r, e := c.sendCall(fd, cnt, one, unix.MSG_DONTWAIT, c.raw)
		if e == unix.EAGAIN && c.blocking {
			// The send buffer is full and there is no poller to wait
			// in (BlockingReads): wait in the call, at most
			// SO_SNDTIMEO, after which EAGAIN fails the batch.
			r, e = c.sendCall(fd, cnt, one, 0, false)
		}
		switch e {
		case 0:
			if one {
				r = 1 // sendto returns the bytes sent
			}
			m.got, m.errno = int(r), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			m.got, m.errno, m.call = 0, e, "sendmmsg"
			if one {
				m.call = "sendto"
			}
			return true
		}
	}
}

// sendCall sends cnt headers from wr.hdrs[wr.off] with flags, as a raw
// system call if raw: a lone datagram (one) with sendto, which costs the
// kernel less than a sendmmsg of one header (no header array or message
// header to copy in and check: 0.25 µs on this kernel), and a server below
// saturation mostly answers one datagram per wake-up.
func (c *Conn) sendCall(fd uintptr, cnt int, one bool, flags uintptr, raw bool) (uintptr, syscall.Errno) {
	m := &c.wr
	if !one {
		return mmsgCall(unix.SYS_SENDMMSG, fd, &m.hdrs[m.off], cnt, flags, raw)
	}
	h := &m.hdrs[m.off].Hdr
	if raw {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(h.Iov.Base)), uintptr(h.Iov.Len), flags,
			uintptr(unsafe.Pointer(h.Name)), uintptr(h.Namelen))
		return r, e
	}
	r, _, e := unix.Syscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(h.Iov.Base)), uintptr(h.Iov.Len), flags,
		uintptr(unsafe.Pointer(h.Name)), uintptr(h.Namelen))
	return r, e
}

// writeEach is WriteBatch without batching: one sendto per datagram through
// the net package, which does not allocate for an AddrPort.
func (c *Conn) writeEach(msgs []Message) (int, error) {
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

// setSockaddr writes ap into sa; the port goes in network byte order.
func setSockaddr(sa *unix.RawSockaddrInet4, ap netip.AddrPort) {
	sa.Family = unix.AF_INET
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(ap.Port()>>8), byte(ap.Port())
	sa.Addr = ap.Addr().As4()
}

// addrPortOf reads a socket address the kernel filled in; anything but a
// complete IPv4 address yields the zero AddrPort.
func addrPortOf(sa *unix.RawSockaddrInet4, namelen uint32) netip.AddrPort {
	if sa.Family != unix.AF_INET || namelen < unix.SizeofSockaddrInet4 {
		return netip.AddrPort{}
	}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
}

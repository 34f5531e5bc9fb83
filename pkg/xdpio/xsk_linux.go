// SPDX-License-Identifier: MIT

package xdpio

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UMEM geometry. Frames are in aligned mode, frameSize bytes each: on
// receive the kernel leaves XDP_PACKET_HEADROOM (256) bytes in front, so a
// frame holds rxFrameMax bytes of packet, enough for a 1500-byte MTU; the
// steering program passes longer frames to the kernel. On send the whole
// frame is ours.
const (
	frameSize  = 2048
	rxFrameMax = frameSize - unix.XDP_PACKET_HEADROOM
)

// ring is one of an AF_XDP socket's four single-producer single-consumer
// rings, shared with the kernel through mmap. The kernel and we each own one
// index; the other is read with atomic loads (the acquire/release pairs the
// kernel documents for these rings: Go's atomics are at least that strong).
// cachedProd and cachedCons are our view, refreshed only when it runs out,
// so a busy ring costs no shared-cache-line read per entry.
type ring struct {
	producer, consumer, flags *uint32
	mask, size                uint32
	cachedProd, cachedCons    uint32
	addrs                     []uint64       // fill and completion rings
	descs                     []unix.XDPDesc // RX and TX rings
	mem                       []byte         // the mapping, for munmap
}

// xsk is one AF_XDP socket bound to one queue, with its UMEM and rings.
type xsk struct {
	fd       int
	queue    int
	zeroCopy bool
	umem     []byte
	fill     ring // we produce free frames for the kernel to receive into
	comp     ring // the kernel returns frames it has sent
	rx       ring // the kernel produces received frames
	tx       ring // we produce frames to send
	// freeTX holds the addresses of the send frames not in flight.
	freeTX []uint64
}

// xskConfig sizes a socket: frames in its UMEM (half for receiving, half
// for sending) and the ring size (each ring holds half the frames).
type xskConfig struct {
	ifindex, queue int
	frames         int
	zeroCopy       bool // ask for XDP_ZEROCOPY (else XDP_COPY)
}

// openXSK creates an AF_XDP socket on cfg.queue of cfg.ifindex with a UMEM of
// its own, maps its rings, gives the kernel half the frames to receive into
// and binds it, asking for zero-copy or copy mode as cfg says.
func openXSK(cfg xskConfig) (_ *xsk, err error) {
	if cfg.frames < 2 || cfg.frames&(cfg.frames-1) != 0 {
		return nil, fmt.Errorf("xdpio: %d UMEM frames: want a power of two ≥ 2", cfg.frames)
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("xdpio: AF_XDP socket (needs CAP_NET_RAW and CONFIG_XDP_SOCKETS): %w", err)
	}
	x := &xsk{fd: fd, queue: cfg.queue, zeroCopy: cfg.zeroCopy}
	defer func() {
		if err != nil {
			x.close()
		}
	}()
	size := cfg.frames * frameSize
	x.umem, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("xdpio: UMEM of %d bytes: %w", size, err)
	}
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(&x.umem[0]))),
		Len:  uint64(size),
		Size: frameSize,
	}
	// The first four fields are the layout every kernel since 4.18
	// accepts; the later ones (flags, TX metadata) stay zero.
	if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), 24); err != nil {
		return nil, fmt.Errorf("xdpio: register UMEM of %d bytes (pinned: needs CAP_IPC_LOCK or RLIMIT_MEMLOCK above it): %w", size, err)
	}
	half := uint32(cfg.frames / 2)
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, int(half)); err != nil {
			return nil, fmt.Errorf("xdpio: ring size %d (option %d): %w", half, opt, err)
		}
	}
	var off unix.XDPMmapOffsets
	offLen := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&offLen)), 0); e != 0 {
		return nil, fmt.Errorf("xdpio: ring offsets: %w", e)
	}
	if err := x.fill.mapAddrs(fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, half); err != nil {
		return nil, err
	}
	if err := x.comp.mapAddrs(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, half); err != nil {
		return nil, err
	}
	if err := x.rx.mapDescs(fd, unix.XDP_PGOFF_RX_RING, off.Rx, half); err != nil {
		return nil, err
	}
	if err := x.tx.mapDescs(fd, unix.XDP_PGOFF_TX_RING, off.Tx, half); err != nil {
		return nil, err
	}
	// Frames [0, half) receive, [half, frames) send.
	for i := range half {
		x.fill.addrs[i] = uint64(i) * frameSize
	}
	x.fill.cachedProd = half
	atomic.StoreUint32(x.fill.producer, half)
	x.freeTX = make([]uint64, 0, half)
	for i := half; i < uint32(cfg.frames); i++ {
		x.freeTX = append(x.freeTX, uint64(i)*frameSize)
	}
	flags := uint16(unix.XDP_USE_NEED_WAKEUP | unix.XDP_COPY)
	if cfg.zeroCopy {
		flags = unix.XDP_USE_NEED_WAKEUP | unix.XDP_ZEROCOPY
	}
	sa := unix.RawSockaddrXDP{Family: unix.AF_XDP, Flags: flags, Ifindex: uint32(cfg.ifindex), Queue_id: uint32(cfg.queue)}
	if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrXDP); e != 0 {
		mode := "copy"
		if cfg.zeroCopy {
			mode = "zero-copy"
		}
		return nil, fmt.Errorf("xdpio: bind AF_XDP socket to queue %d in %s mode: %w", cfg.queue, mode, e)
	}
	// Copy mode sends at most 32 frames per sendto by default; let one
	// call send a whole ring (Linux ≥ 6.17; older kernels refuse the
	// option and keep 32).
	_ = unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, int(half))
	return x, nil
}

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0); e != 0 {
		return e
	}
	return nil
}

// mapRing maps one ring's shared memory and points r's indices into it.
func (r *ring) mapRing(fd int, pgoff int64, off unix.XDPRingOffset, n uint32, entry uintptr) error {
	length := int(off.Desc) + int(n)*int(entry)
	mem, err := unix.Mmap(fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("xdpio: map ring at page offset %#x: %w", pgoff, err)
	}
	r.mem = mem
	base := unsafe.Pointer(&mem[0])
	r.producer = (*uint32)(unsafe.Add(base, off.Producer))
	r.consumer = (*uint32)(unsafe.Add(base, off.Consumer))
	r.flags = (*uint32)(unsafe.Add(base, off.Flags))
	r.size, r.mask = n, n-1
	return nil
}

func (r *ring) mapAddrs(fd int, pgoff int64, off unix.XDPRingOffset, n uint32) error {
	if err := r.mapRing(fd, pgoff, off, n, 8); err != nil {
		return err
	}
	r.addrs = unsafe.Slice((*uint64)(unsafe.Pointer(&r.mem[off.Desc])), n)
	return nil
}

func (r *ring) mapDescs(fd int, pgoff int64, off unix.XDPRingOffset, n uint32) error {
	if err := r.mapRing(fd, pgoff, off, n, unsafe.Sizeof(unix.XDPDesc{})); err != nil {
		return err
	}
	r.descs = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&r.mem[off.Desc])), n)
	return nil
}

// available returns how many entries a consumer ring (RX, completion) holds
// for us, reading the kernel's producer index only when our cached view is
// empty.
func (r *ring) available() uint32 {
	n := r.cachedProd - r.cachedCons
	if n == 0 {
		r.cachedProd = atomic.LoadUint32(r.producer)
		n = r.cachedProd - r.cachedCons
	}
	return n
}

// release hands n consumed entries back to the kernel.
func (r *ring) release(n uint32) {
	r.cachedCons += n
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// free returns how many entries a producer ring (fill, TX) has room for,
// reading the kernel's consumer index only when our cached view is short.
func (r *ring) free(want uint32) uint32 {
	n := r.size - (r.cachedProd - r.cachedCons)
	if n < want {
		r.cachedCons = atomic.LoadUint32(r.consumer)
		n = r.size - (r.cachedProd - r.cachedCons)
	}
	return n
}

// submit publishes n produced entries to the kernel.
func (r *ring) submit(n uint32) {
	r.cachedProd += n
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// needWakeup reports whether the kernel asks for a system call to process
// the ring (XDP_USE_NEED_WAKEUP): always for TX in copy mode, for the fill
// ring only in zero-copy mode when the driver ran dry.
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// reapCompletions moves the frames the kernel has finished sending back to
// freeTX.
func (x *xsk) reapCompletions() {
	n := x.comp.available()
	for i := range n {
		x.freeTX = append(x.freeTX, x.comp.addrs[(x.comp.cachedCons+i)&x.comp.mask])
	}
	if n > 0 {
		x.comp.release(n)
	}
}

// kickTX asks the kernel to send what the TX ring holds: a sendto with no
// data, which in copy mode transmits up to the socket's budget per call.
// EAGAIN means "more to do" (budget spent, or the completion ring full),
// EBUSY that the device dropped a frame (counted by the kernel as sent and
// completed), ENOBUFS that it is out of buffers: the caller retries a few
// times and then leaves the rest for the next kick. Other errors are
// returned.
//
// Both kicks are raw system calls (no scheduler bookkeeping): they never
// wait, but in copy mode a TX kick builds and transmits the whole batch,
// often for longer than sysmon's 20 µs, and as an ordinary system call its
// P was then taken and handed to a fresh thread every time, which kept
// sysmon polling: 7 % of a server's CPU in perf(1) (issue 14).
func (x *xsk) kickTX() syscall.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(x.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// kickFill wakes a zero-copy driver that ran out of fill-ring frames.
func (x *xsk) kickFill() {
	_, _, _ = unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(x.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// statistics reads the kernel's drop counters of the socket.
func (x *xsk) statistics() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	n := uint32(unsafe.Sizeof(st))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(x.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
		return st, os.NewSyscallError("getsockopt XDP_STATISTICS", e)
	}
	return st, nil
}

// close unmaps the rings and the UMEM and closes the socket. The caller
// makes sure nothing touches them any more.
func (x *xsk) close() error {
	var errs []error
	for _, r := range []*ring{&x.fill, &x.comp, &x.rx, &x.tx} {
		if r.mem != nil {
			errs = append(errs, unix.Munmap(r.mem))
			*r = ring{}
		}
	}
	if x.fd >= 0 {
		errs = append(errs, unix.Close(x.fd))
		x.fd = -1
	}
	if x.umem != nil {
		errs = append(errs, unix.Munmap(x.umem))
		x.umem = nil
	}
	return errors.Join(errs...)
}

// SPDX-License-Identifier: MIT

package tundev

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
)

// fastBatch is the BatchSize of our own backends: the packets of one
// 64 KiB super-segment at the Teredo MTU (54 at MSS 1208), or one
// recvmmsg batch on the Teredo socket (udpio.MaxBatch).
const fastBatch = 64

// readBufLen holds the largest packet the kernel can hand us with its
// virtio-net header: an IPv6 packet with a 16-bit payload length.
const readBufLen = vnetHdrLen + ipv6HdrLen + maxIPv6Pay

// tunDevice is the Device our own opener makes: /dev/net/tun with
// IFF_TUN|IFF_NO_PI (plus IFF_VNET_HDR with offloads), non-blocking and
// registered with Go's netpoller through os.NewFile, so a Read parks its
// goroutine instead of a thread and Close wakes it.
type tunDevice struct {
	tunLink
	file *os.File
	rc   syscall.RawConn
	vnet bool // IFF_VNET_HDR and offloads
	uso  bool // the kernel took UDP segmentation offload: Write merges UDP runs too

	// Read side; Reads do not overlap (Device contract).
	rbuf     []byte    // where a read lands with offloads on
	seg      segmenter // the rest of a super-segment an earlier Read began
	rdDst    []byte    // readFn's arguments and results
	rdWait   bool
	rdN      int
	rdErr    error
	readFn   func(uintptr) bool // d.readOnce, bound once so a Read allocates nothing
	superIn  atomic.Uint64
	splitOut atomic.Uint64
	dropped  atomic.Uint64

	// Write side; Writes do not overlap (Device contract).
	vhdr      [vnetHdrLen]byte
	zeroHdr   [vnetHdrLen]byte
	runHdr    [ipv6HdrLen + 60]byte // IPv6 + the longest TCP (or a UDP) header
	iov       []unix.Iovec
	wrBuf     []byte // one buffer, or nil for iov
	wrIov     int    // iovecs in use
	wrErr     error
	writeFn   func(uintptr) bool // d.writeOnce, bound once
	runsOut   atomic.Uint64
	coalesced atomic.Uint64
	udpRuns   atomic.Uint64
	udpMerged atomic.Uint64
}

var (
	_ Device         = (*tunDevice)(nil)
	_ OffloadStatser = (*tunDevice)(nil)
)

// Open creates (or attaches to a persistent) TUN interface called name
// ([netcfg.DefaultName] if empty) in the calling thread's network
// namespace, with the backend and number of queues opts asks for, and
// returns one Device per queue. The interface is not persistent: it
// disappears with its addresses and routes when the last queue is closed
// or the process exits. Read and Write any queue; the kernel sends each
// flow to one queue.
//
// Equivalent to: ip tuntap add dev NAME mode tun [multi_queue] (without persist)
func Open(name string, opts Options) ([]Device, error) {
	opts, err := opts.check()
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = netcfg.DefaultName
	}
	if err := netcfg.ValidateName(name); err != nil {
		return nil, err
	}
	if opts.Backend == BackendWater {
		d, err := CreateTUN(name)
		if err != nil {
			return nil, err
		}
		return []Device{d}, nil
	}
	devs := make([]Device, 0, opts.Queues)
	for range opts.Queues {
		d, err := openQueue(name, opts)
		if err != nil {
			for _, d := range devs {
				d.Close()
			}
			return nil, err
		}
		name = d.name // the kernel's name, should name have had a %d
		devs = append(devs, d)
	}
	return devs, nil
}

// OpenInNetNS is Open inside the network namespace ns (see
// [netcfg.RunInNetNS]).
func OpenInNetNS(ns netns.NsHandle, name string, opts Options) ([]Device, error) {
	var devs []Device
	err := netcfg.RunInNetNS(ns, func() error {
		var err error
		devs, err = Open(name, opts)
		return err
	})
	if err != nil {
		for _, d := range devs { // created, but the thread could not switch back
			d.Close()
		}
		return nil, err
	}
	return devs, nil
}

// offloadSets are the TUNSETOFFLOAD requests to try, best first. Checksum
// offload is what TSO needs; TSO6 gives us TCP super-segments. UDP
// segmentation offload (Linux 6.2) can only be asked for both families
// at once. TSO4 is left off: Teredo carries no IPv4, and without it the
// kernel cuts the (unexpected) IPv4 TCP it sends here itself.
var offloadSets = [...]int{
	unix.TUN_F_CSUM | unix.TUN_F_TSO6 | unix.TUN_F_USO4 | unix.TUN_F_USO6,
	unix.TUN_F_CSUM | unix.TUN_F_TSO6,
}

// openQueue opens one queue of the interface.
func openQueue(name string, opts Options) (*tunDevice, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, netcfg.ClassifyCreateError(name, fmt.Errorf("open /dev/net/tun: %w", err))
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("netcfg: %w: %q: %w", netcfg.ErrInvalidName, name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	vnet := opts.Backend == BackendOffload
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	if opts.Queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, netcfg.ClassifyCreateError(name, os.NewSyscallError("ioctl TUNSETIFF", err))
	}
	// A persistent leftover keeps its flag unless told otherwise; clear it
	// so the interface goes away with us, as water does.
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0); err != nil {
		return nil, fmt.Errorf("netcfg: clear persist on %s: %w", ifr.Name(), os.NewSyscallError("ioctl TUNSETPERSIST", err))
	}
	uso := false
	if vnet {
		for i, set := range offloadSets {
			err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, set)
			if err == nil {
				uso = set&unix.TUN_F_USO6 != 0
			}
			if err == nil || i == len(offloadSets)-1 || !errors.Is(err, unix.EINVAL) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("netcfg: offloads on %s (use the batch backend on this kernel): %w", ifr.Name(), os.NewSyscallError("ioctl TUNSETOFFLOAD", err))
		}
	}
	d := &tunDevice{tunLink: tunLink{name: ifr.Name()}, uso: uso}
	if err := d.attachNetlink(); err != nil {
		return nil, err
	}
	ok = true
	if err := d.init(fd, vnet); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// init wraps the open, non-blocking descriptor fd, which from now on
// belongs to d. Tests give it one end of a SOCK_SEQPACKET socket pair,
// which keeps packet boundaries as a TUN does.
func (d *tunDevice) init(fd int, vnet bool) error {
	// The descriptor is non-blocking, so os.NewFile registers it with the
	// netpoller.
	d.file = os.NewFile(uintptr(fd), "/dev/net/tun")
	d.vnet = vnet
	var err error
	if d.rc, err = d.file.SyscallConn(); err != nil {
		return fmt.Errorf("netcfg: raw conn for %s: %w", d.name, err)
	}
	d.readFn, d.writeFn = d.readOnce, d.writeOnce
	if vnet {
		d.rbuf = make([]byte, readBufLen)
		d.iov = make([]unix.Iovec, 2+maxRunSegments)
	}
	return nil
}

// BatchSize is how many packets one Read returns at most.
func (d *tunDevice) BatchSize() int { return fastBatch }

// OffloadStats reports the offload path's counters.
func (d *tunDevice) OffloadStats() OffloadStats {
	return OffloadStats{
		SuperRead: d.superIn.Load(), SplitOut: d.splitOut.Load(),
		RunsWritten: d.runsOut.Load(), Coalesced: d.coalesced.Load(),
		UDPRunsWritten: d.udpRuns.Load(), UDPCoalesced: d.udpMerged.Load(),
		Dropped: d.dropped.Load(),
	}
}

// Close closes the descriptor, which wakes a pending Read, and the
// netlink socket.
func (d *tunDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Swap(true) {
		return nil
	}
	if d.nl != nil {
		d.nl.Close()
	}
	if d.file == nil {
		return nil
	}
	if err := d.file.Close(); err != nil {
		return fmt.Errorf("netcfg: close %s: %w", d.name, err)
	}
	return nil
}

// readOnce is the RawConn callback of every read: one read(2) into
// d.rdDst. With d.rdWait it asks to be called again when the descriptor
// turns readable; without, EAGAIN is a result.
func (d *tunDevice) readOnce(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), d.rdDst)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN && d.rdWait {
			return false
		}
		d.rdN, d.rdErr = n, err
		return true
	}
}

// read does one read(2) into dst, waiting for a packet if wait. It returns
// ok=false, and no error, when wait is false and nothing is waiting.
func (d *tunDevice) read(dst []byte, wait bool) (n int, ok bool, err error) {
	d.rdDst, d.rdWait = dst, wait
	err = d.rc.Read(d.readFn)
	d.rdDst = nil
	if err != nil {
		return 0, false, err
	}
	if d.rdErr == unix.EAGAIN {
		return 0, false, nil
	}
	if d.rdErr != nil {
		return 0, false, os.NewSyscallError("read", d.rdErr)
	}
	return d.rdN, true, nil
}

// Read waits for one packet, then takes what else is already waiting
// without waiting again, up to min(len(bufs), BatchSize()) packets. With
// offloads on, a super-segment fills as many bufs as it has segments; what
// does not fit is returned by the next Read, before anything new is read.
// A packet longer than bufs[i][offset:] is truncated without offloads and
// dropped (and counted) with them.
func (d *tunDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	limit := min(len(bufs), fastBatch)
	if len(sizes) < limit {
		return 0, fmt.Errorf("netcfg: read %s: %d sizes for %d buffers", d.name, len(sizes), limit)
	}
	for i := range limit {
		if offset < 0 || offset >= len(bufs[i]) {
			return 0, fmt.Errorf("netcfg: read %s: no room in buffer %d (len %d, offset %d)", d.name, i, len(bufs[i]), offset)
		}
	}
	if d.closed.Load() {
		return 0, d.ioError("read", os.ErrClosed)
	}
	bufs = bufs[:limit]
	n := d.drain(bufs, sizes, offset, 0)
	for n < limit {
		dst := d.rbuf
		if !d.vnet {
			dst = bufs[n][offset:]
		}
		got, ok, err := d.read(dst, n == 0)
		if err != nil {
			if n > 0 {
				break // the next Read meets it again
			}
			return 0, d.ioError("read", err)
		}
		if !ok {
			break
		}
		if !d.vnet {
			sizes[n] = got
			n++
			continue
		}
		n = d.deliver(d.rbuf[:got], bufs, sizes, offset, n)
	}
	return n, nil
}

// deliver puts what one read with a virtio-net header brought into
// bufs[n:], and returns the new count.
func (d *tunDevice) deliver(frame []byte, bufs [][]byte, sizes []int, offset, n int) int {
	h, err := decodeVnetHdr(frame)
	if err != nil {
		d.dropped.Add(1)
		return n
	}
	pkt := frame[vnetHdrLen:]
	if h.gso() == unix.VIRTIO_NET_HDR_GSO_NONE {
		if h.needsCsum() && completeChecksum(pkt, h) != nil {
			d.dropped.Add(1)
			return n
		}
		if len(pkt) > len(bufs[n])-offset {
			d.dropped.Add(1)
			return n
		}
		sizes[n] = copy(bufs[n][offset:], pkt)
		return n + 1
	}
	if d.seg, err = newSegmenter(h, pkt); err != nil {
		d.dropped.Add(1)
		return n
	}
	d.superIn.Add(1)
	return d.drain(bufs, sizes, offset, n)
}

// drain cuts the pending super-segment into bufs[n:] until either runs
// out, and returns the new count.
func (d *tunDevice) drain(bufs [][]byte, sizes []int, offset, n int) int {
	start := n
	for !d.seg.done() && n < len(bufs) {
		m, err := d.seg.next(bufs[n][offset:])
		if err != nil {
			d.dropped.Add(uint64(d.seg.left))
			d.seg = segmenter{}
			break
		}
		sizes[n] = m
		n++
	}
	if d.seg.done() {
		d.seg = segmenter{} // let go of the super-segment
	}
	d.splitOut.Add(uint64(n - start))
	return n
}

// writeOnce is the RawConn callback of every write: write(2) of d.wrBuf,
// or writev(2) of d.iov[:d.wrIov].
func (d *tunDevice) writeOnce(fd uintptr) bool {
	for {
		var err error
		if d.wrIov == 0 {
			_, err = unix.Write(int(fd), d.wrBuf)
		} else {
			_, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&d.iov[0])), uintptr(d.wrIov))
			if errno != 0 {
				err = errno
			}
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		d.wrErr = err
		return true
	}
}

// write writes b, or the first iovs iovecs of d.iov, as one packet.
func (d *tunDevice) write(b []byte, iovs int) error {
	d.wrBuf, d.wrIov, d.wrErr = b, iovs, nil
	err := d.rc.Write(d.writeFn)
	d.wrBuf = nil
	if iovs > 0 {
		clear(d.iov[:iovs]) // keep no reference to the caller's buffers
	}
	if err != nil {
		return err
	}
	if d.wrErr != nil {
		return os.NewSyscallError("write", d.wrErr)
	}
	return nil
}

// setIov points iovec i at b.
func (d *tunDevice) setIov(i int, b []byte) {
	d.iov[i].Base = &b[0]
	d.iov[i].SetLen(len(b))
}

// Write writes the packets in order. With offloads on, each run of
// in-order TCP segments of one flow (see tcpRun) goes to the kernel as one
// super-segment in one writev(2), and so does each run of UDP datagrams of
// one flow (see udpRun) when the kernel took USO; every other packet goes
// alone. If the kernel refuses a super-segment, its packets are written
// one by one, so n is always the index of the packet that failed.
func (d *tunDevice) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if offset < 0 || offset > len(b) {
			return i, fmt.Errorf("netcfg: write %s: offset %d beyond buffer of %d bytes", d.name, offset, len(b))
		}
	}
	if d.closed.Load() {
		return 0, d.ioError("write", os.ErrClosed)
	}
	for i := 0; i < len(bufs); {
		pkt := bufs[i][offset:]
		var err error
		run := 1
		switch {
		case !d.vnet:
			err = d.write(pkt, 0)
		case len(pkt) == 0:
			err = d.write(d.zeroHdr[:], 0) // the kernel's verdict on an empty packet
		default:
			var p runPlan
			run, p = d.planRun(bufs[i:], offset)
			if run == 1 {
				err = d.writeOne(bufs[i], offset)
				break
			}
			if err = d.writeRun(bufs[i:i+run], offset, p); err == nil || d.closed.Load() {
				break
			}
			// The kernel refused the super-segment: send its packets one
			// by one, so that only a packet it refuses on its own is
			// reported, with its own index.
			for j := range run {
				if err = d.writeOne(bufs[i+j], offset); err != nil {
					return i + j, d.ioError("write", err)
				}
			}
		}
		if err != nil {
			return i, d.ioError("write", err)
		}
		i += run
	}
	return len(bufs), nil
}

// writeOne writes buf[offset:] alone, behind a virtio-net header of zeros
// ("a whole packet, checksum done"): in the headroom when there is room,
// which is ours during the call, else gathered from a second buffer.
func (d *tunDevice) writeOne(buf []byte, offset int) error {
	if offset >= vnetHdrLen {
		b := buf[offset-vnetHdrLen:]
		clear(b[:vnetHdrLen])
		return d.write(b, 0)
	}
	d.setIov(0, d.zeroHdr[:])
	d.setIov(1, buf[offset:])
	return d.write(nil, 2)
}

// runPlan is how planRun merges a run: the super-segment's headers (in
// d.runHdr), its virtio-net header, and how many bytes of headers each
// packet of the run drops.
type runPlan struct {
	hdr    []byte
	vh     vnetHdr
	hdrLen int
	udp    bool
}

// planRun measures the run at the front of bufs, TCP first, then UDP if
// the kernel took USO, and for a run of more than one packet builds its
// headers.
func (d *tunDevice) planRun(bufs [][]byte, offset int) (int, runPlan) {
	run, first, pay := tcpRun(bufs, offset)
	if run > 1 {
		last := bufs[run-1][offset:]
		psh := last[ipv6HdrLen+tcpFlagsAt]&tcpPSH != 0
		hdr, vh := runHeader(d.runHdr[:], bufs[0][offset:], first, pay, psh)
		return run, runPlan{hdr: hdr, vh: vh, hdrLen: first.hdrLen}
	}
	if !d.uso {
		return 1, runPlan{}
	}
	run, segPay, total := udpRun(bufs, offset)
	if run == 1 {
		return 1, runPlan{}
	}
	hdr, vh := udpRunHeader(d.runHdr[:], bufs[0][offset:], segPay, total)
	return run, runPlan{hdr: hdr, vh: vh, hdrLen: ipv6HdrLen + udpHdrLen, udp: true}
}

// writeRun writes the run of packets in bufs as one super-segment:
// virtio-net header, the first packet's headers adjusted (p.hdr), then
// every packet's payload, gathered by writev without copying.
func (d *tunDevice) writeRun(bufs [][]byte, offset int, p runPlan) error {
	p.vh.encode(d.vhdr[:])
	d.setIov(0, d.vhdr[:])
	d.setIov(1, p.hdr)
	for j, b := range bufs {
		d.setIov(2+j, b[offset+p.hdrLen:])
	}
	if err := d.write(nil, 2+len(bufs)); err != nil {
		return err
	}
	if p.udp {
		d.udpRuns.Add(1)
		d.udpMerged.Add(uint64(len(bufs)))
	} else {
		d.runsOut.Add(1)
		d.coalesced.Add(uint64(len(bufs)))
	}
	return nil
}

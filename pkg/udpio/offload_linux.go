//go:build linux

package udpio

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// groBufSize is the size of each GRO receive buffer: a coalesced read is at
// most one IPv4 UDP payload (the kernel's default gro_max_size, 64 KiB,
// bounds it).
const groBufSize = 1 << 16

// cmsg is the room for one control message with up to 8 bytes of data,
// laid out like the kernel's: the header, then the data at CmsgLen(0)
// (the header size rounded up to the platform's alignment, which is where
// data lands on 32-bit and 64-bit Linux alike). As a struct it is aligned
// for the header, which a byte array would not be.
type cmsg struct {
	hdr  unix.Cmsghdr
	data [8]byte
}

// setSegment makes c a UDP_SEGMENT control message: the kernel cuts the
// payload into segments of size bytes (the last may be shorter).
func (c *cmsg) setSegment(size int) {
	c.hdr.Level = unix.SOL_UDP
	c.hdr.Type = unix.UDP_SEGMENT
	c.hdr.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&c.data[0])) = uint16(size)
}

// groSize reads the segment size from a UDP_GRO control message the
// kernel wrote into c (n bytes of control data), or returns 0 if there is
// none. UDP_GRO is the only control message a Conn asks for, so it is
// always the first.
func (c *cmsg) groSize(n int) int {
	if n < unix.CmsgLen(4) || c.hdr.Level != unix.SOL_UDP || c.hdr.Type != unix.UDP_GRO || int(c.hdr.Len) < unix.CmsgLen(4) {
		return 0
	}
	return int(*(*int32)(unsafe.Pointer(&c.data[0])))
}

// groState is the receive side of a Conn with GRO on: the kernel reads
// into bufs, and ReadBatch copies datagrams out of them, a coalesced read
// one segment at a time. What the caller had no room for stays here until
// the next ReadBatch. Guarded by Conn.rdMu.
type groState struct {
	bufs []byte // MaxBatch buffers of groBufSize, one per header
	// size and seg are the length of each read and its segment size (seg
	// == size when the kernel did not coalesce); trunc marks reads the
	// kernel cut short (only possible past 64 KiB).
	size, seg [MaxBatch]int
	trunc     [MaxBatch]bool
	// Reads cur..n-1 of the last recvmmsg are still to be handed out;
	// read cur from byte off on.
	n, cur, off int
}

func newGROState(m *mmsgs) *groState {
	g := &groState{bufs: make([]byte, MaxBatch*groBufSize)}
	for i := range MaxBatch {
		m.setBuf(i, g.bufs[i*groBufSize:(i+1)*groBufSize])
		m.hdrs[i].Hdr.Control = (*byte)(unsafe.Pointer(&m.ctrl[i]))
	}
	return g
}

// pending reports whether datagrams of the last read are still queued.
func (g *groState) pending() bool { return g.cur < g.n }

// offloads probes the socket for UDP_SEGMENT and turns UDP_GRO on, as opt
// asks, and reports what is in effect.
func offloads(fd int, opt Options) (gso, gro bool) {
	if opt.NoBatch {
		return false, false
	}
	if opt.GSO {
		// getsockopt(UDP_SEGMENT) fails with ENOPROTOOPT on kernels
		// before 4.18, which cannot segment.
		_, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = err == nil
	}
	// Linux 5.12 fixed the checksum of coalesced datagrams with an odd
	// segment size when they are copied to user space (kernel commit
	// 52cbd23a119c, "udp: fix skb_copy_and_csum_datagram with odd segment
	// sizes"); before it, such bursts were dropped as corrupt. wireguard-go
	// draws the same line.
	if opt.GRO && kernelAtLeast(5, 12) {
		gro = unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
	}
	return gso, gro
}

// kernelAtLeast reports whether the running kernel's release is at least
// major.minor; a release it cannot parse counts as new enough.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return true
	}
	maj, min, ok := parseRelease(unix.ByteSliceToString(u.Release[:]))
	if !ok {
		return true
	}
	return maj > major || maj == major && min >= minor
}

// parseRelease reads "6.18.44-fc" as 6, 18: the leading digits of the
// first two dot-separated fields.
func parseRelease(rel string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(rel, ".")
	if i := strings.IndexFunc(b, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		b = b[:i]
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, found && err1 == nil && err2 == nil
}

// gsoRefused reports whether errno from a UDP_SEGMENT send may mean the
// kernel refused the segmentation rather than the destination: EIO comes
// from a device without checksum offload (or IPsec on the route), EINVAL
// from a segment larger than the device MTU or a kernel without GSO.
func gsoRefused(errno syscall.Errno) bool {
	return errno == unix.EIO || errno == unix.EINVAL
}

// readGRO is ReadBatch with GRO on, rdMu held: it hands out what the last
// read left over or, if nothing, reads afresh; then it copies one datagram
// (one segment of a coalesced read) into each message.
func (c *Conn) readGRO(msgs []Message) (int, error) {
	g, m := c.gro, &c.rd
	k := min(len(msgs), MaxBatch)
	if !g.pending() {
		if err := c.recvGRO(k); err != nil {
			return 0, err
		}
	} else if c.closed.Load() {
		// Close promises net.ErrClosed, even with datagrams still queued.
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, net.ErrClosed)
	}
	n := 0
	var trunc uint64
	for n < k && g.pending() {
		i := g.cur
		end := min(g.off+g.seg[i], g.size[i])
		src := g.bufs[i*groBufSize+g.off : i*groBufSize+end]
		msg := &msgs[n]
		msg.N = copy(msg.Buf, src)
		msg.Addr = addrPortOf(&m.names[i], m.hdrs[i].Hdr.Namelen)
		msg.Truncated = len(src) > len(msg.Buf) || g.trunc[i] && end == g.size[i]
		if msg.Truncated {
			trunc++
		}
		n++
		if end == g.size[i] {
			g.cur, g.off = i+1, 0
		} else {
			g.off = end
		}
	}
	c.stats.readDatagrams.Add(uint64(n))
	if trunc > 0 {
		c.stats.truncated.Add(trunc)
	}
	return n, nil
}

// recvGRO reads up to k datagrams, coalesced or not, into the GRO buffers
// and records how to split them.
func (c *Conn) recvGRO(k int) error {
	g, m := c.gro, &c.rd
	for i := range k {
		h := &m.hdrs[i]
		// The kernel writes back the name and control lengths, the flags
		// and the length.
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		h.Hdr.SetControllen(int(unsafe.Sizeof(cmsg{})))
		h.Hdr.Flags = 0
		h.Len = 0
	}
	m.off, m.cnt = 0, k
	if err := c.rc.Read(c.recvFn); err != nil {
		return fmt.Errorf("udpio: read on %v: %w", c.local, err)
	}
	if m.errno != 0 {
		return fmt.Errorf("udpio: read on %v: %w", c.local, os.NewSyscallError("recvmmsg", m.errno))
	}
	var reads, segs uint64
	for i := range m.got {
		h := &m.hdrs[i]
		size := int(h.Len)
		seg := m.ctrl[i].groSize(int(h.Hdr.Controllen))
		if seg <= 0 || seg >= size {
			seg = size
		} else {
			reads++
			segs += uint64((size + seg - 1) / seg)
		}
		g.size[i], g.seg[i], g.trunc[i] = size, seg, h.Hdr.Flags&unix.MSG_TRUNC != 0
	}
	g.n, g.cur, g.off = m.got, 0, 0
	c.stats.readCalls.Add(1)
	if reads > 0 {
		c.stats.groReads.Add(reads)
		c.stats.groSegments.Add(segs)
	}
	return nil
}

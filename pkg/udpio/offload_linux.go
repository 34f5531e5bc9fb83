// SPDX-License-Identifier: MIT

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

// Sizes of the GRO receive path. Each header reads into two iovecs: the
// caller's buffer, up to groHead bytes, then a spill region of
// groSpillSize bytes of the Conn's own, so that any read fits (a coalesced
// read is at most one IPv4 UDP payload: the kernel's default gro_max_size,
// 64 KiB, bounds it). The spill regions are groHead+groSpillSize apart,
// which staggers them across cache sets: buffers exactly 64 KiB apart all
// compete for the same few ways of the L2 cache (measured: 20-25% slower
// reads).
const (
	// groHead caps what the kernel writes into a caller's buffer, so that
	// a datagram's head always fits in front of its tail in the spill
	// region when it has to be moved there. 2 KiB holds any Teredo
	// datagram (see MaxBatch), so larger buffers rarely need a copy back.
	groHead      = 2048
	groSpillSize = 1 << 16
	groStride    = groHead + groSpillSize
)

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

// groState is the receive side of a Conn with GRO on. A read that the
// kernel did not coalesce lands in the caller's buffer as on the plain
// path. From the first coalesced one on, each read is moved whole into its
// spill region (the head from the caller's buffer in front of the tail
// already there) and handed out one segment per message; what the caller
// had no room for stays queued until the next ReadBatch. Guarded by
// Conn.rdMu.
type groState struct {
	spill []byte // MaxBatch regions of groStride bytes
	iovs  [MaxBatch][2]unix.Iovec
	// For each read of the last recvmmsg: head is the room the caller's
	// buffer offered (at most groHead), size the read's length, seg its
	// segment size (== size when not coalesced), start where it begins in
	// its spill region once moved there, trunc whether the kernel cut it
	// short (only possible past 64 KiB).
	head, size, seg, start [MaxBatch]int
	trunc                  [MaxBatch]bool
	// Reads cur..n-1 are queued in the spill regions; read cur from byte
	// off on.
	n, cur, off int
}

func newGROState(m *mmsgs) *groState {
	g := &groState{spill: make([]byte, MaxBatch*groStride)}
	for i := range MaxBatch {
		region := g.region(i)
		g.iovs[i][1].Base = &region[groHead]
		g.iovs[i][1].SetLen(groSpillSize)
		h := &m.hdrs[i].Hdr
		h.Iov = &g.iovs[i][0]
		h.SetIovlen(2)
		h.Control = (*byte)(unsafe.Pointer(&m.ctrl[i]))
	}
	return g
}

// region is read i's spill region: groHead bytes for its head, then the
// room the kernel writes its tail into.
func (g *groState) region(i int) []byte {
	return g.spill[i*groStride : (i+1)*groStride]
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
	// segment size when they are copied to user space ("udp: fix
	// skb_copy_and_csum_datagram with odd segment sizes", also in stable
	// kernels); before it, such bursts were dropped as corrupt.
	// wireguard-go draws the same line.
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

// gsoRefusal reports whether errno from a UDP GSO send may mean the
// kernel refused the segmentation rather than the destination: EIO comes
// from IPsec on the route or, on older kernels, a device without checksum
// offload; EMSGSIZE from a segment longer than the device MTU (seen on
// Linux 6.18; older kernels said EINVAL); EINVAL from a kernel without GSO
// or a socket without UDP checksums (SO_NO_CHECK).
func gsoRefusal(errno syscall.Errno) bool {
	return errno == unix.EIO || errno == unix.EINVAL || errno == unix.EMSGSIZE
}

// readGRO is ReadBatch with GRO on, rdMu held: it hands out what the last
// read left queued or, if nothing, reads afresh.
func (c *Conn) readGRO(msgs []Message) (int, error) {
	g := c.gro
	k := min(len(msgs), MaxBatch)
	if g.pending() {
		if c.closed.Load() {
			// Close promises net.ErrClosed, even with datagrams queued.
			return 0, fmt.Errorf("udpio: read on %v: %w", c.local, net.ErrClosed)
		}
		return c.drainGRO(msgs[:k]), nil
	}
	got, err := c.recvGRO(msgs[:k])
	if err != nil {
		return 0, err
	}
	// Reads before the first coalesced one are where the caller wants
	// them already.
	m := &c.rd
	j := 0
	var trunc uint64
	for ; j < got && g.seg[j] == g.size[j]; j++ {
		msg := &msgs[j]
		msg.Addr = addrPortOf(&m.names[j], m.hdrs[j].Hdr.Namelen)
		msg.N = min(g.size[j], g.head[j])
		if g.size[j] > g.head[j] {
			// Longer than groHead: the rest is in the spill region.
			msg.N += copy(msg.Buf[msg.N:], g.region(j)[groHead:groHead+g.size[j]-g.head[j]])
		}
		msg.Truncated = msg.N < g.size[j] || g.trunc[j]
		if msg.Truncated {
			trunc++
		}
	}
	c.stats.readDatagrams.Add(uint64(j))
	if trunc > 0 {
		c.stats.truncated.Add(trunc)
	}
	if j == got {
		return got, nil
	}
	// Move the rest into their spill regions before handing them out over
	// the caller's buffers.
	for i := j; i < got; i++ {
		h := min(g.size[i], g.head[i])
		g.start[i] = groHead - h
		copy(g.region(i)[g.start[i]:groHead], msgs[i].Buf[:h])
	}
	g.n, g.cur, g.off = got, j, 0
	return j + c.drainGRO(msgs[j:k]), nil
}

// drainGRO copies queued datagrams, one segment of a coalesced read each,
// into msgs and returns how many.
func (c *Conn) drainGRO(msgs []Message) int {
	g, m := c.gro, &c.rd
	n := 0
	var trunc uint64
	for n < len(msgs) && g.pending() {
		i := g.cur
		end := min(g.off+g.seg[i], g.size[i])
		src := g.region(i)[g.start[i]+g.off : g.start[i]+end]
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
	return n
}

// recvGRO reads up to len(msgs) datagrams, coalesced or not, each into
// msgs[i].Buf (up to groHead bytes) and then its spill region, records
// how to split them, and returns how many it read.
func (c *Conn) recvGRO(msgs []Message) (int, error) {
	g, m := c.gro, &c.rd
	for i := range msgs {
		b := msgs[i].Buf[:min(len(msgs[i].Buf), groHead)]
		g.head[i] = len(b)
		iov := &g.iovs[i][0]
		iov.Base = nil
		if len(b) > 0 {
			iov.Base = &b[0]
		}
		iov.SetLen(len(b))
		h := &m.hdrs[i]
		// The kernel writes back the name and control lengths, the flags
		// and the length.
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		h.Hdr.SetControllen(int(unsafe.Sizeof(cmsg{})))
		h.Hdr.Flags = 0
		h.Len = 0
	}
	m.off, m.cnt = 0, len(msgs)
	err := c.rc.Read(c.recvFn)
	for i := range msgs {
		g.iovs[i][0].Base = nil // keep no reference to the caller's buffers
	}
	if err != nil {
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, err)
	}
	if m.errno != 0 {
		return 0, fmt.Errorf("udpio: read on %v: %w", c.local, os.NewSyscallError("recvmmsg", m.errno))
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
	c.stats.readCalls.Add(1)
	if reads > 0 {
		c.stats.groReads.Add(reads)
		c.stats.groSegments.Add(segs)
	}
	return m.got, nil
}

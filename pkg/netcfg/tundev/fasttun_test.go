// SPDX-License-Identifier: MIT

package tundev

import (
	"bytes"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The fast backend's Read and Write without root: the Device wraps one end
// of a SOCK_SEQPACKET socket pair, which keeps packet boundaries as a TUN
// descriptor does, and the test plays the kernel on the other end.

type fakeKernel struct {
	f *os.File
}

func newPairDevice(t testing.TB, vnet bool) (*tunDevice, *fakeKernel) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	d := &tunDevice{tunLink: tunLink{name: "pair"}}
	if err := d.init(fds[0], vnet); err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{os.NewFile(uintptr(fds[1]), "kernel")}
	t.Cleanup(func() {
		d.Close()
		k.f.Close()
	})
	return d, k
}

// send hands the device one frame: a virtio-net header (with vnet) and a
// packet.
func (k *fakeKernel) send(t testing.TB, h *vnetHdr, pkt []byte) {
	t.Helper()
	var frame []byte
	if h != nil {
		frame = make([]byte, vnetHdrLen, vnetHdrLen+len(pkt))
		h.encode(frame)
	}
	if _, err := k.f.Write(append(frame, pkt...)); err != nil {
		t.Fatal(err)
	}
}

// recv takes one frame the device wrote.
func (k *fakeKernel) recv(t testing.TB) []byte {
	t.Helper()
	k.f.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, readBufLen)
	n, err := k.f.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func makeBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func TestPairReadSplitsAcrossReads(t *testing.T) {
	d, k := newPairDevice(t, true)
	super := tcpSpec{seq: 1000, ack: 5, flags: tcpACK | tcpPSH, options: tsOption(1, 2), payload: pattern(9*1208+10, 3), partialCsumFor: true}.build()
	h := tsoHdr(40, 72, 1208)
	want := cutAll(t, h, bytes.Clone(super))
	k.send(t, &h, super)
	plain := udp6(pattern(77, 1), true)
	k.send(t, &vnetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 40, csumOffset: 6}, plain)

	const offset = 16
	bufs, sizes := makeBufs(4, 1280+offset)
	var got [][]byte
	for _, wantN := range []int{4, 4, 3} { // the last Read ends the segment and takes the UDP packet
		n, err := d.Read(bufs, sizes, offset)
		if err != nil || n != wantN {
			t.Fatalf("Read = %d, %v; want %d", n, err, wantN)
		}
		for i := range n {
			got = append(got, bytes.Clone(bufs[i][offset:offset+sizes[i]]))
		}
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("segment %d differs", i)
		}
	}
	last := got[len(got)-1]
	if refL4Sum(last, 40, unix.IPPROTO_UDP) != 0xffff || !bytes.Equal(last[48:], plain[48:]) {
		t.Errorf("plain packet after the segment: checksum not finished or payload differs")
	}
	st := d.OffloadStats()
	if st.SuperRead != 1 || st.SplitOut != 10 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPairReadDrops(t *testing.T) {
	d, k := newPairDevice(t, true)
	ipv4 := tcpSpec{flags: tcpACK, payload: pattern(3000, 1), partialCsumFor: true}.build()
	ipv4[0] = 0x45
	h := tsoHdr(40, 60, 1000)
	k.send(t, &h, ipv4)                            // IPv4 super-segment
	k.send(t, nil, []byte{1, 2, 3})                // shorter than a virtio-net header
	k.send(t, &vnetHdr{}, pattern(1400, 1))        // larger than the buffer
	k.send(t, &vnetHdr{flags: 1, csumStart: 2000}, // checksum offsets outside
		pattern(100, 1))
	k.send(t, &vnetHdr{}, pattern(100, 2)) // passes through as it is, IPv4 or not
	bufs, sizes := makeBufs(8, 1280)
	n, err := d.Read(bufs, sizes, 0)
	if err != nil || n != 1 || !bytes.Equal(bufs[0][:sizes[0]], pattern(100, 2)) {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if st := d.OffloadStats(); st.Dropped != 4 {
		t.Errorf("dropped %d, want 4", st.Dropped)
	}
}

func TestPairReadBatchWithoutOffloads(t *testing.T) {
	d, k := newPairDevice(t, false)
	for i := range 5 {
		k.send(t, nil, pattern(100+i, byte(i)))
	}
	bufs, sizes := makeBufs(8, 1280)
	n, err := d.Read(bufs, sizes, 4)
	if err != nil || n != 5 {
		t.Fatalf("Read = %d, %v; want the 5 waiting packets", n, err)
	}
	for i := range n {
		if !bytes.Equal(bufs[i][4:4+sizes[i]], pattern(100+i, byte(i))) {
			t.Errorf("packet %d differs", i)
		}
	}
}

func TestPairWriteCoalesces(t *testing.T) {
	for _, offset := range []int{0, 10, 16} {
		d, k := newPairDevice(t, true)
		udp := udp6(pattern(200, 1), false)
		run1 := flow(5, 1208, 100, nil)
		run2 := flow(2, 600, 0, func(i int, s *tcpSpec) { s.sport = 1 })
		pkts := append(append(append([][]byte{udp}, run1...), run2...), udp)
		bufs := withHeadroom(pkts, offset)
		orig := withHeadroom(pkts, offset)
		n, err := d.Write(bufs, offset)
		if err != nil || n != len(pkts) {
			t.Fatalf("offset %d: Write = %d, %v", offset, n, err)
		}
		for i := range bufs {
			if !bytes.Equal(bufs[i][offset:], orig[i][offset:]) {
				t.Errorf("offset %d: Write changed packet %d", offset, i)
			}
		}
		expect := []struct {
			gso  bool
			pkts [][]byte
		}{{false, [][]byte{udp}}, {true, run1}, {true, run2}, {false, [][]byte{udp}}}
		for j, e := range expect {
			frame := k.recv(t)
			h, err := decodeVnetHdr(frame)
			if err != nil {
				t.Fatal(err)
			}
			if !e.gso {
				if h != (vnetHdr{}) || !bytes.Equal(frame[vnetHdrLen:], e.pkts[0]) {
					t.Errorf("offset %d frame %d: %+v, want a plain packet", offset, j, h)
				}
				continue
			}
			segs := cutAll(t, h, frame[vnetHdrLen:])
			if len(segs) != len(e.pkts) {
				t.Fatalf("offset %d frame %d: %d segments, want %d", offset, j, len(segs), len(e.pkts))
			}
			for i := range segs {
				if !bytes.Equal(segs[i], e.pkts[i]) {
					t.Errorf("offset %d frame %d segment %d differs", offset, j, i)
				}
			}
		}
		if st := d.OffloadStats(); st.RunsWritten != 2 || st.Coalesced != 7 {
			t.Errorf("offset %d: stats %+v", offset, st)
		}
	}
}

func TestPairCloseUnblocksRead(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		d, _ := newPairDevice(t, vnet)
		errc := make(chan error, 1)
		go func() {
			bufs, sizes := makeBufs(4, 1280)
			_, err := d.Read(bufs, sizes, 0)
			errc <- err
		}()
		waitParked(t, "tundev.(*tunDevice).read")
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("vnet %v: Read after Close = %v, want net.ErrClosed", vnet, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("vnet %v: Read still blocked 5s after Close", vnet)
		}
		if _, err := d.Write([][]byte{make([]byte, 60)}, 0); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close = %v", err)
		}
		if err := d.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
	}
}

func TestPairZeroAllocs(t *testing.T) {
	d, k := newPairDevice(t, true)
	super := tcpSpec{flags: tcpACK, options: tsOption(1, 2), payload: pattern(40*1208, 3), partialCsumFor: true}.build()
	h := tsoHdr(40, 72, 1208)
	frame := make([]byte, vnetHdrLen, vnetHdrLen+len(super))
	h.encode(frame)
	frame = append(frame, super...)
	bufs, sizes := makeBufs(64, 1280)
	read := testing.AllocsPerRun(50, func() {
		if _, err := unix.Write(int(k.f.Fd()), frame); err != nil {
			t.Fatal(err)
		}
		if n, err := d.Read(bufs, sizes, 0); err != nil || n != 40 {
			t.Fatalf("Read = %d, %v", n, err)
		}
	})
	if read != 0 {
		t.Errorf("Read of a super-segment: %v allocations", read)
	}

	run := withHeadroom(flow(32, 1208, 0, nil), 0)
	single := withHeadroom([][]byte{udp6(pattern(100, 1), false)}, 0)
	rb := make([]byte, readBufLen)
	write := testing.AllocsPerRun(50, func() {
		for _, b := range [][][]byte{run, single} {
			if n, err := d.Write(b, 0); err != nil || n != len(b) {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if _, err := unix.Read(int(k.f.Fd()), rb); err != nil {
				t.Fatal(err)
			}
		}
	})
	if write != 0 {
		t.Errorf("Write of a run and a single packet: %v allocations", write)
	}
}

// When the kernel refuses a super-segment, Write sends the run's packets
// one by one instead of losing them. Here the "kernel" is a socket whose
// send buffer is too small for the merged run (EMSGSIZE).
func TestPairWriteFallsBackWhenRefused(t *testing.T) {
	d, k := newPairDevice(t, true)
	if err := unix.SetsockoptInt(int(d.fdForTest(t)), unix.SOL_SOCKET, unix.SO_SNDBUF, 8192); err != nil {
		t.Fatal(err)
	}
	run := flow(20, 1208, 0, nil)
	frames := make(chan []byte, len(run))
	go func() {
		k.f.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range run {
			b := make([]byte, readBufLen)
			n, err := k.f.Read(b)
			if err != nil {
				close(frames)
				return
			}
			frames <- b[:n]
		}
	}()
	if n, err := d.Write(withHeadroom(run, 0), 0); err != nil || n != len(run) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	for i, want := range run {
		f, ok := <-frames
		if !ok {
			t.Fatalf("frame %d never came", i)
		}
		h, _ := decodeVnetHdr(f)
		if h != (vnetHdr{}) || !bytes.Equal(f[vnetHdrLen:], want) {
			t.Errorf("frame %d: %+v, not the plain packet", i, h)
		}
	}
	if st := d.OffloadStats(); st.RunsWritten != 0 {
		t.Errorf("stats %+v", st)
	}
}

// fdForTest is the descriptor under d, for socket options in tests.
func (d *tunDevice) fdForTest(t *testing.T) uintptr {
	var fd uintptr
	if err := d.rc.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// BenchmarkPairRead is the read side's own cost: one 64 KiB super-segment
// cut into 54 packets per op (socket-pair transport, no kernel TCP).
func BenchmarkPairRead(b *testing.B) {
	d, k := newPairDevice(b, true)
	super := tcpSpec{flags: tcpACK, options: tsOption(1, 2), payload: pattern(54*1208, 3), partialCsumFor: true}.build()
	h := tsoHdr(40, 72, 1208)
	frame := make([]byte, vnetHdrLen, vnetHdrLen+len(super))
	h.encode(frame)
	frame = append(frame, super...)
	bufs, sizes := makeBufs(64, 1280)
	fd := int(k.f.Fd())
	b.SetBytes(int64(len(super)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unix.Write(fd, frame); err != nil {
			b.Fatal(err)
		}
		if n, err := d.Read(bufs, sizes, 0); err != nil || n != 54 {
			b.Fatalf("Read = %d, %v", n, err)
		}
	}
}

// BenchmarkPairWrite is the write side's own cost: 54 segments of one flow
// merged and written as one super-segment per op.
func BenchmarkPairWrite(b *testing.B) {
	for _, vnet := range []bool{true, false} {
		name := "coalesced"
		if !vnet {
			name = "one-by-one"
		}
		b.Run(name, func(b *testing.B) {
			d, k := newPairDevice(b, vnet)
			run := withHeadroom(flow(54, 1208, 0, nil), 0)
			rb := make([]byte, readBufLen)
			fd := int(k.f.Fd())
			b.SetBytes(54 * 1280)
			b.ReportAllocs()
			for b.Loop() {
				if n, err := d.Write(run, 0); err != nil || n != len(run) {
					b.Fatalf("Write = %d, %v", n, err)
				}
				for got := 0; got < 54*1280; {
					n, err := unix.Read(fd, rb)
					if err != nil {
						b.Fatal(err)
					}
					if !vnet {
						got += n
					} else {
						got += 54 * 1280
					}
				}
			}
		})
	}
}

// waitParked polls the goroutine dump until a goroutine is inside fn and
// waiting in the netpoller, so a test closes a Read that really blocks.
func waitParked(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, "runtime_pollWait") {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("no goroutine parked in %s within 10 s", fn)
}

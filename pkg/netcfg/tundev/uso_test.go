// SPDX-License-Identifier: MIT

package tundev

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// udpSpec describes an IPv6/UDP test packet; its checksum comes from the
// naive reference sum in packets_test.go.
type udpSpec struct {
	src, dst     netip.Addr
	sport, dport uint16
	tclass, hop  uint8
	payload      []byte
	extHdr       []byte // an IPv6 destination-options header before UDP
	badChecksum  bool
	zeroChecksum bool // "no checksum", which IPv6 forbids
	udpLenDelta  int  // added to the UDP length field
}

func (s udpSpec) build() []byte {
	if !s.src.IsValid() {
		s.src = srcAddr
	}
	if !s.dst.IsValid() {
		s.dst = dstAddr
	}
	if s.hop == 0 {
		s.hop = 64
	}
	if s.sport == 0 {
		s.sport = 3544
	}
	if s.dport == 0 {
		s.dport = 40000
	}
	l4 := ipv6HdrLen + len(s.extHdr)
	udpLen := udpHdrLen + len(s.payload)
	b := make([]byte, l4+udpLen)
	b[0] = 6<<4 | s.tclass>>4
	b[1] = s.tclass<<4 | 0x1
	b[2], b[3] = 0x23, 0x45
	binary.BigEndian.PutUint16(b[4:], uint16(len(s.extHdr)+udpLen))
	b[6] = unix.IPPROTO_UDP
	if len(s.extHdr) > 0 {
		b[6] = 60
		copy(b[ipv6HdrLen:], s.extHdr)
		b[ipv6HdrLen] = unix.IPPROTO_UDP
	}
	b[7] = s.hop
	src, dst := s.src.As16(), s.dst.As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	u := b[l4:]
	binary.BigEndian.PutUint16(u[0:], s.sport)
	binary.BigEndian.PutUint16(u[2:], s.dport)
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen+s.udpLenDelta))
	copy(u[udpHdrLen:], s.payload)
	if s.zeroChecksum {
		return b
	}
	cs := ^uint16(refL4Sum(b, l4, unix.IPPROTO_UDP))
	if cs == 0 {
		cs = 0xffff
	}
	if s.badChecksum {
		cs ^= 0x0100
	}
	binary.BigEndian.PutUint16(u[6:], cs)
	return b
}

// udpFlow makes count datagrams of one flow with pay-byte payloads, the
// last shorter by short bytes, each from tweak(i, spec) if tweak is set.
func udpFlow(count, pay, short int, tweak func(i int, s *udpSpec)) [][]byte {
	pkts := make([][]byte, 0, count)
	for i := range count {
		n := pay
		if i == count-1 {
			n -= short
		}
		s := udpSpec{payload: pattern(n, byte(3*i+1))}
		if tweak != nil {
			tweak(i, &s)
		}
		pkts = append(pkts, s.build())
	}
	return pkts
}

func TestUDPRun(t *testing.T) {
	const pay = 1200
	other := netip.MustParseAddr("2001:db8::2")
	tests := []struct {
		name string
		pkts [][]byte
		want int
	}{
		{"one datagram", udpFlow(1, pay, 0, nil), 1},
		{"full run", udpFlow(8, pay, 0, nil), 8},
		{"short last joins", udpFlow(5, pay, 700, nil), 5},
		{"one-byte datagrams", udpFlow(10, 1, 0, nil), 10},
		{"short in the middle ends it", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 1 {
				s.payload = s.payload[:100]
			}
		}), 2},
		{"longer after the first", udpFlow(3, pay, 0, func(i int, s *udpSpec) {
			if i == 1 {
				s.payload = append(s.payload, 1)
			}
		}), 1},
		{"longer later", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 2 {
				s.payload = append(s.payload, 1)
			}
		}), 2},
		{"other source", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 2 {
				s.src = other
			}
		}), 2},
		{"other destination", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 1 {
				s.dst = other
			}
		}), 1},
		{"other source port", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 3 {
				s.sport++
			}
		}), 3},
		{"other destination port", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 2 {
				s.dport++
			}
		}), 2},
		{"other traffic class", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 2 {
				s.tclass = 0x03
			}
		}), 2},
		{"other hop limit", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 1 {
				s.hop = 63
			}
		}), 1},
		{"bad checksum first", udpFlow(4, pay, 0, func(i int, s *udpSpec) { s.badChecksum = i == 0 }), 1},
		{"bad checksum third", udpFlow(4, pay, 0, func(i int, s *udpSpec) { s.badChecksum = i == 2 }), 2},
		{"zero checksum first", udpFlow(4, pay, 0, func(i int, s *udpSpec) { s.zeroChecksum = i == 0 }), 1},
		{"zero checksum second", udpFlow(4, pay, 0, func(i int, s *udpSpec) { s.zeroChecksum = i == 1 }), 1},
		{"extension header", udpFlow(4, pay, 0, func(i int, s *udpSpec) { s.extHdr = make([]byte, 8) }), 1},
		{"extension header later", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 2 {
				s.extHdr = make([]byte, 8)
			}
		}), 2},
		{"UDP length short of the packet", udpFlow(4, pay, 0, func(i int, s *udpSpec) {
			if i == 1 {
				s.udpLenDelta = -4
			}
		}), 1},
		{"empty payloads", udpFlow(4, 0, 0, nil), 1},
		{"64 at most", udpFlow(70, 100, 0, nil), maxRunSegments},
		{"64 KiB at most", udpFlow(60, 1400, 0, nil), (maxIPv6Pay - udpHdrLen) / 1400},
		{"TCP after", append(udpFlow(3, pay, 0, nil), flow(2, pay, 0, nil)...), 3},
	}
	for _, tt := range tests {
		for _, offset := range []int{0, 16} {
			n, segPay, total := udpRun(withHeadroom(tt.pkts, offset), offset)
			if n != tt.want {
				t.Errorf("%s (offset %d): run of %d, want %d", tt.name, offset, n, tt.want)
				continue
			}
			if n == 1 {
				continue
			}
			wantTotal := 0
			for _, p := range tt.pkts[:n] {
				wantTotal += len(p) - ipv6HdrLen - udpHdrLen
			}
			if segPay != len(tt.pkts[0])-ipv6HdrLen-udpHdrLen || total != wantTotal {
				t.Errorf("%s: segment %d total %d, want %d and %d", tt.name, segPay, total, len(tt.pkts[0])-48, wantTotal)
			}
		}
	}
}

// mergeUDP builds the super-datagram a run makes, as Write gathers it.
func mergeUDP(t testing.TB, run [][]byte) ([]byte, vnetHdr) {
	t.Helper()
	n, segPay, total := udpRun(run, 0)
	if n != len(run) {
		t.Fatalf("run of %d, want %d", n, len(run))
	}
	hdr, vh := udpRunHeader(make([]byte, 100), run[0], segPay, total)
	super := bytes.Clone(hdr)
	for _, p := range run {
		super = append(super, p[ipv6HdrLen+udpHdrLen:]...)
	}
	return super, vh
}

// checkSuperUDP checks a super-datagram against the kernel's rules,
// independently of the code under test: the lengths, the virtio-net
// header, and a partial checksum that the reference sum completes into a
// valid one for the whole.
func checkSuperUDP(t testing.TB, super []byte, vh vnetHdr, segPay int) {
	t.Helper()
	if vh.flags != unix.VIRTIO_NET_HDR_F_NEEDS_CSUM || vh.gsoType != unix.VIRTIO_NET_HDR_GSO_UDP_L4 ||
		vh.csumStart != ipv6HdrLen || vh.csumOffset != 6 || vh.hdrLen != 48 || int(vh.gsoSize) != segPay {
		t.Fatalf("virtio-net header %+v", vh)
	}
	udpLen := len(super) - ipv6HdrLen
	if int(binary.BigEndian.Uint16(super[4:])) != udpLen || int(binary.BigEndian.Uint16(super[44:])) != udpLen {
		t.Fatalf("lengths %d and %d, want %d", binary.BigEndian.Uint16(super[4:]), binary.BigEndian.Uint16(super[44:]), udpLen)
	}
	whole := bytes.Clone(super)
	binary.BigEndian.PutUint16(whole[46:], ^uint16(refSum(0, whole[ipv6HdrLen:])))
	if refL4Sum(whole, ipv6HdrLen, unix.IPPROTO_UDP) != 0xffff {
		t.Fatal("the partial checksum does not complete into a valid one")
	}
}

// cutUDP splits a super-datagram as the kernel would.
func cutUDP(t testing.TB, vh vnetHdr, super []byte) [][]byte {
	t.Helper()
	s, err := newSegmenter(vh, super)
	if err != nil {
		t.Fatalf("super-datagram refused: %v", err)
	}
	var segs [][]byte
	for !s.done() {
		b := make([]byte, 2048)
		m, err := s.next(b)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, b[:m])
	}
	return segs
}

func TestUDPRunRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		count, pay, short int
	}{{2, 1200, 0}, {5, 1200, 1199}, {64, 1000, 0}, {54, 1200, 1}, {3, 1, 0}, {7, 333, 100}} {
		run := udpFlow(tc.count, tc.pay, tc.short, nil)
		super, vh := mergeUDP(t, run)
		checkSuperUDP(t, super, vh, tc.pay)
		segs := cutUDP(t, vh, super)
		if len(segs) != len(run) {
			t.Fatalf("%+v: %d datagrams back, want %d", tc, len(segs), len(run))
		}
		for i := range segs {
			if !bytes.Equal(segs[i], run[i]) || refL4Sum(segs[i], ipv6HdrLen, unix.IPPROTO_UDP) != 0xffff {
				t.Errorf("%+v: datagram %d does not come back", tc, i)
			}
		}
	}
}

func TestPairWriteCoalescesUDP(t *testing.T) {
	for _, offset := range []int{0, 10, 16} {
		d, k := newPairDevice(t, true)
		d.uso = true
		run1 := udpFlow(20, 1200, 500, nil)
		run2 := udpFlow(3, 100, 0, func(i int, s *udpSpec) { s.sport = 1 })
		tcp := flow(3, 1208, 0, nil)
		lone := udp6(pattern(200, 9), false)
		pkts := append(append(append(append([][]byte{lone}, run1...), tcp...), run2...), lone)
		bufs := withHeadroom(pkts, offset)
		orig := withHeadroom(pkts, offset)
		if n, err := d.Write(bufs, offset); err != nil || n != len(pkts) {
			t.Fatalf("offset %d: Write = %d, %v", offset, n, err)
		}
		for i := range bufs {
			if !bytes.Equal(bufs[i], orig[i]) {
				t.Errorf("offset %d: Write changed packet %d", offset, i)
			}
		}
		expect := []struct {
			gso  uint8
			pkts [][]byte
		}{{0, [][]byte{lone}}, {unix.VIRTIO_NET_HDR_GSO_UDP_L4, run1}, {unix.VIRTIO_NET_HDR_GSO_TCPV6, tcp}, {unix.VIRTIO_NET_HDR_GSO_UDP_L4, run2}, {0, [][]byte{lone}}}
		for j, e := range expect {
			frame := k.recv(t)
			h, err := decodeVnetHdr(frame)
			if err != nil {
				t.Fatal(err)
			}
			if e.gso == 0 {
				if h != (vnetHdr{}) || !bytes.Equal(frame[vnetHdrLen:], e.pkts[0]) {
					t.Errorf("offset %d frame %d: %+v, want a plain packet", offset, j, h)
				}
				continue
			}
			if h.gsoType != e.gso {
				t.Fatalf("offset %d frame %d: GSO type %d, want %d", offset, j, h.gsoType, e.gso)
			}
			if e.gso == unix.VIRTIO_NET_HDR_GSO_UDP_L4 {
				checkSuperUDP(t, frame[vnetHdrLen:], h, len(e.pkts[0])-48)
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
		if st := d.OffloadStats(); st.RunsWritten != 1 || st.Coalesced != 3 || st.UDPRunsWritten != 2 || st.UDPCoalesced != 23 {
			t.Errorf("offset %d: stats %+v", offset, st)
		}
	}
}

// Without USO from the kernel, UDP goes one datagram at a time.
func TestPairWriteUDPWithoutUSO(t *testing.T) {
	d, k := newPairDevice(t, true)
	run := udpFlow(4, 500, 0, nil)
	if n, err := d.Write(withHeadroom(run, 0), 0); err != nil || n != len(run) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	for i, want := range run {
		f := k.recv(t)
		if h, _ := decodeVnetHdr(f); h != (vnetHdr{}) || !bytes.Equal(f[vnetHdrLen:], want) {
			t.Errorf("frame %d: %+v, not the plain datagram", i, h)
		}
	}
}

// A refused super-datagram goes out one datagram at a time (the socket's
// send buffer is too small for the merged run).
func TestPairWriteUDPFallsBackWhenRefused(t *testing.T) {
	d, k := newPairDevice(t, true)
	d.uso = true
	if err := unix.SetsockoptInt(int(d.fdForTest(t)), unix.SOL_SOCKET, unix.SO_SNDBUF, 8192); err != nil {
		t.Fatal(err)
	}
	run := udpFlow(20, 1200, 0, nil)
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
		if h, _ := decodeVnetHdr(f); h != (vnetHdr{}) || !bytes.Equal(f[vnetHdrLen:], want) {
			t.Errorf("frame %d: %+v, not the plain datagram", i, h)
		}
	}
	if st := d.OffloadStats(); st.UDPRunsWritten != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPairWriteUDPZeroAllocs(t *testing.T) {
	d, k := newPairDevice(t, true)
	d.uso = true
	for _, offset := range []int{0, 16} {
		run := withHeadroom(udpFlow(40, 1200, 300, nil), offset)
		rb := make([]byte, readBufLen)
		allocs := testing.AllocsPerRun(50, func() {
			if n, err := d.Write(run, offset); err != nil || n != len(run) {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if _, err := unix.Read(int(k.f.Fd()), rb); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("offset %d: Write of a UDP run: %v allocations", offset, allocs)
		}
	}
}

// BenchmarkPairWriteUDP is the write side's own cost for a batch of 64
// datagrams of 1200 bytes: one writev with USO, 64 writes without.
func BenchmarkPairWriteUDP(b *testing.B) {
	for _, uso := range []bool{false, true} {
		name := "single"
		if uso {
			name = "uso"
		}
		b.Run(name, func(b *testing.B) {
			d, k := newPairDevice(b, true)
			d.uso = uso
			run := withHeadroom(udpFlow(64, 1200, 0, nil), 16)
			rb := make([]byte, readBufLen)
			b.SetBytes(64 * 1248)
			for b.Loop() {
				if _, err := d.Write(run, 16); err != nil {
					b.Fatal(err)
				}
				for range 64 {
					if _, err := unix.Read(int(k.f.Fd()), rb); err != nil {
						if err == unix.EAGAIN {
							break
						}
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// FuzzCoalesceUDP runs the UDP planner over batches built from a valid
// flow with fuzzed bit flips and arbitrary packets mixed in. It must never
// panic, every run must hold what the rules allow, and cutting a merged
// super-datagram up again must give back exactly the datagrams it merged.
func FuzzCoalesceUDP(f *testing.F) {
	f.Add([]byte{}, []byte{}, uint8(0))
	f.Add([]byte{2, 45, 1}, []byte{}, uint8(1))        // a length
	f.Add([]byte{1, 47, 8}, []byte{}, uint8(2))        // a checksum
	f.Add([]byte{}, []byte{3, 0x60, 0, 0}, uint8(0))   // junk in between
	f.Add([]byte{0, 6, 6}, []byte{48, 0x60}, uint8(3)) // next header
	f.Fuzz(func(t *testing.T, flips, raw []byte, short uint8) {
		pkts := udpFlow(6, 300, int(short)%300, nil)
		for len(flips) >= 3 {
			p := pkts[int(flips[0])%len(pkts)]
			p[int(flips[1])%len(p)] ^= flips[2]
			flips = flips[3:]
		}
		var extra [][]byte
		for len(raw) > 0 {
			n := min(int(raw[0]), len(raw)-1)
			extra = append(extra, raw[1:1+n])
			raw = raw[1+n:]
		}
		pkts = append(pkts[:3], append(extra, pkts[3:]...)...)
		for i := 0; i < len(pkts); {
			n, segPay, total := udpRun(pkts[i:], 0)
			if n < 1 || i+n > len(pkts) || n > maxRunSegments {
				t.Fatalf("run of %d at %d of %d", n, i, len(pkts))
			}
			if n > 1 {
				run := pkts[i : i+n]
				for _, p := range run {
					if refL4Sum(p, ipv6HdrLen, unix.IPPROTO_UDP) != 0xffff || p[ipv6NextAt] != unix.IPPROTO_UDP {
						t.Fatalf("a datagram without a valid checksum merged: %x", p[:48])
					}
				}
				hdr, vh := udpRunHeader(make([]byte, 100), run[0], segPay, total)
				super := bytes.Clone(hdr)
				for _, p := range run {
					super = append(super, p[ipv6HdrLen+udpHdrLen:]...)
				}
				checkSuperUDP(t, super, vh, segPay)
				segs := cutUDP(t, vh, super)
				if len(segs) != n {
					t.Fatalf("%d datagrams merged, %d back", n, len(segs))
				}
				for j := range segs {
					if !bytes.Equal(segs[j], run[j]) {
						t.Fatalf("datagram %d of a run of %d does not come back:\n%x\n%x", j, n, segs[j][:48], run[j][:48])
					}
				}
			}
			i += n
		}
	})
}

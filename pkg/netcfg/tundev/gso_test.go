// SPDX-License-Identifier: MIT

package tundev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSumBytesMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if n%17 == 0 {
			for i := range b {
				b[i] = 0xff // carries everywhere
			}
		}
		got, want := uint32(fold(sumBytes(0, b))), refSum(0, b)
		if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Errorf("len %d: sum %#04x, reference %#04x", n, got, want)
		}
	}
}

func TestCompleteChecksum(t *testing.T) {
	tests := []struct {
		name  string
		pkt   []byte
		l4    int
		off   uint16
		proto uint8
	}{
		{"tcp", tcpSpec{flags: tcpACK, payload: pattern(1000, 1), partialCsumFor: true}.build(), 40, 16, unix.IPPROTO_TCP},
		{"tcp odd length", tcpSpec{flags: tcpACK, payload: pattern(333, 2), partialCsumFor: true}.build(), 40, 16, unix.IPPROTO_TCP},
		{"tcp behind an extension header", tcpSpec{flags: tcpACK, payload: pattern(100, 3), extHdr: make([]byte, 8), partialCsumFor: true}.build(), 48, 16, unix.IPPROTO_TCP},
		{"udp", udp6(pattern(1200, 4), true), 40, 6, unix.IPPROTO_UDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := vnetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: uint16(tt.l4), csumOffset: tt.off}
			if err := completeChecksum(tt.pkt, h); err != nil {
				t.Fatal(err)
			}
			if s := refL4Sum(tt.pkt, tt.l4, tt.proto); s != 0xffff {
				t.Errorf("checksum does not verify: sum %#04x", s)
			}
		})
	}
	for _, h := range []vnetHdr{{csumStart: 39, csumOffset: 16}, {csumStart: 0xffff, csumOffset: 0xffff}} {
		if err := completeChecksum(make([]byte, 56), h); !errors.Is(err, errBadCsumOffsets) {
			t.Errorf("offsets %d+%d in 56 bytes: %v", h.csumStart, h.csumOffset, err)
		}
	}
}

// tsoHdr is the virtio-net header the kernel puts on a TCP/IPv6
// super-segment.
func tsoHdr(l4, hdrLen, mss int) vnetHdr {
	return vnetHdr{
		flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: unix.VIRTIO_NET_HDR_GSO_TCPV6,
		hdrLen: uint16(hdrLen), gsoSize: uint16(mss), csumStart: uint16(l4), csumOffset: 16,
	}
}

// cutAll runs a segmenter to the end into fresh 2 KiB buffers.
func cutAll(t *testing.T, h vnetHdr, pkt []byte) [][]byte {
	t.Helper()
	s, err := newSegmenter(h, pkt)
	if err != nil {
		t.Fatalf("newSegmenter: %v", err)
	}
	var out [][]byte
	for !s.done() {
		b := make([]byte, 2048)
		n, err := s.next(b)
		if err != nil {
			t.Fatalf("segment %d: %v", len(out), err)
		}
		out = append(out, b[:n])
		if len(out) > 1000 {
			t.Fatal("segmenter does not end")
		}
	}
	return out
}

func TestSegmenterTCP(t *testing.T) {
	const mss = 1208
	tests := []struct {
		name    string
		flags   uint8
		payload int
		mss     int
		ext     int
		options []byte
		segs    int
	}{
		{"exact multiple", tcpACK | tcpPSH, 4 * mss, mss, 0, tsOption(7, 9), 4},
		{"short tail", tcpACK | tcpPSH, 3*mss + 100, mss, 0, tsOption(7, 9), 4},
		{"one segment", tcpACK, 500, mss, 0, nil, 1},
		{"fin on the last only", tcpACK | tcpPSH | tcpFIN, 2*mss + 1, mss, 0, nil, 3},
		{"cwr on the first only", tcpACK | tcpCWR | tcpECE, 3 * mss, mss, 0, nil, 3},
		{"extension header", tcpACK | tcpPSH, 2*mss + 7, mss - 8, 8, tsOption(1, 2), 3},
		{"odd mss", tcpACK, 1000, 333, 0, nil, 4},
		{"most segments", tcpACK, 65000, 1208, 0, tsOption(3, 4), 54},
		{"no payload", tcpACK | tcpFIN, 0, mss, 0, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ext []byte
			if tt.ext > 0 {
				ext = make([]byte, tt.ext)
				ext[2], ext[3] = 1, byte(tt.ext-4) // a PadN option filling the header
			}
			payload := pattern(tt.payload, 5)
			const seq0 = 0xfffff000 // wraps within the super-segment
			super := tcpSpec{seq: seq0, ack: 77, flags: tt.flags, options: tt.options, payload: payload, extHdr: ext, partialCsumFor: true}.build()
			l4 := 40 + tt.ext
			hdrLen := l4 + 20 + len(tt.options)
			segs := cutAll(t, tsoHdr(l4, hdrLen, tt.mss), super)
			if len(segs) != tt.segs {
				t.Fatalf("%d segments, want %d", len(segs), tt.segs)
			}
			var got []byte
			for i, p := range segs {
				if pl := int(binary.BigEndian.Uint16(p[4:])); pl+40 != len(p) {
					t.Errorf("segment %d: payload length %d in %d bytes", i, pl, len(p))
				}
				if len(p)-hdrLen > tt.mss {
					t.Errorf("segment %d: %d payload bytes > mss %d", i, len(p)-hdrLen, tt.mss)
				}
				if s := refL4Sum(p, l4, unix.IPPROTO_TCP); s != 0xffff {
					t.Errorf("segment %d: checksum does not verify (sum %#04x)", i, s)
				}
				tcp := p[l4:]
				if seq := binary.BigEndian.Uint32(tcp[4:]); seq != seq0+uint32(len(got)) {
					t.Errorf("segment %d: seq %#x, want %#x", i, seq, seq0+uint32(len(got)))
				}
				want := tt.flags
				if i < len(segs)-1 {
					want &^= tcpFIN | tcpPSH
				}
				if i > 0 {
					want &^= tcpCWR
				}
				if tcp[13] != want {
					t.Errorf("segment %d: flags %#x, want %#x", i, tcp[13], want)
				}
				// Everything else in the headers is the super-segment's.
				h, sh := bytes.Clone(p[:hdrLen]), bytes.Clone(super[:hdrLen])
				for _, b := range [][]byte{h, sh} {
					copy(b[4:6], "\x00\x00")
					copy(b[l4+4:l4+8], "\x00\x00\x00\x00")
					b[l4+13] = 0
					copy(b[l4+16:l4+18], "\x00\x00")
				}
				if !bytes.Equal(h, sh) {
					t.Errorf("segment %d: headers\n%x\nwant\n%x", i, h, sh)
				}
				got = append(got, p[hdrLen:]...)
			}
			if !bytes.Equal(got, payload) {
				t.Errorf("payload differs: %d bytes back of %d", len(got), len(payload))
			}
		})
	}
}

func TestSegmenterUDP(t *testing.T) {
	payload := pattern(3*1200+17, 9)
	super := udp6(payload, true)
	h := vnetHdr{flags: unix.VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: unix.VIRTIO_NET_HDR_GSO_UDP_L4, hdrLen: 48, gsoSize: 1200, csumStart: 40, csumOffset: 6}
	segs := cutAll(t, h, super)
	if len(segs) != 4 {
		t.Fatalf("%d datagrams, want 4", len(segs))
	}
	var got []byte
	for i, p := range segs {
		if pl := int(binary.BigEndian.Uint16(p[4:])); pl+40 != len(p) || int(binary.BigEndian.Uint16(p[44:])) != pl {
			t.Errorf("datagram %d: IPv6 payload length %d, UDP length %d, %d bytes", i, pl, binary.BigEndian.Uint16(p[44:]), len(p))
		}
		if s := refL4Sum(p, 40, unix.IPPROTO_UDP); s != 0xffff {
			t.Errorf("datagram %d: checksum does not verify (sum %#04x)", i, s)
		}
		got = append(got, p[48:]...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("payload differs")
	}
}

func TestSegmenterRefuses(t *testing.T) {
	tcp := tcpSpec{flags: tcpACK, payload: pattern(3000, 1), partialCsumFor: true}.build()
	ipv4 := bytes.Clone(tcp)
	ipv4[0] = 0x45
	badOff := bytes.Clone(tcp)
	badOff[40+12] = 4 << 4
	hugeOff := bytes.Clone(tcp)
	hugeOff[40+12] = 15 << 4
	tests := []struct {
		name string
		h    vnetHdr
		pkt  []byte
		want error
	}{
		{"ipv4", tsoHdr(40, 60, 1000), ipv4, errGSONotIPv6},
		{"short", tsoHdr(40, 60, 1000), tcp[:30], errGSONotIPv6},
		{"tcpv4 type", vnetHdr{gsoType: unix.VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1000, flags: 1, csumStart: 40}, tcp, errBadGSO},
		{"ufo type", vnetHdr{gsoType: unix.VIRTIO_NET_HDR_GSO_UDP, gsoSize: 1000, flags: 1, csumStart: 40}, tcp, errBadGSO},
		{"l4 inside the IPv6 header", tsoHdr(20, 60, 1000), tcp, errBadGSO},
		{"l4 past the end", tsoHdr(len(tcp)-10, 60, 1000), tcp, errBadGSO},
		{"data offset below 5", tsoHdr(40, 60, 1000), badOff, errBadGSO},
		{"headers past the end", tsoHdr(40, 60, 1000), hugeOff[:90], errBadGSO},
		{"mss 0", tsoHdr(40, 60, 0), tcp, errBadGSO},
		{"no csum, not tcp", vnetHdr{gsoType: unix.VIRTIO_NET_HDR_GSO_UDP_L4, gsoSize: 100}, tcp, errBadGSO},
	}
	for _, tt := range tests {
		if _, err := newSegmenter(tt.h, tt.pkt); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestSegmenterBufferTooSmall(t *testing.T) {
	super := tcpSpec{flags: tcpACK, payload: pattern(3000, 1), partialCsumFor: true}.build()
	s, err := newSegmenter(tsoHdr(40, 60, 1208), super)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.next(make([]byte, 1267)); !errors.Is(err, errSegmentTooBig) {
		t.Errorf("1267-byte buffer for a 1268-byte segment: %v", err)
	}
	if n, err := s.next(make([]byte, 1268)); err != nil || n != 1268 {
		t.Errorf("exact buffer: %d, %v", n, err)
	}
}

// SPDX-License-Identifier: MIT

package tundev

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzSegmenter feeds the splitter arbitrary virtio-net headers and
// packets. It must never panic, and every packet it produces must fit its
// buffer, carry an IPv6 payload length that matches its size, and (TCP or
// UDP) verify against the reference checksum.
func FuzzSegmenter(f *testing.F) {
	add := func(h vnetHdr, pkt []byte) {
		b := make([]byte, vnetHdrLen)
		h.encode(b)
		f.Add(b, pkt, uint16(1280))
	}
	add(tsoHdr(40, 72, 1208), tcpSpec{flags: tcpACK | tcpPSH, options: tsOption(1, 2), payload: pattern(5000, 1), partialCsumFor: true}.build())
	add(tsoHdr(48, 68, 100), tcpSpec{flags: tcpACK | tcpFIN, payload: pattern(333, 1), extHdr: make([]byte, 8), partialCsumFor: true}.build())
	add(vnetHdr{flags: 1, gsoType: unix.VIRTIO_NET_HDR_GSO_UDP_L4, gsoSize: 500, csumStart: 40, csumOffset: 6}, udp6(pattern(1700, 2), true))
	add(tsoHdr(40, 60, 1), tcpSpec{flags: tcpACK, payload: pattern(20, 1), partialCsumFor: true}.build())
	f.Fuzz(func(t *testing.T, hb, pkt []byte, bufLen uint16) {
		h, err := decodeVnetHdr(hb)
		if err != nil {
			return
		}
		s, err := newSegmenter(h, pkt)
		if err != nil {
			return
		}
		dst := make([]byte, bufLen)
		for i := 0; !s.done(); i++ {
			if i > len(pkt) {
				t.Fatalf("more than %d segments from %d bytes", i, len(pkt))
			}
			n, err := s.next(dst)
			if err != nil {
				return // too big for the buffer: Read drops the rest
			}
			p := dst[:n]
			if n < ipv6HdrLen || n > len(dst) || int(binary.BigEndian.Uint16(p[4:]))+ipv6HdrLen != n {
				t.Fatalf("segment %d: %d bytes, IPv6 payload length %d", i, n, binary.BigEndian.Uint16(p[4:]))
			}
			proto := uint8(unix.IPPROTO_UDP)
			if s.tcp {
				proto = unix.IPPROTO_TCP
			}
			if refL4Sum(p, s.l4, proto) != 0xffff {
				t.Fatalf("segment %d: checksum does not verify", i)
			}
			if !s.tcp && int(binary.BigEndian.Uint16(p[s.l4+udpLenAt:])) != n-s.l4 {
				t.Fatalf("segment %d: UDP length %d, want %d", i, binary.BigEndian.Uint16(p[s.l4+udpLenAt:]), n-s.l4)
			}
		}
	})
}

// FuzzCoalesce runs the write-side planner over batches built from a valid
// flow with fuzzed bit flips, and arbitrary packets mixed in. It must never
// panic, every merged super-segment must have a valid IPv6 length, and
// cutting it up again must give back exactly the packets it merged
// (checksum fields aside, where 0 and 0xffff mean the same).
func FuzzCoalesce(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0, 53, 8}, []byte{})                 // a push
	f.Add([]byte{2, 47, 1}, []byte{})                 // a sequence gap
	f.Add([]byte{}, []byte{3, 0x60, 0, 0})            // junk in between
	f.Add([]byte{1, 4, 1, 1, 5, 0xfe}, []byte{80, 6}) // a length and a pay length
	f.Fuzz(func(t *testing.T, flips, raw []byte) {
		pkts := flow(6, 300, 50, nil)
		for len(flips) >= 3 {
			p := pkts[int(flips[0])%len(pkts)]
			p[int(flips[1])%len(p)] ^= flips[2]
			flips = flips[3:]
		}
		// raw: a length byte, then that many bytes, as extra packets
		// spliced in after the third.
		var extra [][]byte
		for len(raw) > 0 {
			n := min(int(raw[0]), len(raw)-1)
			extra = append(extra, raw[1:1+n])
			raw = raw[1+n:]
		}
		pkts = append(pkts[:3], append(extra, pkts[3:]...)...)
		for i := 0; i < len(pkts); {
			n, first, pay := tcpRun(pkts[i:], 0)
			if n < 1 || i+n > len(pkts) {
				t.Fatalf("run of %d at %d of %d", n, i, len(pkts))
			}
			if n > 1 {
				run := pkts[i : i+n]
				psh := run[n-1][ipv6HdrLen+tcpFlagsAt]&tcpPSH != 0
				hdr, vh := runHeader(make([]byte, 100), run[0], first, pay, psh)
				super := bytes.Clone(hdr)
				for _, p := range run {
					super = append(super, p[first.hdrLen:]...)
				}
				if pl := int(binary.BigEndian.Uint16(super[4:])); pl+ipv6HdrLen != len(super) || pl > maxIPv6Pay {
					t.Fatalf("merged IPv6 payload length %d in %d bytes", pl, len(super))
				}
				segs := make([][]byte, 0, n)
				s, err := newSegmenter(vh, super)
				if err != nil {
					t.Fatalf("merged super-segment refused: %v", err)
				}
				for !s.done() {
					b := make([]byte, 2048)
					m, err := s.next(b)
					if err != nil {
						t.Fatal(err)
					}
					segs = append(segs, b[:m])
				}
				if len(segs) != n {
					t.Fatalf("%d packets merged, %d back", n, len(segs))
				}
				for j := range segs {
					a, b := bytes.Clone(segs[j]), bytes.Clone(run[j])
					copy(a[ipv6HdrLen+tcpCsumAt:], "\x00\x00")
					copy(b[ipv6HdrLen+tcpCsumAt:], "\x00\x00")
					if !bytes.Equal(a, b) || refL4Sum(segs[j], ipv6HdrLen, unix.IPPROTO_TCP) != 0xffff {
						t.Fatalf("packet %d of a run of %d does not come back:\n%x\n%x", j, n, segs[j][:60], run[j][:60])
					}
				}
			}
			i += n
		}
	})
}

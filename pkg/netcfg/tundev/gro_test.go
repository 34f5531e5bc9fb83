// SPDX-License-Identifier: MIT

package tundev

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// flow makes count in-order segments of one flow, the last shorter by
// short bytes, each from tweak(i, spec) if tweak is set.
func flow(count, mss, short int, tweak func(i int, s *tcpSpec)) [][]byte {
	var pkts [][]byte
	seq := uint32(0xffffff00)
	for i := range count {
		n := mss
		if i == count-1 {
			n -= short
		}
		s := tcpSpec{sport: 40000, dport: 5201, seq: seq, ack: 99, flags: tcpACK, options: tsOption(5, 6), payload: pattern(n, byte(i))}
		if tweak != nil {
			tweak(i, &s)
		}
		pkts = append(pkts, s.build())
		seq += uint32(len(s.payload))
	}
	return pkts
}

// withHeadroom copies pkts behind offset bytes of headroom.
func withHeadroom(pkts [][]byte, offset int) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = append(make([]byte, offset), p...)
	}
	return out
}

func TestTCPRun(t *testing.T) {
	const mss = 1208
	other := netip.MustParseAddr("2001:db8::2")
	tests := []struct {
		name string
		pkts [][]byte
		want int
	}{
		{"one packet", flow(1, mss, 0, nil), 1},
		{"full run", flow(8, mss, 0, nil), 8},
		{"short last joins", flow(5, mss, 300, nil), 5},
		{"push ends the run, included", flow(6, mss, 0, func(i int, s *tcpSpec) {
			if i == 3 {
				s.flags |= tcpPSH
			}
		}), 4},
		{"push on the first: alone", flow(3, mss, 0, func(i int, s *tcpSpec) { s.flags |= tcpPSH }), 1},
		{"short in the middle ends it", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 1 {
				s.payload = s.payload[:100]
			}
		}), 2},
		{"longer after the first", flow(3, mss, 0, func(i int, s *tcpSpec) {
			if i == 1 {
				s.payload = append(s.payload, 1)
			}
		}), 1},
		{"sequence gap", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.seq += 1
			}
		}), 2},
		{"retransmission", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.seq -= mss
			}
		}), 2},
		{"other flow", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.src = other
			}
		}), 2},
		{"other port", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 3 {
				s.sport++
			}
		}), 3},
		{"new ack", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 1 {
				s.ack++
			}
		}), 1},
		{"new window", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.window = 1000
			}
		}), 2},
		{"new timestamp", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.options = tsOption(6, 6)
			}
		}), 2},
		{"other options length", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.options = nil
				s.payload = append(s.payload, make([]byte, 12)...)
			}
		}), 2},
		{"other traffic class", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.tclass = 0x02 // ECT(0) vs CE differs too
			}
		}), 2},
		{"other hop limit", flow(4, mss, 0, func(i int, s *tcpSpec) {
			if i == 1 {
				s.hop = 63
			}
		}), 1},
		{"bad checksum second", flow(4, mss, 0, func(i int, s *tcpSpec) { s.badChecksum = i == 1 }), 1},
		{"bad checksum third", flow(4, mss, 0, func(i int, s *tcpSpec) { s.badChecksum = i == 2 }), 2},
		{"bad checksum first", flow(4, mss, 0, func(i int, s *tcpSpec) { s.badChecksum = i == 0 }), 1},
		{"fin not merged", flow(3, mss, 0, func(i int, s *tcpSpec) {
			if i == 2 {
				s.flags |= tcpFIN
			}
		}), 2},
		{"syn not merged", flow(3, mss, 0, func(i int, s *tcpSpec) { s.flags |= tcpSYN }), 1},
		{"rst not merged", flow(3, mss, 0, func(i int, s *tcpSpec) {
			if i == 1 {
				s.flags |= tcpRST
			}
		}), 1},
		{"ece on all merges", flow(3, mss, 0, func(i int, s *tcpSpec) { s.flags |= tcpECE }), 3},
		{"ece on some does not", flow(3, mss, 0, func(i int, s *tcpSpec) {
			if i == 1 {
				s.flags |= tcpECE
			}
		}), 1},
		{"cwr not merged", flow(3, mss, 0, func(i int, s *tcpSpec) { s.flags |= tcpCWR }), 1},
		{"pure acks", flow(3, 0, 0, nil), 1},
		{"extension header", flow(3, mss, 0, func(i int, s *tcpSpec) { s.extHdr = make([]byte, 8) }), 1},
		{"at most maxRunSegments", flow(maxRunSegments+5, 100, 0, nil), maxRunSegments},
		{"at most 64 KiB", flow(60, mss, 0, nil), (maxIPv6Pay - 32) / mss},
		{"udp", [][]byte{udp6(pattern(100, 1), false), udp6(pattern(100, 1), false)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, offset := range []int{0, 10, 16} {
				n, first, pay := tcpRun(withHeadroom(tt.pkts, offset), offset)
				if n != tt.want {
					t.Fatalf("offset %d: run of %d, want %d", offset, n, tt.want)
				}
				want := 0
				if n > 1 {
					for _, p := range tt.pkts[:n] {
						want += len(p) - first.hdrLen
					}
				}
				if pay != want {
					t.Errorf("offset %d: payload %d, want %d", offset, pay, want)
				}
			}
		})
	}
}

// merge builds the super-segment a run makes, as the kernel receives it
// from writev: runHeader's headers, then every payload.
func merge(t *testing.T, pkts [][]byte) (vnetHdr, []byte) {
	t.Helper()
	n, first, pay := tcpRun(pkts, 0)
	if n != len(pkts) {
		t.Fatalf("run of %d, want %d", n, len(pkts))
	}
	psh := pkts[n-1][53]&tcpPSH != 0
	hdr, vh := runHeader(make([]byte, 100), pkts[0], first, pay, psh)
	super := bytes.Clone(hdr)
	for _, p := range pkts {
		super = append(super, p[first.hdrLen:]...)
	}
	return vh, super
}

// A run merged and then cut up again by the kernel's rules (our segmenter)
// gives back the very packets it was made of.
func TestCoalesceThenSplitRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		pkts [][]byte
	}{
		{"full", flow(10, 1208, 0, nil)},
		{"short tail with push", flow(7, 1208, 500, func(i int, s *tcpSpec) {
			if i == 6 {
				s.flags |= tcpPSH
			}
		})},
		{"no options, odd mss", flow(5, 1001, 1000, func(i int, s *tcpSpec) { s.options = nil })},
		{"ece", flow(3, 500, 0, func(i int, s *tcpSpec) { s.flags |= tcpECE })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vh, super := merge(t, tt.pkts)
			if vh.gsoType != unix.VIRTIO_NET_HDR_GSO_TCPV6 || !vh.needsCsum() || vh.csumStart != 40 || vh.csumOffset != 16 ||
				int(vh.hdrLen) != 40+int(tt.pkts[0][52]>>4)*4 || int(vh.gsoSize) != len(tt.pkts[0])-int(vh.hdrLen) {
				t.Errorf("virtio header %+v", vh)
			}
			if pl := int(binary.BigEndian.Uint16(super[4:])); pl+40 != len(super) {
				t.Errorf("merged payload length %d in %d bytes", pl, len(super))
			}
			// The partial checksum the kernel finishes: pseudo-header sum in
			// the field, so the whole sums to the full checksum.
			done := bytes.Clone(super)
			if err := completeChecksum(done, vh); err != nil {
				t.Fatal(err)
			}
			if s := refL4Sum(done, 40, unix.IPPROTO_TCP); s != 0xffff {
				t.Errorf("merged checksum does not verify: %#04x", s)
			}
			segs := cutAll(t, vh, super)
			if len(segs) != len(tt.pkts) {
				t.Fatalf("%d segments back, want %d", len(segs), len(tt.pkts))
			}
			for i := range segs {
				if !bytes.Equal(segs[i], tt.pkts[i]) {
					t.Errorf("segment %d differs:\n%x\nwant\n%x", i, segs[i][:80], tt.pkts[i][:80])
				}
			}
		})
	}
}

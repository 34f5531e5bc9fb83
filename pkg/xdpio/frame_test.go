// SPDX-License-Identifier: MIT

package xdpio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

var (
	testSrc = netip.MustParseAddrPort("198.51.100.2:40000")
	testDst = netip.MustParseAddrPort("192.0.2.10:3544")
	testHdr = frameHeader{
		dstMAC:      [6]byte{0x02, 0, 0, 0, 0, 0x01},
		srcMAC:      [6]byte{0x02, 0, 0, 0, 0, 0x02},
		id:          0x1234,
		udpChecksum: true,
	}
)

// frame builds a valid frame carrying payload from testSrc to testDst, then
// lets edit damage it.
func frame(payload []byte, edit func(f []byte) []byte) []byte {
	h := testHdr
	f := make([]byte, headersLen+len(payload))
	buildFrame(f, &h, testSrc, testDst, payload)
	if edit != nil {
		f = edit(f)
	}
	return f
}

// refChecksum is RFC 1071 the plain way: 16-bit words, one at a time.
func refChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestChecksum(t *testing.T) {
	b := make([]byte, 200)
	for i := range b {
		b[i] = byte(i*37 + 11)
	}
	for n := 0; n <= len(b); n++ {
		if got, want := checksum(0, b[:n]), refChecksum(b[:n]); got != want {
			t.Fatalf("checksum of %d bytes = %#04x, want %#04x", n, got, want)
		}
	}
	all := bytes.Repeat([]byte{0xff}, 64) // carries in every word
	if got, want := checksum(0xffffffffffffffff, all), refChecksum(all); got != want {
		t.Errorf("checksum with carries = %#04x, want %#04x", got, want)
	}
	// RFC 1071 §3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
	if got := checksum(0, []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("RFC 1071 example: %#04x, want %#04x", got, ^uint16(0xddf2))
	}
}

func TestBuildFrame(t *testing.T) {
	payload := []byte("teredo payload, odd length")
	h := testHdr
	f := make([]byte, 2048)
	n := buildFrame(f, &h, testSrc, testDst, payload)
	f = f[:n]
	if n != headersLen+len(payload) {
		t.Fatalf("length %d, want %d", n, headersLen+len(payload))
	}
	if h.id != testHdr.id+1 {
		t.Errorf("identification not advanced: %#x", h.id)
	}
	want := []byte{
		0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, // Ethernet
		0x45, 0, 0, byte(28 + len(payload)), 0x12, 0x34, 0x40, 0, 64, 17, // IPv4 up to protocol
	}
	if !bytes.Equal(f[:len(want)], want) {
		t.Errorf("headers\n got % x\nwant % x", f[:len(want)], want)
	}
	if refChecksum(f[14:34]) != 0 {
		t.Errorf("IPv4 header checksum wrong: % x", f[14:34])
	}
	// UDP checksum over the pseudo-header, checked the plain way.
	pseudo := append(append([]byte{}, f[26:34]...), 0, 17, 0, byte(8+len(payload)))
	if refChecksum(append(pseudo, f[34:]...)) != 0 {
		t.Errorf("UDP checksum wrong: % x", f[34:42])
	}
	dg, why := parseFrame(f)
	if why != rxOK || dg.src != testSrc || dg.dst != testDst || !bytes.Equal(dg.payload, payload) {
		t.Errorf("parse of built frame: %v %v %v %q", why, dg.src, dg.dst, dg.payload)
	}

	h.udpChecksum = false
	f = f[:cap(f)]
	n = buildFrame(f, &h, testSrc, testDst, payload)
	if sum := binary.BigEndian.Uint16(f[40:42]); sum != 0 {
		t.Errorf("checksum off: UDP checksum %#04x, want 0", sum)
	}
	if _, why := parseFrame(f[:n]); why != rxOK {
		t.Errorf("frame without UDP checksum: %v", why)
	}
}

// TestBuildFrameChecksumNeverZero: a datagram whose checksum computes to 0
// carries 0xffff (RFC 768).
func TestBuildFrameChecksumNeverZero(t *testing.T) {
	h := testHdr
	f := make([]byte, 64)
	payload := []byte{0, 0}
	buildFrame(f, &h, testSrc, testDst, payload)
	// Choose the payload so that the sum is 0xffff: the checksum is then 0.
	sum := binary.BigEndian.Uint16(f[40:42])
	binary.BigEndian.PutUint16(payload, sum)
	h = testHdr
	n := buildFrame(f, &h, testSrc, testDst, payload)
	if got := binary.BigEndian.Uint16(f[40:42]); got != 0xffff {
		t.Fatalf("UDP checksum %#04x, want 0xffff", got)
	}
	if _, why := parseFrame(f[:n]); why != rxOK {
		t.Errorf("parse: %v", why)
	}
}

func TestParseFrame(t *testing.T) {
	payload := []byte("0123456789abcdef")
	set16 := func(off int, v uint16) func([]byte) []byte {
		return func(f []byte) []byte { binary.BigEndian.PutUint16(f[off:], v); return f }
	}
	// fixIP recomputes the IPv4 header checksum after an edit.
	fixIP := func(edit func([]byte) []byte) func([]byte) []byte {
		return func(f []byte) []byte {
			f = edit(f)
			ihl := int(f[14]&0x0f) * 4
			f[24], f[25] = 0, 0
			binary.BigEndian.PutUint16(f[24:], checksum(0, f[14:14+ihl]))
			return f
		}
	}
	tests := []struct {
		name string
		f    []byte
		want RXDrop
		pay  []byte // expected payload when accepted
	}{
		{"valid", frame(payload, nil), rxOK, payload},
		{"ethernet padding ignored", frame(payload, func(f []byte) []byte { return append(f, 0, 0, 0, 0) }), rxOK, payload},
		{"empty payload", frame(nil, nil), rxOK, []byte{}},
		{"zero UDP checksum", frame(payload, set16(40, 0)), rxOK, payload},
		{"partial UDP checksum (offload)", frame(payload, func(f []byte) []byte {
			binary.BigEndian.PutUint16(f[40:], fold(pseudoSum(f[26:34], 8+len(payload))))
			return f
		}), rxOK, payload},
		{"UDP length shorter than IP payload", frame(payload, func(f []byte) []byte {
			binary.BigEndian.PutUint16(f[38:], 8+4)
			f[40], f[41] = 0, 0
			return f
		}), rxOK, payload[:4]},
		{"IP options", frame(payload, fixIP(func(f []byte) []byte {
			g := append(append(append([]byte{}, f[:34]...), 1, 1, 1, 0), f[34:]...)
			g[14] = 0x46
			binary.BigEndian.PutUint16(g[16:], uint16(len(g)-14))
			return g
		})), rxOK, payload},
		{"empty", nil, DropShort, nil},
		{"41 bytes", frame(payload, nil)[:41], DropShort, nil},
		{"ARP", frame(payload, set16(12, 0x0806)), DropNotIPv4, nil},
		{"IPv6 ethertype", frame(payload, set16(12, 0x86dd)), DropNotIPv4, nil},
		{"version 6", frame(payload, func(f []byte) []byte { f[14] = 0x65; return f }), DropNotIPv4, nil},
		{"IHL 4", frame(payload, func(f []byte) []byte { f[14] = 0x44; return f }), DropBadHeader, nil},
		{"IHL past the frame", frame(nil, func(f []byte) []byte { f[14] = 0x4f; return f }), DropBadHeader, nil},
		{"total length past the frame", frame(payload, set16(16, 200)), DropBadHeader, nil},
		{"total length under the header", frame(payload, set16(16, 19)), DropBadHeader, nil},
		{"IP checksum", frame(payload, func(f []byte) []byte { f[24] ^= 1; return f }), DropIPChecksum, nil},
		{"IP address corrupted", frame(payload, func(f []byte) []byte { f[29] ^= 0x80; return f }), DropIPChecksum, nil},
		{"more fragments", frame(payload, fixIP(set16(20, 0x2000))), DropFragment, nil},
		{"fragment offset", frame(payload, fixIP(set16(20, 0x0001))), DropFragment, nil},
		{"DF alone is fine", frame(payload, fixIP(set16(20, 0x4000))), rxOK, payload},
		{"TCP", frame(payload, fixIP(func(f []byte) []byte { f[23] = 6; return f })), DropNotUDP, nil},
		{"UDP length 7", frame(payload, set16(38, 7)), DropUDPLength, nil},
		{"UDP length past IP payload", frame(payload, set16(38, uint16(8+len(payload)+1))), DropUDPLength, nil},
		{"IP payload under a UDP header", frame(payload, fixIP(set16(16, 20+7))), DropUDPLength, nil},
		{"UDP checksum", frame(payload, func(f []byte) []byte { f[41] ^= 1; return f }), DropUDPChecksum, nil},
		{"payload corrupted", frame(payload, func(f []byte) []byte { f[45] ^= 0x10; return f }), DropUDPChecksum, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dg, why := parseFrame(tt.f)
			if why != tt.want {
				t.Fatalf("parseFrame = %v, want %v", why, tt.want)
			}
			if why != rxOK {
				return
			}
			if dg.src != testSrc || dg.dst != testDst {
				t.Errorf("endpoints %v -> %v, want %v -> %v", dg.src, dg.dst, testSrc, testDst)
			}
			if !bytes.Equal(dg.payload, tt.pay) {
				t.Errorf("payload %q, want %q", dg.payload, tt.pay)
			}
		})
	}
}

func TestRXDropString(t *testing.T) {
	seen := map[string]bool{}
	for r := RXDrop(0); r < NumRXDrops; r++ {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("RXDrop(%d) has name %q", r, s)
		}
		seen[s] = true
	}
	if NumRXDrops.String() != "unknown" {
		t.Errorf("out of range: %q", NumRXDrops.String())
	}
}

func TestFrameAllocs(t *testing.T) {
	payload := make([]byte, 100)
	f := make([]byte, 2048)
	h := testHdr
	allocs := testing.AllocsPerRun(100, func() {
		n := buildFrame(f, &h, testSrc, testDst, payload)
		if _, why := parseFrame(f[:n]); why != rxOK {
			t.Fatal(why)
		}
	})
	if allocs != 0 {
		t.Errorf("build and parse: %v allocations per frame, want 0", allocs)
	}
}

// FuzzParseFrame: parseFrame never panics, accepts only what it can vouch
// for, and an accepted datagram rebuilt by buildFrame parses to the same.
func FuzzParseFrame(f *testing.F) {
	payload := []byte("fuzz seed payload")
	f.Add(frame(payload, nil))
	f.Add(frame(nil, nil))
	f.Add(frame(payload, func(b []byte) []byte { b[40], b[41] = 0, 0; return b }))
	f.Add(frame(payload, func(b []byte) []byte { b[14] = 0x46; return b }))
	f.Add(frame(payload, func(b []byte) []byte { b[20] = 0x20; return b }))
	f.Add(frame(payload, func(b []byte) []byte { return b[:30] }))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dg, why := parseFrame(b)
		if why >= NumRXDrops {
			t.Fatalf("reason %d out of range", why)
		}
		if why != rxOK {
			return
		}
		if !dg.src.Addr().Is4() || !dg.dst.Addr().Is4() || len(dg.payload) > len(b)-headersLen {
			t.Fatalf("accepted %v -> %v with %d payload bytes from %d", dg.src, dg.dst, len(dg.payload), len(b))
		}
		h := testHdr
		out := make([]byte, headersLen+len(dg.payload))
		buildFrame(out, &h, dg.src, dg.dst, dg.payload)
		again, why := parseFrame(out)
		if why != rxOK || again.src != dg.src || again.dst != dg.dst || !bytes.Equal(again.payload, dg.payload) {
			t.Fatalf("rebuilt frame parses to %v %v %v", why, again.src, again.dst)
		}
	})
}

// BenchmarkBuildFrame: the cost of the UDP checksum on a sent frame, for
// payloads the size of a router advertisement and of a full frame.
func BenchmarkBuildFrame(b *testing.B) {
	for _, size := range []int{100, 1400} {
		for _, sum := range []bool{false, true} {
			name := fmt.Sprintf("payload=%d/udp_checksum=%v", size, sum)
			b.Run(name, func(b *testing.B) {
				payload := make([]byte, size)
				f := make([]byte, 2048)
				h := testHdr
				h.udpChecksum = sum
				b.SetBytes(int64(size))
				for b.Loop() {
					buildFrame(f, &h, testSrc, testDst, payload)
				}
			})
		}
	}
}

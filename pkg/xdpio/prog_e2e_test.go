// SPDX-License-Identifier: MIT

//go:build e2e && linux

package xdpio

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// TestSteerProgramVerdicts runs the program in the kernel (BPF_PROG_TEST_RUN,
// no interface needed) on frames of every kind. The production program
// passes a steered frame whose queue has no socket; here that action is
// XDP_TX instead, so a steered frame is told from a passed one.
func TestSteerProgramVerdicts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root (CAP_BPF and CAP_NET_ADMIN)")
	}
	high := netip.MustParseAddr("203.0.113.200") // last byte ≥ 128: no sign extension
	addrs := []netip.Addr{testDst.Addr(), netip.MustParseAddr("192.0.2.11"), high}
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer xsks.Close()
	insns, err := steerProgram(addrs, DefaultPort, rxFrameMax, xsks.FD(), xdpTX, binary.NativeEndian)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: license, Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()

	payload := []byte("router solicitation, say")
	to := func(dst netip.AddrPort) func([]byte) []byte {
		return func(f []byte) []byte {
			h := testHdr
			buildFrame(f, &h, testSrc, dst, f[headersLen:])
			return f
		}
	}
	set := func(off int, b ...byte) func([]byte) []byte {
		return func(f []byte) []byte { copy(f[off:], b); return f }
	}
	sized := func(n int) []byte {
		h := testHdr
		f := make([]byte, n)
		buildFrame(f, &h, testSrc, testDst, f[headersLen:])
		return f
	}
	const steered, passed = xdpTX, xdpPass
	tests := []struct {
		name string
		f    []byte
		want uint32
	}{
		{"to the first address", frame(payload, nil), steered},
		{"to the second address", frame(payload, to(netip.MustParseAddrPort("192.0.2.11:3544"))), steered},
		{"to an address ending in 200", frame(payload, to(netip.AddrPortFrom(high, DefaultPort))), steered},
		{"to another address", frame(payload, to(netip.MustParseAddrPort("192.0.2.12:3544"))), passed},
		{"to another port", frame(payload, to(netip.MustParseAddrPort("192.0.2.10:3545"))), passed},
		{"port bytes swapped", frame(payload, to(netip.MustParseAddrPort("192.0.2.10:55309"))), passed},
		{"DF set", frame(payload, set(20, 0x40, 0)), steered},
		{"more fragments", frame(payload, set(20, 0x20, 0)), passed},
		{"fragment offset", frame(payload, set(20, 0, 1)), passed},
		{"IP options", frame(payload, set(14, 0x46)), passed},
		{"TCP", frame(payload, set(23, 6)), passed},
		{"ARP", frame(payload, set(12, 0x08, 0x06)), passed},
		{"IPv6", frame(payload, set(12, 0x86, 0xdd)), passed},
		{"VLAN tag", frame(payload, set(12, 0x81, 0x00)), passed},
		{"41 bytes", frame(payload, nil)[:41], passed},
		{"42 bytes", frame(nil, nil), steered},
		{"largest frame a UMEM frame holds", sized(rxFrameMax), steered},
		{"one byte longer", sized(rxFrameMax + 1), passed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := prog.Run(&ebpf.RunOptions{Data: tt.f})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}

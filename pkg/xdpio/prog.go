// SPDX-License-Identifier: MIT

package xdpio

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf/asm"
)

// The steering program, assembled in Go (no C compiler at build or run
// time). steerProgram returns the same instructions for the same inputs;
// testdata/steer.golden holds the listing for the lab's two addresses and
// TestSteerProgramGolden keeps it in step (go test -run Golden -update
// rewrites it).
//
// It redirects to the AF_XDP socket of the receiving queue, through the
// XSKMAP, exactly the frames that are:
//
//	Ethernet II, ethertype IPv4 (VLAN-tagged frames are not ours),
//	IPv4 with a 20-byte header (no options: the kernel handles those),
//	not a fragment (MF clear and offset 0: the kernel reassembles),
//	protocol UDP, destination port `port`,
//	destination address one of `addrs`,
//	at most maxFrame bytes long (what fits in a UMEM frame).
//
// Everything else returns XDP_PASS, to the kernel untouched: ARP, IPv6,
// ICMP, other ports, fragments, options. A frame that matches but whose
// queue has no socket in the map also passes (bpf_redirect_map's flags
// carry the action for a missing entry, Linux ≥ 5.6), and reaches the
// kernel UDP socket every Conn keeps on each address.
//
// Loads are in the host's byte order, so the constants the program compares
// them with are the network-order bytes read in that order (bo); 32-bit jumps
// compare the low 32 bits, so an address whose last byte is ≥ 128 is not
// sign-extended.

// xdp_md field offsets (struct xdp_md in <linux/bpf.h>).
const (
	xdpMDData         = 0
	xdpMDDataEnd      = 4
	xdpMDRxQueueIndex = 16
)

// XDP actions (enum xdp_action).
const (
	xdpPass = 2
	xdpTX   = 3
)

// maxSteerAddrs bounds the address set: one compare-and-jump each.
const maxSteerAddrs = 16

// steerProgram assembles the program for addrs (IPv4, 1 to maxSteerAddrs)
// and port, redirecting through the XSKMAP whose descriptor is xskMap and
// giving missing (what a frame meant for a queue without a socket gets:
// xdpPass in production). bo is the host's byte order.
func steerProgram(addrs []netip.Addr, port uint16, maxFrame int, xskMap int, missing int32, bo binary.ByteOrder) (asm.Instructions, error) {
	if len(addrs) == 0 || len(addrs) > maxSteerAddrs {
		return nil, fmt.Errorf("xdpio: %d addresses, want 1 to %d", len(addrs), maxSteerAddrs)
	}
	u16 := func(b0, b1 byte) int32 { return int32(bo.Uint16([]byte{b0, b1})) }
	u32 := func(b [4]byte) int32 { return int32(bo.Uint32(b[:])) }
	const pass = "pass"
	insns := asm.Instructions{
		// r2 = ctx->data, r3 = ctx->data_end: the frame is [r2, r3).
		asm.LoadMem(asm.R2, asm.R1, xdpMDData, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, xdpMDDataEnd, asm.Word),
		// r4 = r2 + 42; if r4 > r3: shorter than Ethernet+IPv4+UDP
		// headers, pass. This bound also proves to the verifier that the
		// loads below, all within the first 42 bytes, stay in the frame.
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, headersLen),
		asm.JGT.Reg(asm.R4, asm.R3, pass),
		// r5 = ethertype (bytes 12-13); not IPv4: pass.
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm32(asm.R5, u16(0x08, 0x00), pass),
		// r5 = version and header length (byte 14); not 0x45 (IPv4,
		// 20-byte header): pass.
		asm.LoadMem(asm.R5, asm.R2, ethHeaderLen, asm.Byte),
		asm.JNE.Imm32(asm.R5, 0x45, pass),
		// r5 = flags and fragment offset (bytes 20-21), keep MF and the
		// offset (mask 0x3fff in network order); a fragment: pass.
		asm.LoadMem(asm.R5, asm.R2, ethHeaderLen+6, asm.Half),
		asm.And.Imm32(asm.R5, u16(0x3f, 0xff)),
		asm.JNE.Imm32(asm.R5, 0, pass),
		// r5 = protocol (byte 23); not UDP: pass.
		asm.LoadMem(asm.R5, asm.R2, ethHeaderLen+9, asm.Byte),
		asm.JNE.Imm32(asm.R5, protoUDP, pass),
		// r5 = UDP destination port (bytes 36-37); not ours: pass.
		asm.LoadMem(asm.R5, asm.R2, ethHeaderLen+ipv4MinHeader+2, asm.Half),
		asm.JNE.Imm32(asm.R5, u16(byte(port>>8), byte(port)), pass),
		// r4 = r2 + maxFrame; if r4 < r3 the frame is longer than a UMEM
		// frame holds: pass (the kernel delivers it to the Conn's UDP
		// socket). Comparing packet pointers, not subtracting them,
		// which the verifier allows only with CAP_PERFMON.
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, int32(maxFrame)),
		asm.JLT.Reg(asm.R4, asm.R3, pass),
		// r5 = IPv4 destination address (bytes 30-33).
		asm.LoadMem(asm.R5, asm.R2, ethHeaderLen+16, asm.Word),
	}
	// One compare per address: equal jumps to the redirect.
	for _, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("xdpio: %v is not an IPv4 address", a)
		}
		insns = append(insns, asm.JEq.Imm32(asm.R5, u32(a.As4()), "redirect"))
	}
	insns = append(insns,
		// None matched: pass.
		asm.Ja.Label(pass),
		// return bpf_redirect_map(xsks, ctx->rx_queue_index, missing):
		// r2 = the queue (read from ctx in r1 before r1 is reused),
		// r1 = the map, r3 = the action when the queue has no socket.
		asm.LoadMem(asm.R2, asm.R1, xdpMDRxQueueIndex, asm.Word).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, xskMap),
		asm.Mov.Imm(asm.R3, missing),
		asm.FnRedirectMap.Call(),
		asm.Return(),
		// return XDP_PASS.
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol(pass),
		asm.Return(),
	)
	return insns, nil
}

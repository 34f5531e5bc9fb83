// SPDX-License-Identifier: MIT

package xdpio

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/steer.golden")

// labAddrs are the lab server's two addresses, the program the golden file
// lists.
var labAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")}

// goldenFD stands for the XSKMAP's descriptor in the listing.
const goldenFD = 3

// steerListing is the golden file's content: the instructions as the asm
// package prints them, then the bytecode in hex, one instruction a line.
func steerListing(t *testing.T) []byte {
	t.Helper()
	insns, err := steerProgram(labAddrs, DefaultPort, rxFrameMax, goldenFD, xdpPass, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# steerProgram(%v, %d, %d, fd %d, XDP_PASS, little-endian)\n", labAddrs, DefaultPort, rxFrameMax, goldenFD)
	fmt.Fprintf(&b, "# regenerate: go test ./pkg/xdpio -run Golden -update\n\n%v\n", insns)
	var raw bytes.Buffer
	if err := insns.Marshal(&raw, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < raw.Len(); i += 8 {
		fmt.Fprintf(&b, "%x\n", raw.Bytes()[i:i+8])
	}
	return b.Bytes()
}

func TestSteerProgramGolden(t *testing.T) {
	got := steerListing(t)
	path := filepath.Join("testdata", "steer.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("steerProgram differs from %s (run with -update if intended):\n%s", path, got)
	}
}

func TestSteerProgramRefuses(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1")
	many := make([]netip.Addr, maxSteerAddrs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
	}
	for _, addrs := range [][]netip.Addr{nil, {v6}, many} {
		if _, err := steerProgram(addrs, DefaultPort, rxFrameMax, goldenFD, xdpPass, binary.LittleEndian); err == nil {
			t.Errorf("steerProgram(%v) accepted", addrs)
		}
	}
}

// SPDX-License-Identifier: MIT

package dropprivs

import (
	"fmt"
	"strconv"
	"strings"
)

// Cap is a Linux capability number, as in <linux/capability.h>.
type Cap uint

// The capabilities the Teredo daemons keep (see the package doc), plus
// those the dropping itself needs.
const (
	CapSetGID         Cap = 6
	CapSetUID         Cap = 7
	CapSetPCap        Cap = 8
	CapNetBindService Cap = 10
	CapNetAdmin       Cap = 12
	CapNetRaw         Cap = 13
	CapSysChroot      Cap = 18
)

// capNames lists every capability Linux 6.x knows, by number.
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// maxCap bounds capability numbers: a CapSet is one 64-bit mask, as the
// kernel's two 32-bit words are.
const maxCap Cap = 63

func (c Cap) String() string {
	if int(c) < len(capNames) {
		return capNames[c]
	}
	return "CAP_" + strconv.Itoa(int(c))
}

// ParseCap reads a capability name: "CAP_NET_RAW", "cap_net_raw" or
// "net_raw".
func ParseCap(s string) (Cap, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "CAP_") {
		name = "CAP_" + name
	}
	for i, n := range capNames {
		if n == name {
			return Cap(i), nil
		}
	}
	return 0, fmt.Errorf("dropprivs: unknown capability %q", s)
}

// CapSet is a set of capabilities as one bit mask, bit n for capability n:
// the layout of the CapPrm/CapEff/... lines of /proc/PID/status.
type CapSet uint64

// NewCapSet returns the set holding caps.
func NewCapSet(caps ...Cap) CapSet {
	var s CapSet
	for _, c := range caps {
		if c <= maxCap {
			s |= 1 << c
		}
	}
	return s
}

// allCaps is the set of capabilities 0..last.
func allCaps(last Cap) CapSet {
	if last >= maxCap {
		return ^CapSet(0)
	}
	return 1<<(last+1) - 1
}

// Has reports whether c is in s.
func (s CapSet) Has(c Cap) bool { return c <= maxCap && s&(1<<c) != 0 }

// Without returns s minus the capabilities in o.
func (s CapSet) Without(o CapSet) CapSet { return s &^ o }

// Caps lists the capabilities in s in ascending order.
func (s CapSet) Caps() []Cap {
	var out []Cap
	for c := Cap(0); c <= maxCap; c++ {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// String is the comma-separated list of names, or "none".
func (s CapSet) String() string {
	if s == 0 {
		return "none"
	}
	var b strings.Builder
	for i, c := range s.Caps() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.String())
	}
	return b.String()
}

// words splits s into the low and high 32-bit words of capset(2)'s
// version-3 data.
func (s CapSet) words() (lo, hi uint32) { return uint32(s), uint32(s >> 32) }

func capSetFromWords(lo, hi uint32) CapSet { return CapSet(hi)<<32 | CapSet(lo) }

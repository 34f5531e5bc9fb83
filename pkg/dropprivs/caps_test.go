// SPDX-License-Identifier: MIT

package dropprivs

import (
	"slices"
	"testing"
)

func TestCapSet(t *testing.T) {
	s := NewCapSet(CapNetAdmin, CapNetRaw)
	if s != 0x3000 {
		t.Errorf("NewCapSet(NET_ADMIN, NET_RAW) = %#x, want 0x3000", uint64(s))
	}
	if !s.Has(CapNetRaw) || s.Has(CapSetPCap) || s.Has(200) {
		t.Errorf("Has on %s", s)
	}
	if got := s.Without(NewCapSet(CapNetAdmin)); got != NewCapSet(CapNetRaw) {
		t.Errorf("Without = %s", got)
	}
	if got := s.Caps(); !slices.Equal(got, []Cap{CapNetAdmin, CapNetRaw}) {
		t.Errorf("Caps = %v", got)
	}
	if NewCapSet(64, 1000) != 0 {
		t.Error("out-of-range caps must be ignored")
	}
	tests := []struct {
		set  CapSet
		want string
	}{
		{0, "none"},
		{NewCapSet(CapNetRaw), "CAP_NET_RAW"},
		{NewCapSet(CapNetAdmin, CapNetRaw), "CAP_NET_ADMIN,CAP_NET_RAW"},
		{NewCapSet(40, 41), "CAP_CHECKPOINT_RESTORE,CAP_41"},
	}
	for _, tt := range tests {
		if got := tt.set.String(); got != tt.want {
			t.Errorf("%#x.String() = %q, want %q", uint64(tt.set), got, tt.want)
		}
	}
}

func TestAllCaps(t *testing.T) {
	tests := []struct {
		last Cap
		want CapSet
	}{
		{0, 0x1},
		{40, 0x1ffffffffff}, // Linux 5.9 to 6.x: CapBnd of root
		{63, ^CapSet(0)},
		{70, ^CapSet(0)},
	}
	for _, tt := range tests {
		if got := allCaps(tt.last); got != tt.want {
			t.Errorf("allCaps(%d) = %#x, want %#x", tt.last, uint64(got), uint64(tt.want))
		}
	}
}

func TestWords(t *testing.T) {
	s := NewCapSet(CapNetRaw, 33, 40)
	lo, hi := s.words()
	if lo != 1<<13 || hi != 1<<1|1<<8 {
		t.Errorf("words = %#x, %#x", lo, hi)
	}
	if capSetFromWords(lo, hi) != s {
		t.Errorf("round trip: %s", capSetFromWords(lo, hi))
	}
}

func TestParseCap(t *testing.T) {
	tests := []struct {
		in   string
		want Cap
		ok   bool
	}{
		{"CAP_NET_RAW", CapNetRaw, true},
		{"cap_net_admin", CapNetAdmin, true},
		{" net_bind_service ", CapNetBindService, true},
		{"CAP_CHOWN", 0, true},
		{"CAP_CHECKPOINT_RESTORE", 40, true},
		{"CAP_NOPE", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseCap(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseCap(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for c := Cap(0); int(c) < len(capNames); c++ {
		if got, err := ParseCap(c.String()); err != nil || got != c {
			t.Errorf("ParseCap(%s) = %v, %v", c, got, err)
		}
	}
}

// SPDX-License-Identifier: MIT

package conf

import (
	"net/netip"
	"testing"
)

// TestInetAton pins glibc's inet_aton forms. The rows marked "checked" were
// run through Debian's miredo-checkconf 1.2.6 (BindAddress, in a network
// namespace without interfaces, so no name could go to DNS).
func TestInetAton(t *testing.T) {
	cases := []struct {
		in   string
		want string // "" for not an inet_aton form
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"10.1", "10.0.0.1"},
		{"0x7f.1", "127.0.0.1"},          // checked
		{"017.0.0.1", "15.0.0.1"},        // checked
		{"3221226084", "192.0.2.100"},    // checked
		{"192.0.0x264", "192.0.2.100"},   // checked
		{"0xC0.0.2.0144", "192.0.2.100"}, // mixed bases
		{"0", "0.0.0.0"},
		{"4294967295", "255.255.255.255"},
		{"1.16777215", "1.255.255.255"},
		{"1.2.65535", "1.2.255.255"},
		{"1.2.65536", ""},   // checked: the last of three parts is 16 bits
		{"4294967296", ""},  // checked: more than 32 bits
		{"192.0.2.256", ""}, // checked
		{"1.16777216", ""},
		{"256.0.0.1", ""},
		{"1.2.3.4.5", ""},
		{"1.2.3.", ""},
		{".1.2.3", ""},
		{"1..2", ""},
		{"08.0.0.1", ""}, // 8 is no octal digit
		{"0x.1", ""},     // "0x" without a hex digit reads "0", then 'x'
		{"+1.2.3.4", ""}, // each part starts with a digit
		{"1.-2.3.4", ""},
		{"1.2.3.4 ", ""},
		{"99999999999999999999999", ""},
		{"", ""},
	}
	for _, tc := range cases {
		a, ok := inetAton(tc.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("inetAton(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestParseUint pins C's strtoul(…, 0) as Miredo's miredo_conf_get_int16
// uses it; "checked" rows were run through miredo-checkconf (BindPort).
func TestParseUint(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"-0", 0, true},     // checked
		{"+0x10", 16, true}, // checked
		{"08", 0, false},    // checked
		{"0x", 0, false},    // checked
		{"-1", 0, false},    // checked: wraps to ULONG_MAX
		{"65536", 0, false}, // checked
		{"65535", 65535, true},
		{"0xFFFF", 65535, true},
		{"0177777", 65535, true},
		{"0200000", 0, false},
		{"00", 0, true},
		{"0x0", 0, true},
		{"1 ", 0, false},
		{" 1", 0, false}, // tokens never hold spaces; refuse rather than skip
		{"18446744073709551615", 0, false},
		{"18446744073709551616", 0, false},
		{"", 0, false},
		{"-", 0, false},
	}
	for _, tc := range cases {
		got, err := parseUint(tc.in, 0, 65535)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseUint(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestCheckHostName(t *testing.T) {
	good := []string{"a", "teredo.example.net", "teredo.example.net.", "x_y-z.example", "0a.example", "1.example", "a.b1"}
	bad := []string{"", ".", "a..b", "a b", "é.example", "a.1", "1.2.3.4.5", "host:53", "[::1]"}
	for _, s := range good {
		if err := checkHostName(s); err != nil {
			t.Errorf("checkHostName(%q) = %v", s, err)
		}
	}
	for _, s := range bad {
		if checkHostName(s) == nil {
			t.Errorf("checkHostName(%q) accepted", s)
		}
	}
	long := ""
	for len(long) < 260 {
		long += "abcdefghi."
	}
	if checkHostName(long[:253]) != nil || checkHostName(long[:253]+"x") == nil {
		t.Errorf("253-byte limit misplaced")
	}
}

func TestIsGlobalUnicastNonIPv4(t *testing.T) {
	if isGlobalUnicastIPv4(netip.MustParseAddr("2001:db8::1")) || isGlobalUnicastIPv4(netip.Addr{}) {
		t.Error("non-IPv4 address counted as global IPv4")
	}
}

// SPDX-License-Identifier: MIT

package client

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestConfigCheck(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want error
		chk  func(t *testing.T, c Config)
	}{
		{"defaults", Config{Server: "teredo.example.net"}, nil, func(t *testing.T, c Config) {
			if c.Interface != "teredo" || c.BindAddress != netip.IPv4Unspecified() || c.Refresh != 30*time.Second || c.LogLevel != "info" {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"IPv4 literal, mapped", Config{Server: "::ffff:192.0.2.1"}, nil, func(t *testing.T, c Config) {
			if c.Server != "192.0.2.1" {
				t.Errorf("server %q", c.Server)
			}
		}},
		{"no server", Config{}, ErrNoServer, nil},
		{"private server", Config{Server: "192.168.1.1"}, ErrNotGlobal, nil},
		{"6to4 anycast server", Config{Server: "192.88.99.1"}, ErrNotGlobal, nil},
		{"IPv6 server", Config{Server: "2001:db8::1"}, ErrNotGlobal, nil},
		{"private secondary", Config{Server: "192.0.2.1", Server2: "10.0.0.1"}, ErrNotGlobal, nil},
		{"short dotted number", Config{Server: "1.2.3"}, ErrServerName, nil},
		{"underscore", Config{Server: "a_b.example"}, ErrServerName, nil},
		{"leading hyphen", Config{Server: "-a.example"}, ErrServerName, nil},
		{"trailing hyphen", Config{Server: "a-.example"}, ErrServerName, nil},
		{"empty label", Config{Server: "a..example"}, ErrServerName, nil},
		{"trailing dot", Config{Server: "teredo.example.net."}, nil, nil},
		{"long label", Config{Server: string(make([]byte, 64))}, ErrServerName, nil},
		{"IPv6 bind", Config{Server: "192.0.2.1", BindAddress: netip.MustParseAddr("2001:db8::1")}, ErrBind, nil},
		{"refresh too short", Config{Server: "192.0.2.1", Refresh: time.Millisecond}, ErrRefresh, nil},
		{"refresh too long", Config{Server: "192.0.2.1", Refresh: 2 * time.Hour}, ErrRefresh, nil},
		{"interface numbered by the kernel", Config{Server: "192.0.2.1", Interface: "teredo%d"}, nil, nil},
		{"interface with '='", Config{Server: "192.0.2.1", Interface: "te=redo"}, nil, nil},
		{"interface with a newline", Config{Server: "192.0.2.1", Interface: "te\nredo"}, ErrInterface, nil},
		{"interface with NUL", Config{Server: "192.0.2.1", Interface: "te\x00redo"}, ErrInterface, nil},
		{"interface with a space", Config{Server: "192.0.2.1", Interface: "te redo"}, ErrInterface, nil},
		{"interface with '/'", Config{Server: "192.0.2.1", Interface: "te/redo"}, ErrInterface, nil},
		{"interface too long", Config{Server: "192.0.2.1", Interface: "teredo-interface"}, ErrInterface, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cfg.Check()
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Check: %v, want %v", err, tc.want)
			}
			if tc.chk != nil {
				tc.chk(t, c)
			}
		})
	}
}

// TestLookupIPv4 covers literals only: a name would send a DNS query out of
// the test machine.
func TestLookupIPv4(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1", "::ffff:198.51.100.7": "198.51.100.7"} {
		if a, err := lookupIPv4(t.Context(), in); err != nil || len(a) != 1 || a[0] != netip.MustParseAddr(want) {
			t.Errorf("lookupIPv4(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
}

// TestPickServer: a client keeps its server while the name still gives it
// and it answers, spreads over a pool otherwise, and leaves a dead member.
func TestPickServer(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("192.0.2.14")
	pool := []netip.Addr{a, b, c}
	none := netip.Addr{}
	cases := []struct {
		name           string
		addrs          []netip.Addr
		current, avoid netip.Addr
		want           []netip.Addr // the choices allowed
	}{
		{"first start: any member", pool, none, none, pool},
		{"keeps its server", pool, b, none, []netip.Addr{b}},
		{"its server left the pool", []netip.Addr{a, c}, b, none, []netip.Addr{a, c}},
		{"its server died", pool, b, b, []netip.Addr{a, c}},
		{"dead server, the only one", []netip.Addr{b}, b, b, []netip.Addr{b}},
		{"literal", []netip.Addr{a}, none, none, []netip.Addr{a}},
	}
	for _, tc := range cases {
		seen := map[netip.Addr]bool{}
		for r := range uint64(30) {
			got := pickServer(tc.addrs, tc.current, tc.avoid, r)
			if !slices.Contains(tc.want, got) {
				t.Errorf("%s: picked %v, want one of %v", tc.name, got, tc.want)
			}
			seen[got] = true
		}
		if len(seen) != len(tc.want) {
			t.Errorf("%s: picked only %v over 30 draws, want each of %v", tc.name, seen, tc.want)
		}
	}
}

// SPDX-License-Identifier: MIT

package client

import (
	"errors"
	"net/netip"
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
		if a, err := lookupIPv4(t.Context(), in); err != nil || a != netip.MustParseAddr(want) {
			t.Errorf("lookupIPv4(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
}

// SPDX-License-Identifier: MIT

package relay

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/netcfg"
	"github.com/miredo-go/miredo/pkg/netcfg/tundev"
)

func TestConfigCheck(t *testing.T) {
	cases := []struct {
		name string
		in   Config
		err  error
		want func(Config) bool
	}{
		{"defaults", Config{}, nil, func(c Config) bool {
			return c.Prefix == netip.MustParseAddr("2001::") && c.MTU == 1280 && c.Interface == "teredo" &&
				c.BindAddress == netip.IPv4Unspecified() && c.MaxPeers == tunnel.DefaultMaxPeers && c.mode() == tunnel.ConeRelay &&
				c.TunBackend == tundev.BackendOffload
		}},
		{"water backend", Config{TunBackend: tundev.BackendWater}, nil, func(c Config) bool { return c.TunBackend == tundev.BackendWater }},
		{"unknown backend", Config{TunBackend: "fast"}, tundev.ErrUnknownBackend, nil},
		{"prefix cut to /32", Config{Prefix: netip.MustParseAddr("3ffe:831f::1")}, nil, func(c Config) bool {
			return c.Prefix == netip.MustParseAddr("3ffe:831f::")
		}},
		{"restricted", Config{Restricted: true}, nil, func(c Config) bool { return c.mode() == tunnel.RestrictedRelay }},
		{"mapped bind address", Config{BindAddress: netip.MustParseAddr("::ffff:192.0.2.20")}, nil, func(c Config) bool {
			return c.BindAddress == netip.MustParseAddr("192.0.2.20")
		}},
		{"multicast prefix", Config{Prefix: netip.MustParseAddr("ff02::")}, ErrPrefix, nil},
		{"IPv4 prefix", Config{Prefix: netip.MustParseAddr("192.0.2.1")}, ErrPrefix, nil},
		{"small MTU", Config{MTU: 1279}, ErrMTU, nil},
		{"huge MTU", Config{MTU: 65536}, ErrMTU, nil},
		{"IPv6 bind", Config{BindAddress: netip.MustParseAddr("2001:db8::1")}, ErrBind, nil},
		{"negative peers", Config{MaxPeers: -1}, ErrMaxPeers, nil},
		{"announce interface", Config{AnnounceInterface: "teredo-bgp", DrainTime: time.Second}, nil, func(c Config) bool {
			return c.AnnounceInterface == "teredo-bgp" && c.DrainTime == time.Second
		}},
		{"announce on the tunnel", Config{AnnounceInterface: "teredo"}, ErrAnnounceIsTunnel, nil},
		{"announce name too long", Config{AnnounceInterface: "teredo-announce-1"}, netcfg.ErrInvalidName, nil},
		{"negative drain", Config{DrainTime: -time.Second}, ErrDrainTime, nil},
		{"long drain", Config{DrainTime: 2 * MaxDrainTime}, ErrDrainTime, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Check()
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if tc.want != nil && !tc.want(got) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

// SPDX-License-Identifier: MIT

package client

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/miredo-go/miredo/pkg/proto"
)

// FuzzExpectCheck: any datagram from any source, checked as the answer to
// a plain or a cone solicitation, never panics, and what passes carries
// the origin, prefix and server address asked for.
func FuzzExpectCheck(f *testing.F) {
	primary, secondary := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	client := netip.MustParseAddrPort("198.51.100.2:40000")
	for _, cone := range []bool{false, true} {
		dst := proto.LinkLocalClient()
		if cone {
			dst = proto.LinkLocalClientCone()
		}
		f.Add(proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: [8]byte{1}, Client: client, Dst: dst,
			Server: primary, Prefix: proto.DefaultPrefix, MTU: 1280}), cone, cone)
	}
	f.Fuzz(func(t *testing.T, b []byte, cone, fromSecondary bool) {
		var e proto.Envelope
		if proto.ParseEnvelope(b, &e) != nil {
			return
		}
		x := Expect{From: primary, Cone: cone, Server: primary, Prefix: proto.DefaultPrefix}
		from := netip.AddrPortFrom(primary, proto.Port)
		if fromSecondary {
			x.From, from = secondary, netip.AddrPortFrom(secondary, proto.Port)
		}
		ra, err := x.Check(&e, from)
		if err != nil {
			return
		}
		if !e.HasOrigin || ra.Prefix != x.Prefix || ra.Server != primary || e.Auth.Confirmation != 0 {
			t.Fatalf("accepted %x: %+v origin %v", b, ra, e.HasOrigin)
		}
	})
}

func TestResolveServer(t *testing.T) {
	for _, tc := range []struct {
		name               string
		primary, secondary string
		err                error
	}{
		{"192.0.2.10", "192.0.2.10", "192.0.2.11", nil},
		{"::ffff:192.0.2.10", "192.0.2.10", "192.0.2.11", nil},
		{"10.0.0.1", "", "", ErrNotGlobal},
		{"1.2.3", "", "", ErrServerName},
		{"2001:db8::1", "", "", ErrNotGlobal},
	} {
		p, s, err := ResolveServer(context.Background(), tc.name)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || p.String() != tc.primary || s.String() != tc.secondary {
			t.Errorf("%s: %v %v %v", tc.name, p, s, err)
		}
	}
}

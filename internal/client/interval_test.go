// SPDX-License-Identifier: MIT

package client

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// natSim forwards the server's datagrams to the secondary port only while
// the NAT still holds its mapping: it forgets it lifetime after the port
// last sent anything.
type natSim struct {
	lifetime time.Duration
	lastOut  time.Time
	mapping  netip.AddrPort
}

// runInterval drives the procedure against a NAT that keeps mappings for
// lifetime, answering solicitations as a server does, and returns the
// refresh interval it settles on and how long it took.
func runInterval(t *testing.T, lifetime, start time.Duration) (time.Duration, time.Duration, bool) {
	t.Helper()
	r := rand.New(rand.NewChaCha8([32]byte{3}))
	rnd := func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	server := netip.MustParseAddr("192.0.2.10")
	self := proto.Address{Prefix: proto.DefaultPrefix, Server: server, MappedPort: 40000, MappedAddr: netip.MustParseAddr("198.51.100.2")}.Addr()
	from := netip.AddrPortFrom(server, proto.Port)
	nat := &natSim{lifetime: lifetime, mapping: netip.MustParseAddrPort("198.51.100.2:40001")}
	now := t0
	var a intervalActions
	p := newIntervalProbe(now, self, server, proto.DefaultPrefix, start, rnd, slog.New(slog.DiscardHandler), &a)
	refresh := start
	for range 1000 {
		if a.Refresh != 0 {
			refresh = a.Refresh
		}
		if a.Close {
			return refresh, now.Sub(t0), p.determined
		}
		// The server answers at once; a reply reaches the port only if
		// the NAT still holds the mapping.
		var in [][]byte
		for _, d := range a.FromSecondary {
			nat.lastOut = now
			var e proto.Envelope
			proto.ParseEnvelope(d.Payload, &e)
			rs, _ := proto.ParseRouterSolicitation(e.IPv6)
			in = append(in, proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: e.Auth.Nonce, Client: nat.mapping,
				Dst: rs.Src, Server: server, Prefix: proto.DefaultPrefix, MTU: 1280}))
		}
		for _, d := range a.FromService {
			var e proto.Envelope
			proto.ParseEnvelope(d.Payload, &e)
			if now.Sub(nat.lastOut) < nat.lifetime {
				in = append(in, append(proto.AppendOrigin(nil, netip.MustParseAddrPort("198.51.100.2:40000")), e.IPv6...))
			}
		}
		a = intervalActions{}
		for _, b := range in {
			p.Receive(now, b, from, &a)
		}
		if len(a.FromSecondary)+len(a.FromService) > 0 || a.Close {
			continue
		}
		if d := p.Deadline(); !d.IsZero() {
			now = d
		}
		p.Tick(now, &a)
	}
	t.Fatal("the procedure does not end")
	return 0, 0, false
}

// TestIntervalDetermination: the refresh interval ends below what the NAT
// keeps, and within a quarter of it (from 30 s, ours of 5 s below), and
// never above the configured 30 s however long the NAT keeps mappings.
func TestIntervalDetermination(t *testing.T) {
	for _, tc := range []struct {
		lifetime time.Duration
		min, max time.Duration
	}{
		{20 * time.Second, 15 * time.Second, 20 * time.Second},
		{10 * time.Second, 5 * time.Second, 10 * time.Second},
		{3 * time.Second, 5 * time.Second, 5 * time.Second}, // below our floor
		{45 * time.Second, 30 * time.Second, 30 * time.Second},
		{120 * time.Second, 30 * time.Second, 30 * time.Second},
		{10 * time.Minute, 30 * time.Second, 30 * time.Second},
	} {
		got, took, determined := runInterval(t, tc.lifetime, 30*time.Second)
		t.Logf("NAT keeping mappings %v: refresh %v, found in %v", tc.lifetime, got, took.Round(time.Second))
		if !determined || got < tc.min || got > tc.max {
			t.Errorf("NAT keeping mappings %v: refresh %v (determined %v), want %v-%v", tc.lifetime, got, determined, tc.min, tc.max)
		}
		if got >= tc.lifetime && tc.lifetime > intervalMin {
			t.Errorf("NAT keeping mappings %v: refresh %v would let it forget", tc.lifetime, got)
		}
	}
}

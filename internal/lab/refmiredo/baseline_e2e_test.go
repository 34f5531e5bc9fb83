// SPDX-License-Identifier: MIT

//go:build e2e

package refmiredo_test

import (
	"context"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
)

// TestBaseline is the bench every role is compared against: Debian's Miredo
// client behind each kind of NAT (and none) qualifies with Miredo's server,
// reaches the native IPv6 host through Miredo's relay, and is reached back;
// it also reaches a second client behind a port-restricted NAT, and is
// reached back, except from behind a symmetric NAT, where Miredo is known to
// fail (the outcome is only logged there). One lab serves every case; the
// client restarts between them.
func TestBaseline(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	server := l.Host(lab.Server)
	if _, err := refmiredo.StartServer(ctx, l, server); err != nil {
		t.Fatal(err)
	}
	if _, err := refmiredo.StartRelay(ctx, l, l.Host(lab.Relay)); err != nil {
		t.Fatal(err)
	}
	native := l.Host(lab.Native)
	// A second client, behind nat2 (port-restricted), for client-to-client.
	peer := l.Host(lab.Client2)
	if _, err := refmiredo.StartClient(ctx, l, peer, "miredo-client2", server.IPv4()); err != nil {
		t.Fatal(err)
	}
	peerAddr, err := refmiredo.Qualified(ctx, peer)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client2 behind %s nat2: %s", l.NATMode(lab.NAT2), refmiredo.Summary(peerAddr))

	for _, pl := range lab.Placements() {
		t.Run(pl.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			client, public, err := l.Place(ctx, pl)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p, err := refmiredo.StartClient(ctx, l, client, "miredo-client-"+pl.Name, server.IPv4())
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := p.Stop(); err != nil {
					t.Error(err)
				}
			}()
			addr, err := refmiredo.Qualified(ctx, client)
			if err != nil {
				t.Fatalf("%v\n%s", err, p.Tail(20))
			}
			t.Logf("qualified in %v: %s", time.Since(start).Round(time.Millisecond), refmiredo.Summary(addr))
			srv, _, mapped, _ := refmiredo.Decode(addr)
			if srv != server.IPv4() || mapped.Addr() != public {
				t.Errorf("address %s: server %s mapped %s; want server %s mapped from %s", addr, srv, mapped, server.IPv4(), public)
			}
			start = time.Now()
			if err := client.Ping(ctx, native.IPv6()); err != nil {
				t.Fatalf("client to native host: %v", err)
			}
			t.Logf("client reached native host in %v", time.Since(start).Round(time.Millisecond))
			start = time.Now()
			if err := native.Ping(ctx, addr); err != nil {
				t.Fatalf("native host to client: %v", err)
			}
			t.Logf("native host reached client in %v", time.Since(start).Round(time.Millisecond))

			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			if pl.Mode == lab.Symmetric && pl.NAT != "" {
				pctx, pcancel = context.WithTimeout(ctx, 2*time.Second)
			}
			defer pcancel()
			start = time.Now()
			there := client.Ping(pctx, peerAddr)
			back := peer.Ping(pctx, addr)
			t.Logf("client to client2: %v, client2 to client: %v (%v)", errText(there), errText(back), time.Since(start).Round(time.Millisecond))
			if pl.Mode != lab.Symmetric || pl.NAT == "" {
				if there != nil || back != nil {
					t.Errorf("client-to-client failed: there %v, back %v", there, back)
				}
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return "failed"
}

// SPDX-License-Identifier: MIT

package server

import (
	"net/netip"
	"testing"

	"github.com/miredo-go/miredo/pkg/proto"
)

// FuzzHandle checks the server's promises on any input: no panic, nothing
// sent to a non-global IPv4 address, nothing forwarded that is larger than
// an RA or a small echo, and raw IPv6 only for echo requests from a Teredo
// source whose mapping is the sender.
func FuzzHandle(f *testing.F) {
	f.Add(proto.AppendRouterSolicitation(nil, nonce, false), []byte{198, 51, 100, 2}, uint16(35171))
	f.Add(proto.AppendBubble(nil, netip.MustParseAddr("fe80::1"), teredoOf(primary, clientUDP), 0), []byte{192, 0, 2, 20}, uint16(3545))
	f.Add(echo(teredoOf(primary, clientUDP), native, proto.ICMPv6EchoRequest, 18), []byte{198, 51, 100, 2}, uint16(35171))
	h := NewHandler(primary, secondary, proto.DefaultPrefix, 1280)
	f.Fuzz(func(t *testing.T, b []byte, ip []byte, port uint16) {
		if len(ip) != 4 {
			return
		}
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip)), port)
		var e proto.Envelope
		r := h.Handle(b, from, ViaPrimary, nil, &e)
		switch r.Verdict {
		case Drop:
			if r.Reason == NotDropped || r.Reason >= NumDropReasons {
				t.Fatalf("drop without a reason: %d", r.Reason)
			}
		case SendUDP:
			if !proto.IsGlobalUnicastIPv4(r.To.Addr()) || len(r.Packet) > 200 {
				t.Fatalf("sends %d bytes to %v", len(r.Packet), r.To)
			}
			if err := proto.ParseEnvelope(r.Packet, &e); err != nil {
				t.Fatalf("sends an invalid packet: %v", err)
			}
		case SendIPv6:
			p, _, err := proto.ParseIPv6(r.Packet)
			if err != nil {
				t.Fatal(err)
			}
			m, err := proto.ParseICMPv6(p)
			if err != nil || m.Type() != proto.ICMPv6EchoRequest {
				t.Fatalf("raw IPv6 that is not an echo request: %v", err)
			}
			a, _ := proto.ParseAddress(p.Src())
			if a.Mapping() != from || proto.HasPrefix(p.Dst(), proto.DefaultPrefix) {
				t.Fatalf("raw IPv6 from %v (sender %v) to %v", p.Src(), from, p.Dst())
			}
		}
	})
}

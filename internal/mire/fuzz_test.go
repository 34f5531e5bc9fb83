// SPDX-License-Identifier: MIT

package mire

import (
	"net/netip"
	"testing"

	"github.com/miredo-go/miredo/pkg/proto"
)

// FuzzHandle checks the responder's promises on any input: no panic, a
// reason for every drop, and every reply a single IPv6 packet from our own
// Teredo address to a global IPv4 sender, no larger than the request but
// for a parameter problem, which fits 1280 bytes.
func FuzzHandle(f *testing.F) {
	auth := proto.AppendNonceAuth(nil, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(echoReq(peer, mireAddr, "hello"), []byte{198, 51, 100, 2}, uint16(40000), true)
	f.Add(append(auth, echoReq(native, mireAddr, "x")...), []byte{192, 0, 2, 20}, uint16(3545), true)
	f.Add(proto.AppendBubble(nil, peer, mireAddr, 0), []byte{198, 51, 100, 2}, uint16(40000), false)
	f.Add(withNext(peer, mireAddr, 17, 8), []byte{203, 0, 113, 2}, uint16(1), true)
	f.Add([]byte("hello"), []byte{10, 0, 0, 1}, uint16(0), false)
	h := NewHandler(me)
	f.Fuzz(func(t *testing.T, b []byte, ip []byte, port uint16, mapped bool) {
		if len(ip) != 4 {
			return
		}
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip)), port)
		on := OnServerPort
		if mapped {
			on = OnMappedPort
		}
		var e proto.Envelope
		r := h.Handle(b, from, on, nil, &e)
		if r.Verdict == Drop {
			if r.Reason == NotDropped || r.Reason >= NumDropReasons {
				t.Fatalf("drop without a reason: %d", r.Reason)
			}
			return
		}
		if r.To != from || !proto.IsGlobalUnicastIPv4(r.To.Addr()) || r.To.Port() == 0 {
			t.Fatalf("reply to %v (sender %v)", r.To, from)
		}
		if len(r.Packet) > max(len(b), proto.MinMTU) {
			t.Fatalf("%d-byte reply to %d bytes", len(r.Packet), len(b))
		}
		pkt, trailer, err := proto.ParseIPv6(r.Packet)
		if err != nil || len(trailer) != 0 || !h.ours(pkt.Src()) {
			t.Fatalf("reply %x: %v", r.Packet, err)
		}
		if r.Kind != Bubble {
			if _, err := proto.ParseICMPv6(pkt); err != nil {
				t.Fatalf("reply: %v", err)
			}
		}
	})
}

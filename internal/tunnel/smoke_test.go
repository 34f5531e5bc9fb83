// SPDX-License-Identifier: MIT

package tunnel

import (
	"testing"

	"github.com/miredo-go/miredo/pkg/proto"
)

// TestRelayHandshake walks the relay through a whole exchange: a native
// packet for a new Teredo client is queued and bubbled through the client's
// server; the client's answering bubble verifies it and the packet goes
// out; then traffic flows both ways without copies.
func TestRelayHandshake(t *testing.T) {
	en := newEnv(t, ConeRelay)
	p := pkt(native, peerAddr, 100)
	if v := en.tun(p); v != queuedV {
		t.Fatalf("first packet: %+v, want queued", v)
	}
	if got := en.sentTo(); len(got) != 1 || got[0] != server {
		t.Fatalf("sent to %v, want one indirect bubble to %v", got, server)
	}
	src, dst := en.bubbleAt(0)
	if !src.IsLinkLocalUnicast() || dst != peerAddr {
		t.Fatalf("bubble %v -> %v", src, dst)
	}
	// The client answers with a bubble to our link-local source.
	if v := en.udp(bubble(peerAddr, src), peerMap); v != consumed {
		t.Fatalf("answer bubble: %+v", v)
	}
	if len(en.out.UDP) != 1 || en.out.UDP[0].Addr != peerMap || string(en.out.UDP[0].Buf[:en.out.UDP[0].N]) != string(p) {
		t.Fatalf("queued packet not flushed: %v", en.sentTo())
	}
	if len(en.out.Local) != 0 {
		t.Fatalf("bubble delivered")
	}
	// Now both ways directly.
	if v := en.tun(p); v != sent || en.sentTo()[0] != peerMap {
		t.Fatalf("trusted send: %+v %v", v, en.sentTo())
	}
	back := pkt(peerAddr, native, 50)
	if v := en.udp(back, peerMap); v != sent || len(en.out.Local) != 1 {
		t.Fatalf("trusted receive: %+v", v)
	}
	if &en.out.Local[0][0] != &back[0] {
		t.Error("delivered packet was copied")
	}
	st := en.e.Stats()
	if st.Peers != 1 || st.Trusted != 1 || st.Dequeued != 1 || st.IndirectBubbles != 1 {
		t.Errorf("stats %+v", st)
	}
	_ = proto.Port
}

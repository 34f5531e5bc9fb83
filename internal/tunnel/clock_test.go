// SPDX-License-Identifier: MIT

package tunnel

import (
	"testing"
	"time"
)

// The engine reads its clock once per batch (per Out between Resets), not
// once per packet, and a new batch reads it again.
func TestClockReadOncePerBatch(t *testing.T) {
	en := newEnv(t, ConeRelay)
	reads := 0
	en.e.cfg.Now = func() time.Time { reads++; return en.clk.now() }
	p := pkt(native, peerAddr, 100)
	var out Out
	for range 10 {
		en.e.FromTunnel(p, &out)
	}
	if reads != 1 {
		t.Fatalf("%d clock reads for one batch of 10, want 1", reads)
	}
	out.Reset()
	en.e.FromTunnel(p, &out)
	en.e.FromUDP(bubble(peerAddr, native), peerMap, &out)
	if reads != 2 {
		t.Fatalf("%d clock reads after a second batch, want 2", reads)
	}
	// An Out another engine used first reads this one's clock.
	other := newEnv(t, ConeRelay)
	other.e.FromTunnel(p, &out)
	en.e.FromTunnel(p, &out)
	if reads != 3 {
		t.Fatalf("%d clock reads after another engine's batch, want 3", reads)
	}
}

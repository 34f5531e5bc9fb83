// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/pkg/control"
)

// Peers copies up to max entries of the peer table (all of them when max
// is 0) and says whether more were left out. Each shard is locked only
// while its entries are copied, so the data path waits at most that long.
func (e *Engine) Peers(max int) (peers []control.Peer, truncated bool) {
	now := e.now()
	for i := range e.table.shards {
		s := &e.table.shards[i]
		s.mu.Lock()
		for l := range s.lists {
			for idx := s.lists[l].head; idx != noIndex; idx = s.peers[idx].next {
				if max > 0 && len(peers) == max {
					s.mu.Unlock()
					return peers, true
				}
				p := &s.peers[idx]
				info := control.Peer{Address: netip.AddrFrom16(p.addr), Mapping: p.mapping(),
					Trusted: p.has(fTrusted), Native: p.has(fNative)}
				if p.has(fTrusted) {
					ago := (time.Duration(since(now, p.lastRx)) * time.Second / ticksPerSecond).Seconds()
					info.LastSeen = &ago
				}
				if q := s.queues[idx]; q != nil {
					info.QueuedBytes = q.bytes
				}
				peers = append(peers, info)
			}
		}
		s.mu.Unlock()
	}
	return peers, false
}

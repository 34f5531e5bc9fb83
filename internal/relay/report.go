// SPDX-License-Identifier: MIT

package relay

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/control"
)

// maxListed bounds the peers one status request lists: a relay's table
// may hold a million, which would take a long answer and a large copy.
const maxListed = 1 << 16

// StatusReport is what `miredo-relay status` shows, and what the control
// socket answers, as JSON.
type StatusReport struct {
	control.Common
	RelayType      string         `json:"relay_type"`
	Prefix         netip.Prefix   `json:"prefix"`
	Interface      string         `json:"interface"`
	MTU            int            `json:"mtu"`
	Local          netip.AddrPort `json:"local"`
	Counters       map[string]any `json:"counters"`
	PeerCount      uint64         `json:"peer_count"`
	Peers          []control.Peer `json:"peers,omitempty"`
	PeersTruncated bool           `json:"peers_truncated,omitempty"`
}

// report answers the control socket's status request.
func (r *Relay) report(_ context.Context, req control.Request) (any, error) {
	es := r.eng.Stats()
	rep := StatusReport{
		Common:    control.NewCommon("relay", r.start),
		RelayType: relayType(r.cfg),
		Prefix:    netip.PrefixFrom(r.cfg.Prefix, 32),
		Interface: r.dev.Name(),
		MTU:       r.cfg.MTU,
		Local:     r.conn.LocalAddr(),
		Counters:  r.counters(),
		PeerCount: es.Peers,
	}
	if req.Peers {
		rep.Peers, rep.PeersTruncated = r.eng.Peers(maxListed)
	}
	return rep, nil
}

// counters are the relay's counters by group, as status and metrics
// report them.
func (r *Relay) counters() map[string]any {
	return map[string]any{
		"engine": control.Counters(r.eng.Stats().LogValue()),
		"io":     control.Counters(r.Stats().LogValue()),
		"tun":    control.Counters(r.TunStats().LogValue()),
	}
}

// WriteText prints the report as a readable summary.
func (r StatusReport) WriteText(w io.Writer) {
	r.WriteCommon(w)
	fmt.Fprintf(w, "%-14s %s relay for %v on %s (MTU %d), UDP %v\n", "relay:", r.RelayType, r.Prefix, r.Interface, r.MTU, r.Local)
	control.WritePeers(w, r.PeerCount, r.Peers, r.PeersTruncated)
	control.WriteCounters(w, r.Counters)
}

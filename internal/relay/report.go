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
	// AnnounceInterface is the interface a routing daemon announces the
	// prefix by, if any; Draining says the relay is stopping (withdrawn
	// if it announced).
	AnnounceInterface string `json:"announce_interface,omitempty"`
	Draining          bool   `json:"draining,omitempty"`
}

// handle answers the control socket: drain, or status.
func (r *Relay) handle(ctx context.Context, req control.Request) (any, error) {
	if req.Command == control.CommandDrain {
		return r.drain()
	}
	return r.report(ctx, req)
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
		Draining:  r.draining.Load(),
	}
	if r.announce != nil {
		rep.AnnounceInterface = r.announce.name
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
	switch {
	case r.AnnounceInterface != "" && r.Draining:
		fmt.Fprintf(w, "%-14s withdrawn (%s closed), draining\n", "announce:", r.AnnounceInterface)
	case r.AnnounceInterface != "":
		fmt.Fprintf(w, "%-14s announced while %s exists\n", "announce:", r.AnnounceInterface)
	case r.Draining:
		fmt.Fprintf(w, "%-14s stopping\n", "state:")
	}
	control.WritePeers(w, r.PeerCount, r.Peers, r.PeersTruncated)
	control.WriteCounters(w, r.Counters)
}

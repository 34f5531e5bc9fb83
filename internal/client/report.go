// SPDX-License-Identifier: MIT

package client

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/pkg/control"
	"github.com/miredo-go/miredo/pkg/proto"
)

// maxListed bounds the peers one status request lists (a client's table
// holds 4096 by default, so normally all of them).
const maxListed = 1 << 16

// StatusReport is what `miredo-client status` shows, and what the control
// socket answers, as JSON.
type StatusReport struct {
	control.Common
	// State is the qualification phase: resolving, qualifying, qualified
	// or offline.
	State string `json:"state"`
	// InterfaceConfigured says the tunnel interface carries Address.
	InterfaceConfigured bool       `json:"interface_configured"`
	Address             netip.Addr `json:"address,omitzero"`
	// Server, MappedAddress, MappedPort and Cone are decoded from Address.
	Server        netip.Addr `json:"server,omitzero"`
	Server2       netip.Addr `json:"server2,omitzero"`
	MappedAddress netip.Addr `json:"mapped_address,omitzero"`
	MappedPort    uint16     `json:"mapped_port,omitempty"`
	Cone          bool       `json:"cone"`
	NATType       string     `json:"nat_type"`
	MTU           int        `json:"mtu,omitempty"`
	// LastRefresh is when the server last confirmed the mapping.
	LastRefresh *time.Time `json:"last_refresh,omitempty"`
	// RefreshInterval is the refresh interval in use (seconds), as the
	// determination procedure set it.
	RefreshInterval float64        `json:"refresh_interval_seconds"`
	Counters        map[string]any `json:"counters"`
	PeerCount       uint64         `json:"peer_count"`
	Peers           []control.Peer `json:"peers,omitempty"`
	PeersTruncated  bool           `json:"peers_truncated,omitempty"`
}

// report answers the control socket's status request.
func (c *Client) report(_ context.Context, req control.Request) (any, error) {
	st := c.Status()
	es := c.eng.Stats()
	r := StatusReport{
		Common:              control.NewCommon("client", c.start),
		State:               st.Phase.String(),
		InterfaceConfigured: st.Configured,
		Server:              st.Server,
		Server2:             st.Server2,
		NATType:             st.NAT.String(),
		Counters:            c.counters(),
		PeerCount:           es.Peers,
		RefreshInterval:     time.Duration(c.refresh.Load()).Seconds(),
	}
	if st.Phase == PhaseQualified {
		a, _ := proto.ParseAddress(st.Addr)
		r.Address, r.MappedAddress, r.MappedPort, r.Cone, r.MTU = st.Addr, a.MappedAddr, a.MappedPort, a.Cone(), st.MTU
	}
	if !st.Refreshed.IsZero() {
		t := st.Refreshed
		r.LastRefresh = &t
	}
	if req.Peers {
		r.Peers, r.PeersTruncated = c.eng.Peers(maxListed)
	}
	return r, nil
}

// counters are the client's counters by group, as status and metrics
// report them.
func (c *Client) counters() map[string]any {
	return map[string]any{
		"client": control.Counters(c.Stats().LogValue()),
		"engine": control.Counters(c.eng.Stats().LogValue()),
	}
}

// WriteText prints the report as a readable summary.
func (r StatusReport) WriteText(w io.Writer) {
	r.WriteCommon(w)
	configured := "not configured"
	if r.InterfaceConfigured {
		configured = "configured"
	}
	fmt.Fprintf(w, "%-14s %s (interface %s)\n", "state:", r.State, configured)
	if r.Address.IsValid() {
		fmt.Fprintf(w, "%-14s %v (MTU %d)\n", "address:", r.Address, r.MTU)
		fmt.Fprintf(w, "%-14s %v:%d (cone flag %v)\n", "mapping:", r.MappedAddress, r.MappedPort, r.Cone)
	}
	if r.Server.IsValid() {
		fmt.Fprintf(w, "%-14s %v (secondary %v)\n", "server:", r.Server, r.Server2)
	}
	fmt.Fprintf(w, "%-14s %s\n", "NAT:", r.NATType)
	if r.LastRefresh != nil {
		fmt.Fprintf(w, "%-14s %v ago (every %v)\n", "last refresh:", time.Since(*r.LastRefresh).Round(time.Second),
			time.Duration(r.RefreshInterval*float64(time.Second)).Round(10*time.Millisecond))
	}
	control.WritePeers(w, r.PeerCount, r.Peers, r.PeersTruncated)
	control.WriteCounters(w, r.Counters)
}

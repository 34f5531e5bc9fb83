// SPDX-License-Identifier: MIT

package server

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/control"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// StatusReport is what `miredo-server status` shows, and what the control
// socket answers, as JSON.
type StatusReport struct {
	control.Common
	Primary   netip.Addr `json:"primary"`
	Secondary netip.Addr `json:"secondary"`
	Prefix    netip.Addr `json:"prefix"`
	MTU       int        `json:"mtu"`
	Sockets   int        `json:"sockets_per_address"`
	// SocketsInUse is how many of the primary address's sockets take
	// datagrams now, when the server steers them (the default socket
	// count); 0 when all do.
	SocketsInUse int    `json:"sockets_in_use,omitempty"`
	RateLimit    uint32 `json:"rate_limit"`
	// Coalesce is the longest coalescing sleep of the socket loops
	// (--coalesce), "0s" for none.
	Coalesce string         `json:"coalesce"`
	Counters map[string]any `json:"counters"`
}

// report answers the control socket's status request.
func (s *Server) report(context.Context, control.Request) (any, error) {
	cfg := s.config()
	return StatusReport{
		Common:  control.NewCommon("server", s.start),
		Primary: cfg.Primary, Secondary: cfg.Secondary, Prefix: cfg.Prefix, MTU: cfg.MTU,
		Sockets: len(s.sockets()[0]), SocketsInUse: s.steer.Load().inUse(), RateLimit: cfg.RateLimit, Coalesce: cfg.Coalesce.String(),
		Counters: s.counters(),
	}, nil
}

// counters are the server's counters, as status and metrics report them:
// what its loops did, and what its UDP sockets did (see socketCounters).
func (s *Server) counters() map[string]any {
	m := map[string]any{"server": control.Counters(s.Stats().LogValue())}
	if sc := s.socketCounters(); sc != nil {
		m["sockets"] = sc
	}
	return m
}

// socketCounters sums the UDP sockets' own counters: system calls per
// datagram each way (the batching the load allows) and the loops'
// coalescing sleeps (--coalesce), so that an operator can see whether the
// loops coalesce and what it gathers. nil when no UDP socket counts (the
// --xdp path, or test sockets). They start again from 0 when a reload
// binds new addresses.
func (s *Server) socketCounters() map[string]any {
	var sum udpio.Stats
	counted := false
	for _, conns := range s.sockets() {
		for _, c := range conns {
			sc, ok := c.(interface{ Stats() udpio.Stats })
			if !ok {
				continue
			}
			st := sc.Stats()
			sum.ReadCalls += st.ReadCalls
			sum.ReadDatagrams += st.ReadDatagrams
			sum.WriteCalls += st.WriteCalls
			sum.WriteDatagrams += st.WriteDatagrams
			sum.Sleeps += st.Sleeps
			sum.Drops += st.Drops
			counted = true
		}
	}
	if !counted {
		return nil
	}
	var widened uint64
	if st := s.steer.Load(); st != nil {
		widened = st.widened.Load()
	}
	return map[string]any{
		"read_calls": sum.ReadCalls, "read_datagrams": sum.ReadDatagrams,
		"write_calls": sum.WriteCalls, "write_datagrams": sum.WriteDatagrams,
		"coalesce_sleeps": sum.Sleeps, "receive_drops": sum.Drops, "spread_widened": widened,
	}
}

// WriteText prints the report as a readable summary.
func (r StatusReport) WriteText(w io.Writer) {
	r.WriteCommon(w)
	limit := "none"
	if r.RateLimit > 0 {
		limit = fmt.Sprintf("%d/s per /24", r.RateLimit)
	}
	coalesce := ""
	if r.Sockets > 0 { // the socket path: --xdp serves without
		coalesce = ", coalescing up to " + r.Coalesce
		if r.Coalesce == "0s" {
			coalesce = ", no coalescing"
		}
	}
	inUse := ""
	if r.SocketsInUse > 0 {
		inUse = fmt.Sprintf(" (%d in use)", r.SocketsInUse)
	}
	fmt.Fprintf(w, "%-14s %v and %v, prefix %v, MTU %d, %d sockets each%s%s, send limit %s\n", "addresses:",
		r.Primary, r.Secondary, r.Prefix, r.MTU, r.Sockets, inUse, coalesce, limit)
	control.WriteCounters(w, r.Counters)
}

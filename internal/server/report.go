// SPDX-License-Identifier: MIT

package server

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/control"
)

// StatusReport is what `miredo-server status` shows, and what the control
// socket answers, as JSON.
type StatusReport struct {
	control.Common
	Primary   netip.Addr     `json:"primary"`
	Secondary netip.Addr     `json:"secondary"`
	Prefix    netip.Addr     `json:"prefix"`
	MTU       int            `json:"mtu"`
	Sockets   int            `json:"sockets_per_address"`
	RateLimit uint32         `json:"rate_limit"`
	Counters  map[string]any `json:"counters"`
}

// report answers the control socket's status request.
func (s *Server) report(context.Context, control.Request) (any, error) {
	cfg := s.config()
	return StatusReport{
		Common:  control.NewCommon("server", s.start),
		Primary: cfg.Primary, Secondary: cfg.Secondary, Prefix: cfg.Prefix, MTU: cfg.MTU,
		Sockets: len(s.sockets()[0]), RateLimit: cfg.RateLimit,
		Counters: s.counters(),
	}, nil
}

// counters are the server's counters, as status and metrics report them.
func (s *Server) counters() map[string]any {
	return map[string]any{"server": control.Counters(s.Stats().LogValue())}
}

// WriteText prints the report as a readable summary.
func (r StatusReport) WriteText(w io.Writer) {
	r.WriteCommon(w)
	limit := "none"
	if r.RateLimit > 0 {
		limit = fmt.Sprintf("%d/s per /24", r.RateLimit)
	}
	fmt.Fprintf(w, "%-14s %v and %v, prefix %v, MTU %d, %d sockets each, send limit %s\n", "addresses:",
		r.Primary, r.Secondary, r.Prefix, r.MTU, r.Sockets, limit)
	control.WriteCounters(w, r.Counters)
}

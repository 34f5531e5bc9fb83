// SPDX-License-Identifier: MIT

package server

import (
	"net/netip"

	"github.com/miredo-go/miredo/pkg/proto"
)

// apply runs the handler on one datagram received on "on" and does what
// does not go into the loop's send batch: it counts the datagram's fate,
// applies the per-/24 send limit and sends connectivity tests to native
// IPv6. It returns the UDP datagram to send and true, or false when there
// is none. Both I/O paths (sockets, AF_XDP) share it, so they count and
// limit alike; h is the handler in force for the batch (a reload may
// replace it); clk is the batch's time for the limiter.
func (s *Server) apply(h *Handler, b []byte, from netip.AddrPort, on Via, slot []byte, clk *batchClock, e *proto.Envelope, st *loopStats) (Result, bool) {
	r := h.Handle(b, from, on, slot, e)
	switch r.Verdict {
	case Drop:
		st.dropped[r.Reason].Add(1)
	case SendUDP:
		if !s.limit.allow(r.To.Addr(), clk) {
			st.dropped[DropRateLimited].Add(1)
			return r, false
		}
		if isRA(r.Packet) {
			st.answered.Add(1)
		} else {
			st.forwarded.Add(1)
		}
		return r, true
	case SendIPv6:
		pkt := proto.IPv6(r.Packet)
		if err := s.raw.send(r.Packet, pkt.Dst()); err != nil {
			st.sendErrors.Add(1)
			s.log.Debug("connectivity test not sent", "dst", pkt.Dst(), "err", err)
		} else {
			st.toIPv6.Add(1)
		}
	}
	return r, false
}

// isRA tells an advertisement (which starts with an authentication header)
// from a forwarded packet (which starts with an origin indication).
func isRA(b []byte) bool { return len(b) > 1 && b[0] == 0 && b[1] == 1 }

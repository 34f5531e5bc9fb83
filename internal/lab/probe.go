// SPDX-License-Identifier: MIT

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// NATProbe is what a host's NAT does to UDP, measured with one socket on the
// host (RFC 4787 terms).
type NATProbe struct {
	Local netip.AddrPort // the host socket's own address
	// Mapped1 and Mapped2 are the host as inet1 and inet2 saw it: equal
	// means endpoint-independent mapping.
	Mapped1, Mapped2 netip.AddrPort
	// Which answers to Mapped1 came in: from inet1's endpoint that was
	// contacted, from another port of that address, and from an address the
	// host never sent to. Filtering is endpoint-independent when all three
	// arrive, address-dependent when the last does not, address-and-port-
	// dependent when only the first does.
	FromSame, FromOtherPort, FromOtherAddr bool
}

// EndpointIndependent reports whether the host kept one mapping for both
// destinations.
func (p NATProbe) EndpointIndependent() bool { return p.Mapped1 == p.Mapped2 }

// Mode names the NAT behaviour the probe saw; "none" when the host was not
// translated at all.
func (p NATProbe) Mode() string {
	switch {
	case p.Mapped1 == p.Local && p.EndpointIndependent() && p.FromOtherAddr:
		return "none"
	case !p.EndpointIndependent():
		return Symmetric.String()
	case p.FromOtherAddr:
		return FullCone.String()
	case p.FromOtherPort:
		return AddressRestricted.String()
	}
	return PortRestricted.String()
}

// Probe ports on inet1 and inet2; only one probe may run in a lab at a time.
const (
	probePort      = 4000
	probeOtherPort = 4001
)

// straggleGrace is how long Probe waits for answers that should not come
// once the last, expected one is in.
const straggleGrace = 200 * time.Millisecond

// ProbeNAT measures the NAT in front of host (Client1, Client2 or Pub): one
// socket on it sends to inet1 and inet2, which report the source they saw;
// then its mapping towards inet1 is sent to from a third address inet2 holds
// (never contacted), from inet1's other port and, last, from the inet1
// endpoint contacted. That last answer is expected whatever the NAT, and the
// others took the same path before it, so once it is in, the others had
// every chance to arrive; a short grace covers CPU reordering.
func (l *Lab) ProbeNAT(ctx context.Context, host string) (NATProbe, error) {
	var p NATProbe
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	listen := func(h *Host, a netip.Addr, port uint16) (*net.UDPConn, error) {
		c, err := h.ListenUDP(netip.AddrPortFrom(a, port))
		if err == nil {
			conns = append(conns, c)
		}
		return c, err
	}
	inet1, inet2, client := l.Host(Inet1), l.Host(Inet2), l.Host(host)
	a, err := listen(inet1, inet1.IPv4(), probePort)
	if err != nil {
		return p, err
	}
	a2, err := listen(inet1, inet1.IPv4(), probeOtherPort)
	if err != nil {
		return p, err
	}
	b, err := listen(inet2, inet2.v4[0], probePort)
	if err != nil {
		return p, err
	}
	x, err := listen(inet2, inet2.v4[1], probePort)
	if err != nil {
		return p, err
	}
	c, err := listen(client, client.IPv4(), 0)
	if err != nil {
		return p, err
	}
	p.Local = addrPort(c.LocalAddr())

	deadline := time.Now().Add(2 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if p.Mapped1, err = exchange(c, a, deadline); err != nil {
		return p, fmt.Errorf("probe to inet1: %w", err)
	}
	if p.Mapped2, err = exchange(c, b, deadline); err != nil {
		return p, fmt.Errorf("probe to inet2: %w", err)
	}
	for _, s := range []struct {
		from *net.UDPConn
		msg  string
	}{{x, "other-addr"}, {a2, "other-port"}, {a, "same"}} {
		if _, err := s.from.WriteToUDPAddrPort([]byte(s.msg), p.Mapped1); err != nil {
			return p, fmt.Errorf("probe answer %s: %w", s.msg, err)
		}
	}
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(deadline)
	for range 3 {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if isTimeout(err) {
			break
		} else if err != nil {
			return p, fmt.Errorf("probe: %w", err)
		}
		switch string(buf[:n]) {
		case "same":
			p.FromSame = true
			_ = c.SetReadDeadline(time.Now().Add(straggleGrace))
		case "other-port":
			p.FromOtherPort = true
		case "other-addr":
			p.FromOtherAddr = true
		}
	}
	return p, nil
}

// exchange sends from c to the socket srv and returns the source srv saw.
func exchange(c, srv *net.UDPConn, deadline time.Time) (netip.AddrPort, error) {
	if _, err := c.WriteToUDPAddrPort([]byte("out"), addrPort(srv.LocalAddr())); err != nil {
		return netip.AddrPort{}, err
	}
	_ = srv.SetReadDeadline(deadline)
	buf := make([]byte, 64)
	_, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

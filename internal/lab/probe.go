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
	// Mapped1, Mapped2 and Mapped3 are the host as inet1, inet2 and
	// inet2's other port saw it, contacted in that order: all equal means
	// endpoint-independent mapping. When they differ, Mapped1 on the local
	// port means a port-preserving NAT, three consecutive ports a
	// sequential one (RFC 6081 §2).
	Mapped1, Mapped2, Mapped3 netip.AddrPort
	// Which answers to Mapped1 came in: from inet1's endpoint that was
	// contacted, from another port of that address, and from an address the
	// host never sent to. Filtering is endpoint-independent when all three
	// arrive, address-dependent when the last does not, address-and-port-
	// dependent when only the first does.
	FromSame, FromOtherPort, FromOtherAddr bool
}

// EndpointIndependent reports whether the host kept one mapping for all
// destinations.
func (p NATProbe) EndpointIndependent() bool { return p.Mapped1 == p.Mapped2 && p.Mapped2 == p.Mapped3 }

// Sequential reports whether the three mappings took consecutive ports.
func (p NATProbe) Sequential() bool {
	return p.Mapped2.Port() == p.Mapped1.Port()+1 && p.Mapped3.Port() == p.Mapped2.Port()+1
}

// PortPreserving reports whether the first destination saw the local port.
func (p NATProbe) PortPreserving() bool { return p.Mapped1.Port() == p.Local.Port() }

// Mode names the NAT behaviour the probe saw; "none" when the host was not
// translated at all. A UPnP gateway does not show in a probe: a
// SymmetricUPnP box probes as Symmetric (see Gateway).
func (p NATProbe) Mode() string {
	switch {
	case p.Mapped1 == p.Local && p.EndpointIndependent() && p.FromOtherAddr:
		return "none"
	case !p.EndpointIndependent() && p.Sequential():
		return SymmetricSequential.String()
	case !p.EndpointIndependent() && p.PortPreserving():
		return SymmetricPortPreserving.String()
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

// ProbeNAT measures the NAT in front of host (Client1, Client2, Client3 or
// Pub): one socket on it sends to inet1, inet2 and inet2's other port, which
// report the source they saw;
// then its mapping towards inet1 is sent to from a third address inet2 holds
// (never contacted), from inet1's other port and, last, from the inet1
// endpoint contacted. That last answer is expected whatever the NAT, and the
// others took the same path before it, so once it is in, the others had
// every chance to arrive; a short grace covers CPU reordering.
func (l *Lab) ProbeNAT(ctx context.Context, host string) (NATProbe, error) {
	var p NATProbe
	var socks probeSockets
	defer socks.close()
	listen := socks.listen
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
	b2, err := listen(inet2, inet2.v4[0], probeOtherPort)
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

	deadline := probeDeadline(ctx)
	if p.Mapped1, err = exchange(c, a, deadline); err != nil {
		return p, fmt.Errorf("probe to inet1: %w", err)
	}
	if p.Mapped2, err = exchange(c, b, deadline); err != nil {
		return p, fmt.Errorf("probe to inet2: %w", err)
	}
	if p.Mapped3, err = exchange(c, b2, deadline); err != nil {
		return p, fmt.Errorf("probe to inet2's other port: %w", err)
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

// probeSockets are the sockets of one probe, closed together at its end.
type probeSockets []*net.UDPConn

func (ps *probeSockets) listen(h *Host, a netip.Addr, port uint16) (*net.UDPConn, error) {
	c, err := h.ListenUDP(netip.AddrPortFrom(a, port))
	if err == nil {
		*ps = append(*ps, c)
	}
	return c, err
}

// close takes a pointer so that a deferred call sees the sockets opened
// after it was deferred.
func (ps *probeSockets) close() {
	for _, c := range *ps {
		c.Close()
	}
}

// probeDeadline bounds a probe: 2 s, or less if ctx ends sooner.
func probeDeadline(ctx context.Context) time.Time {
	deadline := time.Now().Add(2 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	return deadline
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

// HairpinProbe is what a NAT does to two of its LAN hosts, client1 and
// client3 behind nat1, that try to reach each other.
type HairpinProbe struct {
	// Mapped1 and Mapped3 are client1's and client3's sockets as inet1
	// saw them: the mappings each would advertise.
	Mapped1, Mapped3 netip.AddrPort
	// Hairpin: a packet to the other host's mapping came back in through
	// the NAT (in either direction). RFC 4380 §8.3 and RFC 6081 §3.5:
	// without it, Teredo clients behind one NAT need the Alternate Address
	// trailer.
	Hairpin bool
	// Local: packets to the other host's LAN address arrived, both ways.
	Local bool
}

// ProbeHairpin measures whether nat1 hairpins: client1 and client3 each
// send to inet1 to get a mapping, then each sends to the other's mapping
// and, last, to the other's LAN address. The LAN packet is expected
// whatever the NAT; once it is in, a short grace covers a hairpinned packet
// that took the longer way.
func (l *Lab) ProbeHairpin(ctx context.Context) (HairpinProbe, error) {
	var p HairpinProbe
	var socks probeSockets
	defer socks.close()
	listen := socks.listen
	inet1 := l.Host(Inet1)
	srv, err := listen(inet1, inet1.IPv4(), probePort)
	if err != nil {
		return p, err
	}
	h1, h3 := l.Host(Client1), l.Host(Client3)
	c1, err := listen(h1, h1.IPv4(), 0)
	if err != nil {
		return p, err
	}
	c3, err := listen(h3, h3.IPv4(), 0)
	if err != nil {
		return p, err
	}
	deadline := probeDeadline(ctx)
	if p.Mapped1, err = exchange(c1, srv, deadline); err != nil {
		return p, fmt.Errorf("hairpin probe, client1 to inet1: %w", err)
	}
	if p.Mapped3, err = exchange(c3, srv, deadline); err != nil {
		return p, fmt.Errorf("hairpin probe, client3 to inet1: %w", err)
	}
	local := 0
	for _, dir := range []struct {
		from, to *net.UDPConn
		mapped   netip.AddrPort
	}{{c1, c3, p.Mapped3}, {c3, c1, p.Mapped1}} {
		if _, err := dir.from.WriteToUDPAddrPort([]byte("mapped"), dir.mapped); err != nil {
			return p, fmt.Errorf("hairpin probe: %w", err)
		}
		if _, err := dir.from.WriteToUDPAddrPort([]byte("local"), addrPort(dir.to.LocalAddr())); err != nil {
			return p, fmt.Errorf("hairpin probe: %w", err)
		}
		buf := make([]byte, 64)
		_ = dir.to.SetReadDeadline(deadline)
		for range 2 {
			n, _, err := dir.to.ReadFromUDPAddrPort(buf)
			if isTimeout(err) {
				break
			} else if err != nil {
				return p, fmt.Errorf("hairpin probe: %w", err)
			}
			switch string(buf[:n]) {
			case "mapped":
				p.Hairpin = true
			case "local":
				local++
				_ = dir.to.SetReadDeadline(time.Now().Add(straggleGrace))
			}
		}
	}
	p.Local = local == 2
	return p, nil
}

// SPDX-License-Identifier: MIT

package client

// The UPnP-Enabled Symmetric NAT Extension's port mapping (RFC 6081 §5.3.3,
// §5.3.5): before qualifying, the client asks the Internet Gateway Device
// on its LAN, if there is one, to forward the Teredo socket's port to it
// from anyone, so that the server reflects that mapping into our address
// and a symmetric NAT becomes reachable there.
//
// Since the mapping must exist before the first solicitation leaves, every
// start waits for the search for that gateway, and a client with none
// would wait out the SSDP search's bound (Miredo, which has no UPnP,
// qualifies in tens of milliseconds). The search (igdSearch) therefore
// learns from the route to the server and a unicast search of its next hop
// that there is no gateway, in one round trip, in the usual cases: a
// server on our link, and a next hop with nothing on the SSDP port.
//
// The packet process takes the lease, not the privileged helper: UPnP
// needs no privilege (an HTTP client and a UDP socket on an ephemeral
// port), the mapping must exist before the first solicitation leaves, which
// the packet process's state machine sends, and it lives as long as that
// process serves. The helper stays what it is: a process holding
// CAP_NET_ADMIN that reads one fixed-size message from us and talks to no
// network; parsing a LAN device's XML there would hand its privilege to
// whoever answers SSDP.
//
// Where RFC 6081 asks for a lease of 0 (until deleted) and a port persisted
// across reboots to clean up after a crash, we ask for upnpLeaseTime and
// renew at half of it: a client killed without deleting its mapping leaves
// one that lapses by itself. A gateway that grants only permanent leases
// (WANIPConnection:1 error 725) gets 0. The mapping is deleted at shutdown.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/httpu"
	"github.com/huin/goupnp/soap"
	"github.com/huin/goupnp/ssdp"
)

const (
	// upnpSearch bounds the SSDP search when the next hop towards the
	// server neither answers nor refuses a unicast search (see igdSearch):
	// the time such a client loses before qualifying (goupnp waits for
	// answers until the search ends). A gateway on the LAN answers in
	// milliseconds; one that takes longer than this (UDA allows up to the
	// MX of 1 s we send) is taken for none, rather than hold every start
	// for a second.
	upnpSearch = 500 * time.Millisecond
	// upnpCall bounds each SOAP action.
	upnpCall = 3 * time.Second
	// upnpLeaseTime is the lease asked for, renewed at half of it.
	upnpLeaseTime = 10 * time.Minute
	// upnpDescription names the mapping as RFC 6081 §5.3.3 does.
	upnpDescription = "TEREDO"
	// upnpOnlyPermanent is WANIPConnection's OnlyPermanentLeasesSupported.
	upnpOnlyPermanent = 725
	// igdSearchTarget finds gateways of either version (an IGD:2 answers
	// searches for :1 too).
	igdSearchTarget = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
)

// igd is the part of a WANIPConnection (or WANPPPConnection) service the
// client uses; goupnp's clients of every version have it, and tests fake
// it.
type igd interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string,
		internalPort uint16, internalClient string, enabled bool, description string, lease uint32) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
}

// igdFinder finds a gateway and our address as it reaches us.
type igdFinder func(ctx context.Context) (igd, netip.Addr, error)

// errNoGateway: no gateway answered the search, or none can carry our
// traffic.
var errNoGateway = errors.New("no UPnP Internet Gateway Device answered")

// igdSearch finds the gateway that carries a client's traffic to its
// server. A client with no gateway must not wait long for the answer: it
// solicits its server only once the search is over. So the search starts
// from the route to the server (route.go): a server on our link, or none
// reachable, leaves no gateway to look for; with a next hop, a unicast
// search of that next hop (ssdpprobe.go) runs beside the multicast search
// and ends it as soon as the next hop answers or refuses; only a next hop
// that stays silent, or a route we cannot read, leaves the multicast search
// to wait out its bound (upnpSearch), as it always did.
type igdSearch struct {
	server string     // the server's address or name, as configured
	bind   netip.Addr // our socket's address, unspecified when not bound
	log    *slog.Logger
	// route finds the next hop towards the server (nextHopTo in use).
	route func(server string, bind netip.Addr) nextHop
	// probe asks the next hop (probeGateway in use).
	probe func(ctx context.Context, src netip.Addr, gw netip.AddrPort) (probeResult, *url.URL, error)
	// multicast is the SSDP multicast search (multicastSearch in use).
	multicast func(ctx context.Context) ([]*http.Response, error)
	// gatewayAt reads a device description (gatewayAt in use).
	gatewayAt func(ctx context.Context, loc *url.URL) (igd, netip.Addr, error)
}

// newIGDSearch is the search for a client of server whose socket is bound
// to bind.
func newIGDSearch(server string, bind netip.Addr, log *slog.Logger) *igdSearch {
	return &igdSearch{server: server, bind: bind, log: log, route: nextHopTo, probe: probeGateway,
		multicast: multicastSearch, gatewayAt: gatewayAt}
}

// find is an igdFinder. It logs its outcome once, with the route, the
// probe's result, the multicast search's answers and the time it took.
func (s *igdSearch) find(ctx context.Context) (igd, netip.Addr, error) {
	start := time.Now()
	hop := s.route(s.server, s.bind)
	attrs := []any{"route", hop.kind.String()}
	if hop.addr.IsValid() {
		attrs = append(attrs, "next_hop", hop.addr)
	}
	if hop.why != "" {
		attrs = append(attrs, "route_detail", hop.why)
	}
	logged := func(g igd, local netip.Addr, err error, more ...any) (igd, netip.Addr, error) {
		a := append(append(attrs, more...), "took", time.Since(start).Round(time.Millisecond))
		if err != nil {
			a = append(a, "err", err)
		}
		s.log.Info("UPnP gateway search", a...)
		return g, local, err
	}
	if hop.kind == hopNone {
		return logged(nil, netip.Addr{}, errNoGateway, "probe", "none")
	}
	sctx, cancel := context.WithTimeout(ctx, upnpSearch)
	defer cancel()

	type probed struct {
		r   probeResult
		loc *url.URL
		err error
	}
	probes := make(chan probed, 1)
	probing := hop.kind == hopGateway
	if probing {
		src := s.bind
		if src.IsUnspecified() {
			src = netip.Addr{}
		}
		go func() {
			r, loc, err := s.probe(sctx, src, netip.AddrPortFrom(hop.addr, ssdpPort))
			probes <- probed{r, loc, err}
		}()
	}
	type searched struct {
		answers []*http.Response
		err     error
	}
	searches := make(chan searched, 1)
	go func() {
		a, err := s.multicast(sctx)
		searches <- searched{a, err}
	}()
	var p probed
	var m searched
	for searching := true; probing || searching; {
		select {
		case p = <-probes:
			probing = false
			if p.r != probeSilent {
				cancel() // the next hop told us: no need to wait for others
			}
		case m = <-searches:
			searching = false
		}
	}
	probe := "none"
	if hop.kind == hopGateway {
		probe = p.r.String()
		if p.err != nil {
			attrs = append(attrs, "probe_err", p.err)
		}
	}
	switch p.r {
	case probeRefused:
		return logged(nil, netip.Addr{}, errNoGateway, "probe", probe)
	case probeAnswered:
		g, local, err := s.gatewayAt(ctx, p.loc)
		return logged(g, local, err, "probe", probe, "location", p.loc.String())
	}
	if m.err != nil {
		return logged(nil, netip.Addr{}, fmt.Errorf("SSDP search: %w", m.err), "probe", probe)
	}
	for _, a := range m.answers {
		loc, err := a.Location()
		if err != nil {
			continue
		}
		if g, local, err := s.gatewayAt(ctx, loc); err == nil {
			return logged(g, local, nil, "probe", probe, "answers", len(m.answers), "location", loc.String())
		}
	}
	return logged(nil, netip.Addr{}, errNoGateway, "probe", probe, "answers", len(m.answers))
}

// multicastSearch is goupnp's SSDP search of the LAN for gateways, until
// ctx ends (goupnp waits for answers until then).
func multicastSearch(ctx context.Context) ([]*http.Response, error) {
	hc, err := httpu.NewHTTPUClient()
	if err != nil {
		return nil, fmt.Errorf("SSDP: %w", err)
	}
	defer hc.Close()
	return ssdp.SSDPRawSearchCtx(ctx, hc, igdSearchTarget, 1, 2)
}

// gatewayAt reads the device description at loc and returns the first
// connection service it offers, newest version first, and our address
// towards the device. The description is fetched under ctx, not under the
// search's bound, which the multicast search has used up when it answers.
func gatewayAt(ctx context.Context, loc *url.URL) (igd, netip.Addr, error) {
	root, err := goupnp.DeviceByURLCtx(ctx, loc)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	local := localAddrTowards(loc.Hostname())
	if c, err := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); err == nil && len(c) > 0 {
		return c[0], local, nil
	}
	if c, err := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); err == nil && len(c) > 0 {
		return c[0], local, nil
	}
	if c, err := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); err == nil && len(c) > 0 {
		return c[0], local, nil
	}
	return nil, netip.Addr{}, fmt.Errorf("%s: no WAN connection service", loc)
}

// localAddrTowards is the source address the kernel would use to reach
// host (an IPv4 literal): our address as the gateway sees it. A connected
// UDP socket sends nothing.
func localAddrTowards(host string) netip.Addr {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Unmap(), 9)))
	if err != nil {
		return netip.Addr{}
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// upnpLease is a port mapping the client holds.
type upnpLease struct {
	igd      igd
	internal netip.AddrPort // our socket, as the gateway reaches it
	mapping  netip.AddrPort // the gateway's external address and port
	lease    time.Duration  // 0: permanent
	log      *slog.Logger
	// renewed counts renewals; failed those the gateway refused.
	renewed, failed int
}

// takeUPnP maps our Teredo socket's port (the same port outside, from any
// remote host, UDP, "TEREDO": RFC 6081 §5.3.3) on the gateway find
// returns, and reads the gateway's external address. bind is the socket's
// address when it is bound to one. Any failure means no extension (§5.3.3:
// continue without it).
func takeUPnP(ctx context.Context, find igdFinder, bind netip.AddrPort, log *slog.Logger) (*upnpLease, error) {
	g, local, err := find(ctx)
	if err != nil {
		return nil, err
	}
	if !bind.Addr().IsUnspecified() {
		local = bind.Addr()
	}
	if !local.Is4() {
		return nil, fmt.Errorf("no local IPv4 address towards the gateway (%v)", local)
	}
	u := &upnpLease{igd: g, internal: netip.AddrPortFrom(local, bind.Port()), lease: upnpLeaseTime, log: log}
	if err := u.add(ctx); err != nil {
		var fault *soap.SOAPFaultError
		if !errors.As(err, &fault) || fault.Detail.UPnPError.Errorcode != upnpOnlyPermanent {
			return nil, fmt.Errorf("AddPortMapping: %w", err)
		}
		u.lease = 0
		if err := u.add(ctx); err != nil {
			return nil, fmt.Errorf("AddPortMapping: %w", err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, upnpCall)
	defer cancel()
	ext, err := g.GetExternalIPAddressCtx(cctx)
	a, perr := netip.ParseAddr(ext)
	if err == nil && (perr != nil || !a.Unmap().Is4()) {
		err = fmt.Errorf("not an IPv4 address: %q", ext)
	}
	if err != nil {
		// §5.3.3: SHOULD delete the mapping and go on without it.
		u.release()
		return nil, fmt.Errorf("GetExternalIPAddress: %w", err)
	}
	u.mapping = netip.AddrPortFrom(a.Unmap(), bind.Port())
	return u, nil
}

// add asks for (or renews) the mapping.
func (u *upnpLease) add(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, upnpCall)
	defer cancel()
	p := u.internal.Port()
	return u.igd.AddPortMappingCtx(ctx, "", p, "UDP", p, u.internal.Addr().String(), true, upnpDescription,
		uint32(u.lease/time.Second))
}

// keep renews the lease at half its time until ctx ends, then deletes the
// mapping (§5.3.5.1).
func (u *upnpLease) keep(ctx context.Context) {
	if u.lease > 0 {
		t := time.NewTicker(u.lease / 2)
		defer t.Stop()
	renew:
		for {
			select {
			case <-ctx.Done():
				break renew
			case <-t.C:
				if err := u.add(ctx); err != nil {
					u.failed++
					u.log.Warn("cannot renew the UPnP port mapping", "mapping", u.mapping, "err", err)
				} else {
					u.renewed++
				}
			}
		}
	} else {
		<-ctx.Done()
	}
	u.release()
}

// release deletes the mapping.
func (u *upnpLease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), upnpCall)
	defer cancel()
	if err := u.igd.DeletePortMappingCtx(ctx, "", u.internal.Port(), "UDP"); err != nil {
		u.log.Warn("cannot delete the UPnP port mapping", "port", u.internal.Port(), "err", err)
		return
	}
	u.log.Info("UPnP port mapping deleted", "mapping", u.mapping)
}

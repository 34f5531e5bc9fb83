// SPDX-License-Identifier: MIT

package client

// The client's side of RFC 6081's extensions (the rules themselves are the
// data path's, in package tunnel): what the Engine must know about our NAT
// and our own address (Self), the random local ports of the Port-Preserving
// and Sequential extensions, and the UPnP port mapping (upnp.go).
//
// Random ports are plain UDP sockets on an ephemeral port, one per peer
// being set up behind a port-preserving or sequential NAT; the Engine asks
// for them (tunnel.PortOpener) and closes them once the Teredo port works.
// Each has a reader goroutine that hands its datagrams to
// Engine.FromRandomPort; what the Engine sends from one (Out.Via) goes out
// in flush. They are few and carry setup traffic (and, for a peer reached
// only through one, its packets), so they use no batching.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/loop"
	"github.com/miredo-go/miredo/pkg/proto"
)

// extensions is the client's RFC 6081 state.
type extensions struct {
	ports *randomSockets
	upnp  *upnpLease // nil without a mapping
	// local caches our local address towards a server (the kernel's
	// source address for it), for the Alternate Address trailer.
	local    netip.AddrPort
	localFor netip.Addr
}

// startUPnP takes the UPnP port mapping, unless --no-upnp: before the
// state machine starts, so that the first solicitation leaves through it.
func (c *Client) startUPnP(ctx context.Context) {
	if c.cfg.NoUPnP {
		return
	}
	bind := c.conn.LocalAddr()
	u, err := takeUPnP(ctx, newIGDSearch(c.cfg.Server, bind.Addr(), c.log).find, bind, c.log)
	switch {
	case errors.Is(err, errNoGateway):
		// The search's own line said why.
	case err != nil:
		c.log.Info("no UPnP port mapping", "err", err)
	default:
		c.ext.upnp = u
		c.log.Info("UPnP port mapping", "mapping", u.mapping, "internal", u.internal, "lease", u.lease)
	}
}

// upnpMapping is the UPnP port mapping we hold, if any.
func (c *Client) upnpMapping() netip.AddrPort {
	if c.ext.upnp == nil {
		return netip.AddrPort{}
	}
	return c.ext.upnp.mapping
}

// selfFor is what the Engine needs to know in status st.
func (c *Client) selfFor(st Status) tunnel.Self {
	s := tunnel.Self{
		Addr:    st.Addr,
		Server:  netip.AddrPortFrom(st.Server, proto.Port),
		Server2: netip.AddrPortFrom(st.Server2, proto.Port),
		Cone:    st.NAT == NATCone,
		// RFC 6081 §5.2, §5.4.3.
		Symmetric:      st.NAT.Symmetric(),
		PortPreserving: st.NAT == NATSymmetricPortPreserving,
		Local:          c.localEndpoint(st.Server),
		Probing:        st.NATProbing,
	}
	// §5.3.3: a UPnP mapping that is the one the server saw means one NAT
	// (anyone reaches our address's mapping); another means nested NATs
	// (§5.6.3: the mapping is then an alternate address).
	if m := st.UPnP; m.IsValid() {
		if m == st.Mapping {
			s.UPnP = true
		} else {
			s.UPnPMapping = m
		}
	}
	return s
}

// localEndpoint is the address and port our Teredo socket sends from to
// server: its bound address, or the kernel's choice of source address for
// the server when it is bound to any. Only the maintenance goroutine calls
// it.
func (c *Client) localEndpoint(server netip.Addr) netip.AddrPort {
	la := c.conn.LocalAddr()
	if !la.Addr().Unmap().IsUnspecified() {
		return netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
	}
	x := &c.ext
	if x.localFor != server || !x.local.IsValid() {
		x.localFor, x.local = server, netip.AddrPort{}
		// A connected UDP socket sends nothing: this only asks the
		// routing table.
		if conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, proto.Port))); err == nil {
			if a, ok := conn.LocalAddr().(*net.UDPAddr); ok {
				if ip, ok := netip.AddrFromSlice(a.IP); ok {
					x.local = netip.AddrPortFrom(ip.Unmap(), la.Port())
				}
			}
			conn.Close()
		}
	}
	return x.local
}

// sendVia sends what the Engine put in out.Via from the random ports.
func (c *Client) sendVia(out *tunnel.Out) {
	if len(out.Via) == 0 || c.ext.ports == nil {
		return
	}
	c.st.sendErrors.Add(uint64(c.ext.ports.send(out.Via)))
}

// maxRandomSockets mirrors the Engine's own bound; it only guards against
// a bug there.
const maxRandomSockets = 64

// randomSockets are the random local ports (tunnel.PortOpener).
type randomSockets struct {
	bind    netip.Addr
	receive func(b []byte, from netip.AddrPort, port uint16, out *tunnel.Out) error

	mu     sync.Mutex
	socks  map[uint16]*net.UDPConn
	closed bool
	wg     sync.WaitGroup
}

func newRandomSockets(bind netip.Addr) *randomSockets {
	return &randomSockets{bind: bind, socks: map[uint16]*net.UDPConn{}}
}

// Open binds a new socket on an ephemeral port of our address and starts
// its reader.
func (r *randomSockets) Open() (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, net.ErrClosed
	}
	if len(r.socks) >= maxRandomSockets {
		return 0, errors.New("too many random ports")
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.bind, 0)))
	if err != nil {
		return 0, err
	}
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	r.socks[port] = conn
	r.wg.Go(func() { r.read(conn, port) })
	return port, nil
}

// Close closes the socket on port, which ends its reader.
func (r *randomSockets) Close(port uint16) {
	r.mu.Lock()
	conn := r.socks[port]
	delete(r.socks, port)
	r.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// read hands the datagrams of one socket to the Engine until it closes.
func (r *randomSockets) read(conn *net.UDPConn, port uint16) {
	buf := make([]byte, udpBufSize)
	var out tunnel.Out
	var run loop.ErrorRun
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || run.Failed("random port read", err) != nil {
				return
			}
			continue
		}
		run.Reset()
		if r.receive(buf[:n], from, port, &out) != nil {
			return
		}
	}
}

// send sends each datagram from its port; it returns how many could not
// be (their port closed meanwhile, or the kernel refused).
func (r *randomSockets) send(msgs []tunnel.ViaMessage) (failed int) {
	for i := range msgs {
		m := &msgs[i]
		r.mu.Lock()
		conn := r.socks[m.Port]
		r.mu.Unlock()
		if conn == nil {
			failed++
			continue
		}
		if _, err := conn.WriteToUDPAddrPort(m.Buf[:m.N], m.Addr); err != nil {
			failed++
		}
	}
	return failed
}

// closeAll closes every socket and waits for the readers.
func (r *randomSockets) closeAll() {
	r.mu.Lock()
	r.closed = true
	socks := r.socks
	r.socks = map[uint16]*net.UDPConn{}
	r.mu.Unlock()
	for _, conn := range socks {
		conn.Close()
	}
	r.wg.Wait()
}

// extLoop runs for as long as the client serves: at its end it closes the
// random ports and removes the UPnP mapping (RFC 6081 §5.3.5), which it
// renews meanwhile.
func (c *Client) extLoop(ctx context.Context) error {
	if c.ext.upnp != nil {
		c.ext.upnp.keep(ctx)
	} else {
		<-ctx.Done()
	}
	if c.ext.ports != nil {
		c.ext.ports.closeAll()
	}
	return nil
}

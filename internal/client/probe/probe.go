// SPDX-License-Identifier: MIT

// Package probe asks Teredo servers what a client would get from them,
// without root and without touching any interface: the job of the old
// pteredor script, for `miredo-client probe`. It is client code (only
// cmd/miredo-client links it) and reuses the client's solicitations
// (proto.AppendRouterSolicitation) and its checks of their answers
// (client.Expect), so it accepts exactly the advertisements a client
// would.
//
// For each server, over one plain UDP socket of its own, it runs the
// exchanges of a qualification and of the client's NAT probe, in this
// order (the order matters: once we have sent to the secondary address, any
// NAT lets its answers in):
//
//  1. primary: a solicitation to the primary address; its answer says the
//     server works and which mapping (address and port) it saw;
//  2. cone: a solicitation with the cone bit to the primary, which the
//     server answers from its secondary address, one we have not sent to:
//     if the answer comes in, the NAT lets in unsolicited packets;
//  3. secondary: a solicitation to the secondary address; the mapping it
//     saw, compared with the primary's, says whether the NAT keeps one
//     mapping for all destinations.
//
// Classify turns the three into a NAT type with the evidence behind it.
package probe

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/miredo-go/miredo/internal/client"
	"github.com/miredo-go/miredo/pkg/proto"
)

// Config tunes a probe.
type Config struct {
	// Timeout bounds the wait for each answer of the primary and the
	// secondary address (the solicitation is sent three times within it)
	// and the name lookup. A server that never answers costs the lookup
	// and one Timeout.
	Timeout time.Duration
	// Prefix is the Teredo prefix servers must advertise; 0 means
	// proto.DefaultPrefix.
	Prefix uint32
}

// DefaultTimeout is the default Config.Timeout: RFC 4380's 4 s less a
// little, since a probe need not wait for a congested link.
const DefaultTimeout = 3 * time.Second

// tries is how many solicitations an exchange with the primary or the
// secondary address sends: one, then again after a third of the timeout
// and two thirds, so one lost datagram does not lose the server.
const tries = 3

// maxRefused bounds the refused answers an exchange keeps for the report.
const maxRefused = 4

// Exchange kinds.
const (
	KindPrimary   = "primary"
	KindCone      = "cone"
	KindSecondary = "secondary"
)

// Exchange is one solicitation exchange and what came of it.
type Exchange struct {
	Kind string         `json:"kind"`
	To   netip.AddrPort `json:"to"`
	// Sent counts the solicitations sent, each with its own nonce.
	Sent     int  `json:"sent"`
	Answered bool `json:"answered"`
	// From is where the accepted answer came from; Mapping is our address
	// and port as the answering server saw them (its origin indication).
	From    netip.AddrPort `json:"from,omitzero"`
	Mapping netip.AddrPort `json:"mapped,omitzero"`
	// RTT is the time from the solicitation the answer carries the nonce
	// of to the answer.
	RTT Millis `json:"rtt_ms,omitzero"`
	// Waited is how long the exchange took, answered or not.
	Waited Millis `json:"waited_ms"`
	// Refused lists answers that carried one of our nonces but failed the
	// client's checks, and why.
	Refused []string `json:"refused,omitempty"`
	ra      proto.RouterAdvertisement
}

// Millis is a duration that JSON shows in milliseconds.
type Millis time.Duration

// MarshalJSON writes the duration in milliseconds, to the microsecond.
func (m Millis) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%.3f", float64(m)/float64(time.Millisecond)), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Millis) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*m = Millis(ms * float64(time.Millisecond))
	return nil
}

func (m Millis) String() string { return time.Duration(m).Round(10 * time.Microsecond).String() }

// Result is what a probe learned about one server.
type Result struct {
	// Server is the name or address as given.
	Server    string     `json:"server"`
	Primary   netip.Addr `json:"primary,omitzero"`
	Secondary netip.Addr `json:"secondary,omitzero"`
	// Local is our socket as the route to the server leaves it: the
	// source address the kernel picks and the socket's port.
	Local netip.AddrPort `json:"local,omitzero"`
	// Works says the primary address answered with a valid
	// advertisement: a client would qualify.
	Works bool   `json:"works"`
	Error string `json:"error,omitempty"`
	// Mapping, Address, Prefix and MTU are what a client would get: its
	// mapped address and port, its Teredo address (whose 12 random flag
	// bits, RFC 5991, a client draws when it qualifies: 0 here), the
	// advertised prefix and link MTU.
	Mapping   netip.AddrPort `json:"mapped,omitzero"`
	Address   netip.Addr     `json:"teredo_address,omitzero"`
	Prefix    netip.Addr     `json:"prefix,omitzero"`
	MTU       uint32         `json:"mtu,omitzero"`
	Exchanges []Exchange     `json:"exchanges"`
	NAT       *NAT           `json:"nat,omitempty"`
}

// Probe asks server (a host name or an IPv4 address) what a client would
// get from it. It never blocks longer than the lookup, one Timeout for a
// silent server, or about three Timeouts for one that answers.
func Probe(ctx context.Context, server string, cfg Config) Result {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Prefix == 0 {
		cfg.Prefix = proto.DefaultPrefix
	}
	r := Result{Server: server, Exchanges: []Exchange{}}
	lctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	primary, secondary, err := client.ResolveServer(lctx, server)
	cancel()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Primary, r.Secondary = primary, secondary
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		r.Error = fmt.Sprintf("opening a UDP socket: %v", err)
		return r
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	src, err := routeSource(primary)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Local = netip.AddrPortFrom(src, port)
	p := &prober{conn: conn, primary: primary, secondary: secondary, port: proto.Port}
	p.run(ctx, &r, cfg)
	return r
}

// run does the three exchanges and fills in r.
func (p *prober) run(ctx context.Context, r *Result, cfg Config) {
	primary, secondary := p.primary, p.secondary
	x := p.exchange(ctx, KindPrimary, primary, client.Expect{From: primary, Server: primary, Prefix: cfg.Prefix}, tries, cfg.Timeout/tries)
	r.Exchanges = append(r.Exchanges, x)
	if !x.Answered {
		r.Error = fmt.Sprintf("no valid answer from %v within %v", x.To, cfg.Timeout)
		if len(x.Refused) > 0 {
			r.Error = fmt.Sprintf("%s (refused: %s)", r.Error, x.Refused[0])
		}
		return
	}
	r.Works = true
	r.Mapping = x.Mapping
	r.Address = proto.Address{Prefix: x.ra.Prefix, Server: primary, MappedPort: x.Mapping.Port(), MappedAddr: x.Mapping.Addr()}.Addr()
	r.Prefix = proto.PrefixAddr(x.ra.Prefix)
	r.MTU = x.ra.MTU
	if r.MTU == 0 {
		r.MTU = proto.MinMTU
	}

	// The cone solicitation goes out again if no answer is back in twice
	// the round trip and a quarter second (the client waits that long,
	// once): a lost answer would pass for a filtering NAT.
	wait := min(2*time.Duration(x.RTT)+250*time.Millisecond, cfg.Timeout)
	cone := p.exchange(ctx, KindCone, primary, client.Expect{From: secondary, Cone: true, Server: primary, Prefix: cfg.Prefix}, 2, wait)
	sec := p.exchange(ctx, KindSecondary, secondary, client.Expect{From: secondary, Server: primary, Prefix: cfg.Prefix}, tries, cfg.Timeout/tries)
	r.Exchanges = append(r.Exchanges, cone, sec)
	r.NAT = Classify(r.Local, x, cone, sec)
}

// All probes every server at once, each on its own socket, and returns
// their results in the order given.
func All(ctx context.Context, servers []string, cfg Config) []Result {
	out := make([]Result, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { out[i] = Probe(ctx, s, cfg) })
	}
	wg.Wait()
	return out
}

// routeSource returns the source address the kernel would give a datagram
// to server: a connected UDP socket learns it without sending anything.
func routeSource(server netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, proto.Port)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %v: %w", server, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// prober runs the exchanges with one server over one socket.
type prober struct {
	conn               *net.UDPConn
	primary, secondary netip.Addr
	port               uint16 // the server's: proto.Port but in tests
	buf                [2048]byte
}

// exchange sends up to n solicitations to server (with the cone bit when x
// says so), each with a fresh nonce and waited for during each, and returns
// at the first answer x accepts to any of them.
func (p *prober) exchange(ctx context.Context, kind string, server netip.Addr, x client.Expect, n int, each time.Duration) (ex Exchange) {
	ex = Exchange{Kind: kind, To: netip.AddrPortFrom(server, p.port)}
	sent := map[[proto.NonceLen]byte]time.Time{}
	start := time.Now()
	defer func() { ex.Waited = Millis(time.Since(start)) }()
	var e proto.Envelope
	for ex.Sent < n && ctx.Err() == nil {
		var nonce [proto.NonceLen]byte
		rand.Read(nonce[:])
		// Timed from before the send: on a fast path the answer may be
		// queued before the send call returns.
		sent[nonce] = time.Now()
		if _, err := p.conn.WriteToUDPAddrPort(proto.AppendRouterSolicitation(nil, nonce, x.Cone), ex.To); err != nil {
			ex.Refused = append(ex.Refused, fmt.Sprintf("sending: %v", err))
			return ex
		}
		ex.Sent++
		deadline := time.Now().Add(each)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = p.conn.SetReadDeadline(deadline)
		for {
			nb, from, err := p.conn.ReadFromUDPAddrPort(p.buf[:])
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				ex.Refused = append(ex.Refused, fmt.Sprintf("receiving: %v", err))
				return ex
			}
			at := time.Now()
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			if from.Port() != p.port || (from.Addr() != p.primary && from.Addr() != p.secondary) {
				continue // not the server's: not for us to judge
			}
			if proto.ParseEnvelope(p.buf[:nb], &e) != nil || !e.HasAuth {
				continue
			}
			t, ok := sent[e.Auth.Nonce]
			if !ok {
				continue // a late answer to an earlier exchange
			}
			ra, err := x.Check(&e, from)
			if err != nil {
				if len(ex.Refused) < maxRefused {
					ex.Refused = append(ex.Refused, fmt.Sprintf("from %v: %v", from, err))
				}
				continue
			}
			ex.Answered, ex.From, ex.Mapping, ex.RTT, ex.ra = true, from, e.Origin, Millis(at.Sub(t)), ra
			return ex
		}
	}
	return ex
}

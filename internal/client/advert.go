// SPDX-License-Identifier: MIT

package client

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/miredo-go/miredo/pkg/proto"
)

// Expect is what the answer to one router solicitation must look like: the
// checks of RFC 4380 §5.2.1 and Miredo's that do not depend on the
// client's state. The Machine applies them to every advertisement, and the
// prober (package probe) to the answers it collects, so both accept the
// same ones.
type Expect struct {
	// From is the server address that must answer: the primary, or the
	// secondary for a solicitation with the cone bit (the server answers
	// it from its other address) and for one sent to the secondary.
	From netip.Addr
	// Cone says the solicitation carried the cone bit, so the answer goes
	// to the cone link-local address.
	Cone bool
	// Server is the primary server address, which the advertised prefix
	// must carry whichever address answers.
	Server netip.Addr
	// Prefix is the Teredo prefix the server must advertise.
	Prefix uint32
}

// Check validates e, received from "from" with the nonce of the
// solicitation x describes (matching the nonce is the caller's part), and
// returns the advertisement. Its errors wrap the Err* values of this
// package.
func (x Expect) Check(e *proto.Envelope, from netip.AddrPort) (proto.RouterAdvertisement, error) {
	var ra proto.RouterAdvertisement
	if from.Addr().Unmap() != x.From {
		return ra, fmt.Errorf("%w: %v, want %v", ErrWrongSource, from.Addr(), x.From)
	}
	if e.Auth.Confirmation != 0 {
		return ra, ErrAuthFailed
	}
	if !e.HasOrigin {
		return ra, ErrNoOrigin
	}
	ll := proto.LinkLocalClient()
	if x.Cone {
		ll = proto.LinkLocalClientCone()
	}
	if e.IPv6.Dst() != ll {
		return ra, ErrWrongDst
	}
	ra, err := proto.ParseRouterAdvertisement(e.IPv6)
	if err != nil {
		return ra, fmt.Errorf("%w: %w", ErrBadAdvert, err)
	}
	if ra.Prefix != x.Prefix {
		return ra, fmt.Errorf("%w: %v", ErrWrongPrefix, proto.PrefixAddr(ra.Prefix))
	}
	if ra.Server != x.Server {
		return ra, fmt.Errorf("%w: %v, want %v", ErrWrongServer, ra.Server, x.Server)
	}
	return ra, nil
}

// ResolveServer looks up a server given as a host name or an IPv4 address,
// as the client does, and returns its primary address (the first, for a
// name with several) and the secondary (the primary plus one, as Windows
// and Miredo's server assume), both checked as the Machine checks them.
func ResolveServer(ctx context.Context, name string) (primary, secondary netip.Addr, err error) {
	if err := CheckServerName(name); err != nil {
		return primary, secondary, fmt.Errorf("server %q: %w", name, err)
	}
	addrs, err := lookupIPv4(ctx, name)
	if err != nil {
		return primary, secondary, err
	}
	return checkServers(addrs[0], addrs[0].Next())
}

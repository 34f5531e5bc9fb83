// SPDX-License-Identifier: MIT

package server

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// Config is what the server needs to run, after flags and miredo-server.conf
// have been merged.
type Config struct {
	Primary   netip.Addr // ServerBindAddress
	Secondary netip.Addr // ServerBindAddress2; primary+1 when unset
	Prefix    netip.Addr // advertised Teredo prefix (first 32 bits used)
	MTU       int        // advertised in the RA MTU option
	User      string
	Chroot    string
	PIDFile   string
	// Sockets per server address (SO_REUSEPORT); 0 picks one per core,
	// steered to half of them below saturation (see socketCounts).
	Sockets int
	// NoBatch turns recvmmsg/sendmmsg off, for benchmarks.
	NoBatch bool
	// Coalesce is the longest a socket loop sleeps after a batch to gather
	// the next (udpio.Options.Coalesce), 0 to never sleep; at most
	// MaxCoalesce.
	Coalesce time.Duration
	// XDP names the interface to serve through AF_XDP (see xdpPath); the
	// server falls back to UDP sockets when it cannot attach there.
	XDP string
	// RateLimit bounds the datagrams the server sends to one IPv4 /24 per
	// second (advertisements and forwarded packets); 0 means no limit.
	// See sendLimiter.
	RateLimit uint32
	// ControlSocket is where `miredo-server status` asks; "" for none.
	ControlSocket string
	// ControlSocketNamed says the operator chose ControlSocket: then it must
	// be free (see control.ListenOrWarn).
	ControlSocketNamed bool
	// MetricsListen is where Prometheus metrics are served (host:port); "" for none.
	MetricsListen string
}

// Errors from Config.Check, so callers can point at the flag or directive.
var (
	ErrNoPrimary    = errors.New("no primary server address: give --primary or ServerBindAddress")
	ErrNotGlobal    = errors.New("server IPv4 addresses must be global unicast")
	ErrSecondary    = errors.New("secondary address must differ from the primary")
	ErrPrefix       = errors.New("the Teredo prefix must be an IPv6 unicast address")
	ErrAdvertiseMTU = errors.New("advertised MTU must be within 1280-65535")
	ErrCoalesce     = errors.New("coalescing delay must be within 0-" + MaxCoalesce.String())
)

// DefaultCoalesce is --coalesce's default: past a quarter of this lab's
// peak rate, a loop answers about a dozen solicitations per wake-up, and
// each answer waits at most half a millisecond (issue 14).
const DefaultCoalesce = 500 * time.Microsecond

// MaxCoalesce bounds --coalesce: a longer bound only matters where
// sixteen solicitations take longer than 10 ms to come (under 1600 a
// second per socket), where the wake-ups it would save cost next to
// nothing, and every answer would wait longer.
const MaxCoalesce = 10 * time.Millisecond

// Check validates c and fills in defaults: the secondary address is the
// primary plus one, as Windows clients assume.
func (c Config) Check() (Config, error) {
	if !c.Primary.IsValid() {
		return c, ErrNoPrimary
	}
	c.Primary = c.Primary.Unmap()
	if !proto.IsGlobalUnicastIPv4(c.Primary) {
		return c, fmt.Errorf("primary %v: %w", c.Primary, ErrNotGlobal)
	}
	if !c.Secondary.IsValid() {
		c.Secondary = c.Primary.Next()
	}
	c.Secondary = c.Secondary.Unmap()
	if !proto.IsGlobalUnicastIPv4(c.Secondary) {
		return c, fmt.Errorf("secondary %v: %w", c.Secondary, ErrNotGlobal)
	}
	if c.Secondary == c.Primary {
		return c, ErrSecondary
	}
	if !c.Prefix.IsValid() {
		c.Prefix = proto.PrefixAddr(proto.DefaultPrefix)
	}
	if !c.Prefix.Is6() || c.Prefix.Is4In6() || c.Prefix.IsMulticast() {
		return c, fmt.Errorf("prefix %v: %w", c.Prefix, ErrPrefix)
	}
	if c.MTU == 0 {
		c.MTU = proto.MinMTU
	}
	if c.MTU < proto.MinMTU || c.MTU > 65535 {
		return c, fmt.Errorf("MTU %d: %w", c.MTU, ErrAdvertiseMTU)
	}
	if c.Coalesce < 0 || c.Coalesce > MaxCoalesce {
		return c, fmt.Errorf("coalescing delay %v: %w", c.Coalesce, ErrCoalesce)
	}
	return c, nil
}

// unapplied names the settings of next that differ from c's and that a
// running server cannot take: those that need the privileges it dropped,
// or that shape its process.
func (c Config) unapplied(next Config) []string {
	var names []string
	for _, d := range []struct {
		changed bool
		name    string
	}{
		{c.User != next.User || c.Chroot != next.Chroot || c.PIDFile != next.PIDFile, "--user/--chroot/--pidfile"},
		{c.Sockets != next.Sockets || c.NoBatch != next.NoBatch || c.Coalesce != next.Coalesce, "--sockets/--no-batch/--coalesce"},
		{c.ControlSocket != next.ControlSocket || c.MetricsListen != next.MetricsListen, "--control-socket/--metrics-listen"},
	} {
		if d.changed {
			names = append(names, d.name)
		}
	}
	return names
}

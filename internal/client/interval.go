// SPDX-License-Identifier: MIT

package client

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// This file is the refresh interval determination procedure of RFC 4380
// §5.2.7 as a state machine with no I/O. A second UDP socket, the
// secondary port, qualifies with the server like the service port; then it
// stays silent for a candidate interval, and a bubble sent from the service
// port to its Teredo address travels through the server (which forwards it
// from outside, as it would a peer's) to the secondary port's mapping: it
// arrives if the NAT kept that mapping and the server's permission for
// that long. The refresh interval follows what the NAT keeps.
//
// The RFC searches upwards from 30 s, for NATs that keep mappings longer.
// Some NATs forget UDP mappings in 20 s or less, and with the RFC's 30 s
// refresh a client behind one loses its mapping between refreshes (and,
// with it, every peer that would reach it through the server). So the
// first candidate here is the current interval itself: if it fails, the
// interval is halved at once and the search goes on between the two.
//
// It never goes above the configured interval (30 s unless set): the
// refresh is also how an idle client finds out that its server died, and
// a client of a pool must move to a live server soon after (issue 12);
// refreshing every two minutes would save the server three solicitations
// in four and leave such a client unreachable for new peers that long.

// Procedure constants (RFC 4380 §5.2.7, and our downward extension).
const (
	// intervalMax is the RFC's maximum refresh interval.
	intervalMax = 120 * time.Second
	// intervalMin bounds the downward search: a NAT that forgets a mapping
	// faster than this gets a refresh this often anyway.
	intervalMin = 5 * time.Second
	// bubbleWait and bubbleTries: each candidate's bubble is repeated
	// after 2 s, three times in all (the RFC's step 3).
	bubbleWait  = 2 * time.Second
	bubbleTries = 3
	// qualifyWait and qualifyTries bound the secondary port's
	// qualification.
	qualifyWait  = 2 * time.Second
	qualifyTries = 3
)

type intervalPhase uint8

const (
	ivIdle       intervalPhase = iota // not started, or stopped
	ivQualifying                      // the secondary port solicits the server
	ivWaiting                         // silence on the secondary port for the candidate
	ivBubbling                        // the bubble to the secondary address is out
	ivDone                            // concluded (or abandoned): the secondary port can close
)

// intervalActions is what the procedure asks the caller to do.
type intervalActions struct {
	// FromSecondary holds solicitations to send from the secondary port.
	FromSecondary []Datagram
	// FromService holds bubbles to send from the service port.
	FromService []Datagram
	// Refresh, when not zero, is the refresh interval to use from now.
	Refresh time.Duration
	// Close says the procedure is over: the secondary port can close.
	Close bool
}

// intervalProbe runs the procedure for one qualification of the service
// port. It is not safe for concurrent use.
type intervalProbe struct {
	log   *slog.Logger
	rand  func([]byte)
	phase intervalPhase

	self   netip.Addr // the service port's Teredo address
	server netip.Addr // the primary server
	prefix uint32

	// refresh is the interval in use, candidate the one being tried; good
	// is the longest that held (0: none yet), bad the shortest that failed
	// (the RFC's maximum until one does); ceiling is the configured
	// interval, which the search does not go above.
	refresh, candidate, good, bad, ceiling time.Duration

	nonce   [proto.NonceLen]byte
	secAddr netip.Addr // the secondary port's Teredo address
	last    time.Time  // last interaction on the secondary port
	sent    time.Time  // last solicitation or bubble
	tries   int
	// determined says the procedure concluded with a measured interval.
	determined bool
}

// newIntervalProbe starts the procedure for a service port qualified as
// self with server, refreshing every refresh.
func newIntervalProbe(now time.Time, self, server netip.Addr, prefix uint32, refresh time.Duration,
	rnd func([]byte), log *slog.Logger, a *intervalActions) *intervalProbe {
	p := &intervalProbe{log: log, rand: rnd, self: self, server: server, prefix: prefix,
		refresh: refresh, bad: intervalMax, candidate: refresh, ceiling: refresh}
	p.qualify(now, a)
	return p
}

// rebase carries the procedure over to a new address of the service port
// (a new mapping, or another server): what it learned of the NAT still
// holds, so it re-qualifies the secondary port and goes on with the
// candidate it was trying. A NAT that forgets mappings before the refresh
// gives the client a new address at every refresh; starting over each
// time, the procedure would never end. The secondary port keeps its own
// mapping: a wait under way goes on (only the bubble's source changes).
func (p *intervalProbe) rebase(now time.Time, self, server netip.Addr, a *intervalActions) {
	p.self = self
	if server == p.server && (p.phase == ivWaiting || p.phase == ivBubbling) {
		return // the secondary port's mapping is not the service port's
	}
	p.server = server
	p.phase = ivIdle
	p.qualify(now, a)
}

// running reports whether the procedure is still going.
func (p *intervalProbe) running() bool { return p.phase != ivDone && p.phase != ivIdle }

// qualify sends a (fresh) solicitation from the secondary port.
func (p *intervalProbe) qualify(now time.Time, a *intervalActions) {
	if p.phase != ivQualifying {
		p.tries = 0
	}
	p.phase = ivQualifying
	p.rand(p.nonce[:])
	p.tries++
	p.sent = now
	a.FromSecondary = append(a.FromSecondary, Datagram{To: netip.AddrPortFrom(p.server, proto.Port),
		Payload: proto.AppendRouterSolicitation(nil, p.nonce, false)})
}

// Deadline is when Tick must run next; zero when nothing is timed.
func (p *intervalProbe) Deadline() time.Time {
	switch p.phase {
	case ivQualifying:
		return p.sent.Add(qualifyWait)
	case ivWaiting:
		return p.last.Add(p.candidate)
	case ivBubbling:
		return p.sent.Add(bubbleWait)
	}
	return time.Time{}
}

// Tick runs the procedure's timers due at now.
func (p *intervalProbe) Tick(now time.Time, a *intervalActions) {
	switch p.phase {
	case ivQualifying:
		if now.Before(p.sent.Add(qualifyWait)) {
			return
		}
		if p.tries < qualifyTries {
			p.qualify(now, a)
			return
		}
		p.log.Info("refresh interval not determined: the secondary port could not qualify; keeping it", "refresh", p.refresh)
		p.finish(a)
	case ivWaiting:
		if now.Before(p.last.Add(p.candidate)) {
			return
		}
		p.phase, p.tries = ivBubbling, 0
		p.bubble(now, a)
	case ivBubbling:
		if now.Before(p.sent.Add(bubbleWait)) {
			return
		}
		if p.tries < bubbleTries {
			p.bubble(now, a)
			return
		}
		p.failed(now, a)
	}
}

// bubble sends the bubble from the service port to the secondary address,
// through the server.
func (p *intervalProbe) bubble(now time.Time, a *intervalActions) {
	p.tries++
	p.sent = now
	a.FromService = append(a.FromService, Datagram{To: netip.AddrPortFrom(p.server, proto.Port),
		Payload: proto.AppendBubble(nil, p.self, p.secAddr, 0)})
}

// Receive takes a datagram that arrived on the secondary port, and reports
// whether the procedure took it: the server's advertisement during
// qualification, or the bubble forwarded to the secondary address.
func (p *intervalProbe) Receive(now time.Time, b []byte, from netip.AddrPort, a *intervalActions) bool {
	if from != netip.AddrPortFrom(p.server, proto.Port) {
		return false
	}
	var e proto.Envelope
	if proto.ParseEnvelope(b, &e) != nil {
		return false
	}
	switch p.phase {
	case ivQualifying:
		if !e.HasAuth || e.Auth.Nonce != p.nonce || !e.HasOrigin {
			return false
		}
		ra, err := proto.ParseRouterAdvertisement(e.IPv6)
		if err != nil || ra.Server != p.server || ra.Prefix != p.prefix {
			return false
		}
		var flags [2]byte
		p.rand(flags[:])
		p.secAddr = proto.Address{Prefix: p.prefix, Server: p.server, Flags: proto.RandomFlags(flags, false),
			MappedPort: e.Origin.Port(), MappedAddr: e.Origin.Addr()}.Addr()
		p.last = now
		p.phase = ivWaiting
		return true
	case ivBubbling:
		if !e.IPv6.IsBubble() || e.IPv6.Dst() != p.secAddr {
			return false
		}
		p.last = now
		p.succeeded(now, a)
		return true
	}
	return false
}

// succeeded: the mapping lasted the candidate interval (the RFC's step 4).
// Upwards the next candidate doubles (at most halfway to the maximum, as
// the RFC says) until a candidate fails; then the search halves the gap.
func (p *intervalProbe) succeeded(now time.Time, a *intervalActions) {
	p.log.Debug("refresh interval candidate held", "candidate", p.candidate)
	p.good = p.candidate
	if p.refresh != p.good {
		p.refresh = p.good
		a.Refresh = p.refresh
	}
	next := (p.good + p.bad) / 2
	if p.bad == intervalMax {
		next = min(2*p.good, next)
	}
	p.next(now, next, a)
}

// failed: the mapping did not last the candidate interval (step 5). When
// the interval in use is not shorter than the failed candidate, it is
// halved at once (the NAT forgets mappings between our refreshes), and the
// halved value is the next candidate until one holds.
func (p *intervalProbe) failed(now time.Time, a *intervalActions) {
	p.log.Debug("refresh interval candidate failed", "candidate", p.candidate)
	p.bad = p.candidate
	if p.refresh >= p.bad {
		p.refresh = max(p.bad/2, intervalMin)
		a.Refresh = p.refresh
		p.log.Info("the NAT forgets mappings faster than the refresh interval: refreshing more often", "refresh", p.refresh)
	}
	next := (p.good + p.bad) / 2
	if p.good == 0 {
		next = p.refresh
	}
	p.next(now, next, a)
}

// next concludes when the interval in use is verified and within a quarter
// of the shortest that failed (or nothing shorter can be tried), and
// otherwise re-qualifies the secondary port (step 6) to try candidate.
func (p *intervalProbe) next(now time.Time, candidate time.Duration, a *intervalActions) {
	switch {
	case p.good >= p.ceiling:
		p.determined = true
		p.log.Info("refresh interval confirmed", "refresh", p.refresh)
		p.finish(a)
		return
	case p.good > 0 && p.good >= p.bad*3/4:
		p.determined = true
		p.log.Info("refresh interval determined", "refresh", p.refresh, "fails_at", p.bad)
		p.finish(a)
		return
	case p.good == 0 && p.bad <= intervalMin:
		p.determined = true
		p.log.Warn("the NAT forgets mappings within seconds: refreshing as often as allowed", "refresh", p.refresh)
		p.finish(a)
		return
	}
	p.candidate = candidate
	p.qualify(now, a)
}

// finish ends the procedure.
func (p *intervalProbe) finish(a *intervalActions) {
	p.phase = ivDone
	a.Close = true
}

// SPDX-License-Identifier: MIT

package client

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// This file is qualification and maintenance (RFC 4380 §5.2.1, §5.2.5,
// RFC 5991) as a state machine with no I/O: the caller feeds it the time,
// the server's addresses and the router advertisements it receives, and
// sends the solicitations and applies the status it returns. Tests drive
// it with a fake clock and a fake server.
//
//	Resolving --Resolved--> Qualifying --RA--> Qualified --(3 RS unanswered)--> Offline
//	    ^                       |                  ^   \--RA, new mapping: new address
//	    |                       +--(3 RS)--> Offline   \--refresh: RS after a silent 75-100 % of 30 s
//	    +--------------------------------------(back-off)--+
//
// Rediscover (a network change) resolves again at once: a qualified client
// solicits the primary address right away, keeping its address until the
// answer; any other phase goes back to Resolving without the back-off.
//
// Where it differs from Miredo 1.2.6, whose client solicits the primary
// address only, refreshes every 30 s whatever it hears, and waits a fixed
// 100 s after losing its server: after qualifying it also probes the NAT (a cone solicitation answered from
// the secondary address, then a solicitation to the secondary address whose
// mapping is compared with the primary's) and reports cone, restricted or
// symmetric; refreshes are randomised and skipped while the server talks to
// us; the RA's source address is checked; and after a loss it retries with a
// back-off that starts at a few seconds instead of a fixed 100 s.

// NATType is what the qualification probes learned about the NAT in front of
// the client.
type NATType uint8

// NAT types, in RFC 4380 §5.2.1 terms.
const (
	// NATUnknown: not probed yet, or the secondary address did not answer.
	NATUnknown NATType = iota
	// NATCone: a solicitation with the cone bit, answered from the
	// secondary address we never sent to, came in: anyone can reach our
	// mapping (no NAT at all looks the same).
	NATCone
	// NATRestricted: the same mapping towards both server addresses, but
	// the cone probe was filtered (address- or port-restricted cone NAT).
	NATRestricted
	// NATSymmetric: a different mapping per destination. Teredo still
	// works through relays; peers behind cone and address-restricted NATs
	// reach us through RFC 6081's Symmetric NAT Support Extension.
	NATSymmetric
	// NATSymmetricPortPreserving: symmetric, but the primary server saw
	// our local port (RFC 6081 §5.4.3): the NAT keeps a socket's port for
	// its first destination, which the Port-Preserving extension uses.
	NATSymmetricPortPreserving
	// NATSymmetricSequential: symmetric, and the secondary server saw the
	// port just after the primary's (RFC 6081 §3.4: a NAT that hands out
	// ports in turn; the Sequential extension predicts them).
	NATSymmetricSequential
	// NATSymmetricUPnP: symmetric, with a UPnP port mapping that the
	// server saw as our mapping (RFC 6081 §5.3.3: one NAT, reachable by
	// anyone at the mapping in our address).
	NATSymmetricUPnP
)

var natNames = [...]string{"unknown", "cone", "restricted", "symmetric",
	"symmetric (port-preserving)", "symmetric (sequential)", "symmetric (UPnP mapped)"}

// maxSequentialStep is the largest gap between the primary's and the
// secondary's port that still reads as a sequential NAT: other flows of
// the LAN may take ports in between.
const maxSequentialStep = 16

// Symmetric reports whether n is one of the symmetric kinds.
func (n NATType) Symmetric() bool { return n >= NATSymmetric && int(n) < len(natNames) }

func (n NATType) String() string {
	if int(n) < len(natNames) {
		return natNames[n]
	}
	return fmt.Sprintf("NATType(%d)", n)
}

// Phase is where the client stands with its server.
type Phase uint8

// Phases.
const (
	// PhaseResolving: waiting for the caller to resolve the server names.
	PhaseResolving Phase = iota
	// PhaseQualifying: soliciting the primary address, no address yet.
	PhaseQualifying
	// PhaseQualified: the Teredo address is usable; maintenance runs.
	PhaseQualified
	// PhaseOffline: the server did not answer (or could not be resolved);
	// waiting for the back-off to end.
	PhaseOffline
)

var phaseNames = [...]string{"resolving", "qualifying", "qualified", "offline"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", p)
}

// Status is the client's view of its Teredo service, as the machine exposes
// it: what the interface must look like, and what was learned on the way.
type Status struct {
	Phase Phase
	// Addr is the Teredo address; valid only when Phase is PhaseQualified.
	Addr netip.Addr
	// MTU is the link MTU the server advertised (1280 when it did not).
	MTU int
	// Mapping is our external IPv4 endpoint as the primary server saw it.
	Mapping netip.AddrPort
	// Server and Server2 are the primary and secondary server addresses.
	Server, Server2 netip.Addr
	// NAT is the NAT behaviour the probes found.
	NAT NATType
	// NATProbing: qualified, and the probes of the NAT behaviour are
	// still out (NAT may change): the Engine sets up no Teredo peer
	// meanwhile (tunnel.Self.Probing). Status derives it.
	NATProbing bool
	// UPnP is the port mapping a UPnP gateway gave us (RFC 6081 §5.3.3),
	// if any: the mapping in our address when our NAT is the gateway.
	UPnP netip.AddrPort
	// Since is when Addr was configured.
	Since time.Time
	// RTT is the round trip of the last answered solicitation.
	RTT time.Duration
	// Unreachable is the last primary server address that stopped
	// answering: the next resolution of a pool avoids it.
	Unreachable netip.Addr
	// Refreshed is when the primary server last confirmed the mapping
	// (an advertisement answered our solicitation).
	Refreshed time.Time
	// Configured says the tunnel interface carries Addr and MTU. The
	// machine never sets it: the client does, once the helper has applied
	// them (it retries while the helper cannot).
	Configured bool
}

// LogValue prints a Status with stable keys.
func (s Status) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("phase", s.Phase.String())}
	if s.Addr.IsValid() {
		attrs = append(attrs, slog.String("address", s.Addr.String()), slog.Int("mtu", s.MTU),
			slog.String("mapping", s.Mapping.String()), slog.Bool("configured", s.Configured))
	}
	if s.Server.IsValid() {
		attrs = append(attrs, slog.String("server", s.Server.String()), slog.String("server2", s.Server2.String()))
	}
	attrs = append(attrs, slog.String("nat", s.NAT.String()))
	if s.UPnP.IsValid() {
		attrs = append(attrs, slog.String("upnp", s.UPnP.String()))
	}
	return slog.GroupValue(attrs...)
}

// Timing holds the machine's timers.
type Timing struct {
	// Timeout is how long to wait for an RA before resending the RS
	// (RFC 4380 T, 4 s).
	Timeout time.Duration
	// Retries is how many solicitations go unanswered before the server is
	// given up (RFC 4380 N, 3).
	Retries int
	// Refresh is the Teredo refresh interval (30 s). Each wait is a random
	// 75-100 % of it, counted from the last packet heard from the server
	// (RFC 4380 §5.2.5).
	Refresh time.Duration
	// BackoffMin and BackoffMax bound the wait before trying again after
	// the server went silent (or could not be resolved): it starts at
	// BackoffMin and doubles. Each try then sends one solicitation and
	// waits RetryTimeout for the answer: an offline client asks again every
	// few seconds, so it is back within seconds of its server (Miredo waits
	// 100 s), and a server name resolved again on each try moves it to a
	// live member of a pool.
	BackoffMin, BackoffMax time.Duration
	RetryTimeout           time.Duration
	// SuspectGap is the least time between two early solicitations asked
	// for by the data path (Suspect).
	SuspectGap time.Duration
	// ConeQuiet is how long after our last solicitation to the secondary
	// address a cone probe still means something: until the NAT forgets
	// that flow (RFC 4787 asks for at least 2 min, recommends 5), it lets
	// the secondary's answer in whatever its filtering, so a new mapping
	// within that time is only compared, not probed for cone again.
	ConeQuiet time.Duration
}

// DefaultTiming returns RFC 4380's timers and our back-off.
func DefaultTiming() Timing {
	return Timing{
		Timeout:      4 * time.Second,
		Retries:      3,
		Refresh:      30 * time.Second,
		BackoffMin:   time.Second,
		BackoffMax:   2 * time.Second,
		RetryTimeout: 2 * time.Second,
		SuspectGap:   10 * time.Second,
		ConeQuiet:    5 * time.Minute,
	}
}

// MachineConfig is fixed for a Machine's life.
type MachineConfig struct {
	Timing Timing
	// Prefix is the Teredo prefix the server must advertise; 0 means
	// proto.DefaultPrefix.
	Prefix uint32
	// MaxMTU is the largest link MTU the client's buffers carry; a larger
	// advertised MTU is lowered to it (0 means no limit below 65535).
	MaxMTU int
	// Rand fills nonces, flag bits and timer jitter; tests pass a seeded
	// source, daemons crypto/rand.
	Rand func([]byte)
	// Log receives the machine's decisions; nil discards them.
	Log *slog.Logger
	// LocalPort is our socket's port and UPnP the port mapping a UPnP
	// gateway gave it, if any: they tell the kinds of symmetric NAT apart
	// (RFC 6081 §5.3.3, §5.4.3).
	LocalPort uint16
	UPnP      netip.AddrPort
}

// Datagram is a solicitation to send.
type Datagram struct {
	To      netip.AddrPort
	Payload []byte
}

// Actions is what a call asks the caller to do. The caller resets it
// (Reset) before reusing it.
type Actions struct {
	// Send holds the solicitations to send, in order.
	Send []Datagram
	// Resolve asks for the server names to be resolved, and the result
	// passed to Resolved.
	Resolve bool
	// Changed says Status changed: the caller compares it with what it
	// applied last and reconfigures the interface and the data path.
	Changed bool
}

// Reset empties a for reuse.
func (a *Actions) Reset() { *a = Actions{Send: a.Send[:0]} }

// Errors Receive returns for datagrams it does not accept, so the caller can
// count them and tests can tell the checks apart.
var (
	ErrNotServer    = errors.New("not from our server's Teredo port")
	ErrNotSolicited = errors.New("no solicitation with this nonce is waiting")
	ErrWrongSource  = errors.New("advertisement from the wrong server address")
	ErrAuthFailed   = errors.New("server refused our authentication (confirmation byte set)")
	ErrNoOrigin     = errors.New("advertisement without origin indication")
	ErrWrongDst     = errors.New("advertisement not addressed to our solicitation's link-local source")
	ErrWrongPrefix  = errors.New("advertised prefix is not the Teredo prefix")
	ErrWrongServer  = errors.New("advertised prefix does not carry our server's IPv4 address")
	ErrBadAdvert    = errors.New("malformed advertisement")
)

// rsKind names the three solicitations that can be outstanding at once.
type rsKind uint8

const (
	rsPrimary   rsKind = iota // to the primary address: qualification and refresh
	rsCone                    // cone bit set, to the primary; answered from the secondary
	rsSecondary               // to the secondary address: the mapping comparison
	numKinds
)

var kindNames = [numKinds]string{"primary", "cone", "secondary"}

// solicitation is one outstanding RS.
type solicitation struct {
	active bool
	nonce  [proto.NonceLen]byte
	sent   time.Time // last transmission
	tries  int
	// timeout and maxTries are Timing's Timeout and Retries, except for
	// the one solicitation of a retry after a loss.
	timeout  time.Duration
	maxTries int
	// until ends the wait for a cone probe, which is sent once: its answer
	// being filtered is the expected outcome behind most NATs.
	until time.Time
}

// Machine is the qualification and maintenance state machine. It is not
// safe for concurrent use: one goroutine owns it.
type Machine struct {
	cfg MachineConfig
	log *slog.Logger
	st  Status

	rs [numKinds]solicitation

	// flags are the RFC 5991 random bits of the current address; they
	// change only with the mapping or the server (flagsFor).
	flags    uint16
	flagsFor netip.AddrPort
	flagsSrv netip.Addr
	hasFlags bool

	lastContact  time.Time // last RA or packet from the primary server
	refreshShare float64   // this cycle's share of Refresh, 0.75-1
	retryAt      time.Time // Offline: when to resolve again
	failures     int       // consecutive losses, for the back-off
	lastSuspect  time.Time
	natProbed    bool       // a NAT probe ran for the current mapping
	toSecondary  time.Time  // last solicitation to the secondary address
	secondaryWas netip.Addr // ... which was this one
	coneSkipped  bool       // this probe compares mappings only
	coneSeen     bool       // a UPnP mapping lets anyone reach our mapping
	rediscover   bool       // qualified, and Rediscover asked for a resolution
}

// NewMachine returns a machine in PhaseResolving; call Start.
func NewMachine(cfg MachineConfig) *Machine {
	if cfg.Prefix == 0 {
		cfg.Prefix = proto.DefaultPrefix
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming()
	}
	if cfg.Rand == nil {
		cfg.Rand = func(b []byte) { rand.Read(b) }
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Machine{cfg: cfg, log: log, st: Status{MTU: proto.MinMTU, UPnP: cfg.UPnP}}
}

// Status returns the current status.
func (m *Machine) Status() Status {
	st := m.st
	st.NATProbing = st.Phase == PhaseQualified && (m.rs[rsCone].active || m.rs[rsSecondary].active)
	return st
}

// Start begins: it asks for the server names to be resolved.
func (m *Machine) Start(now time.Time, a *Actions) {
	m.resolve(a)
}

func (m *Machine) resolve(a *Actions) {
	m.st.Phase = PhaseResolving
	m.rediscover = false
	a.Resolve = true
	a.Changed = true
}

// Rediscover starts over after a network change (SIGHUP, which Debian's
// if-up hook and the service manager's reload send): the server names are
// resolved again and the primary address solicited at once, rather than at
// the next refresh or after the back-off. A qualified client keeps its
// address meanwhile: the answer confirms it, or brings the new one (and a
// new NAT probe) if the mapping or the server changed.
func (m *Machine) Rediscover(now time.Time, a *Actions) {
	switch m.st.Phase {
	case PhaseResolving:
		// A resolution is on its way.
	case PhaseQualified:
		m.rediscover = true
		a.Resolve = true
	default: // qualifying, or offline: start over without the back-off
		m.failures = 0
		for k := range m.rs {
			m.rs[k].active = false
		}
		m.resolve(a)
	}
}

// Resolved takes the result of resolving the server names: the primary
// and secondary IPv4 addresses, or why they could not be had.
func (m *Machine) Resolved(now time.Time, primary, secondary netip.Addr, err error, a *Actions) {
	if m.st.Phase == PhaseQualified && m.rediscover {
		m.rediscover = false
		m.requalify(now, primary, secondary, err, a)
		return
	}
	if m.st.Phase != PhaseResolving {
		return
	}
	if err == nil {
		primary, secondary, err = checkServers(primary, secondary)
	}
	if err != nil {
		// A warning, not an error: the client retries (goOffline says
		// when), and at boot the resolver is often not reachable yet.
		m.log.Warn("cannot use the Teredo server", "err", err)
		m.goOffline(now, a)
		return
	}
	if primary != m.st.Server && m.st.Server.IsValid() {
		m.log.Info("Teredo server address changed", "old", m.st.Server, "new", primary)
	}
	m.st.Server, m.st.Server2 = primary, secondary
	m.st.Phase = PhaseQualifying
	a.Changed = true
	m.solicit(now, rsPrimary, true, a)
}

// requalify takes a resolution asked for by Rediscover while qualified:
// it adopts the new server addresses, if any, and solicits the primary.
func (m *Machine) requalify(now time.Time, primary, secondary netip.Addr, err error, a *Actions) {
	if err == nil {
		primary, secondary, err = checkServers(primary, secondary)
	}
	switch {
	case err != nil:
		m.log.Warn("cannot resolve the Teredo server again; keeping its address", "server", m.st.Server, "err", err)
	case primary != m.st.Server || secondary != m.st.Server2:
		m.log.Info("Teredo server address changed", "old", m.st.Server, "new", primary)
		m.st.Server, m.st.Server2 = primary, secondary
		a.Changed = true
	}
	m.solicit(now, rsPrimary, true, a)
}

// checkServers returns the server addresses unmapped, or why they cannot
// be used.
func checkServers(primary, secondary netip.Addr) (netip.Addr, netip.Addr, error) {
	primary, secondary = primary.Unmap(), secondary.Unmap()
	switch {
	case !primary.Is4() || !proto.IsGlobalUnicastIPv4(primary):
		return primary, secondary, fmt.Errorf("server %v: not a global unicast IPv4 address", primary)
	case !secondary.Is4() || !proto.IsGlobalUnicastIPv4(secondary):
		return primary, secondary, fmt.Errorf("secondary server %v: not a global unicast IPv4 address", secondary)
	case primary == secondary:
		return primary, secondary, fmt.Errorf("secondary server %v: same as the primary", secondary)
	}
	return primary, secondary, nil
}

// solicit sends a fresh RS of the given kind; first starts a new round of
// tries.
func (m *Machine) solicit(now time.Time, k rsKind, first bool, a *Actions) {
	s := &m.rs[k]
	if first {
		s.tries = 0
		s.timeout, s.maxTries = m.cfg.Timing.Timeout, m.cfg.Timing.Retries
		if k == rsPrimary && m.st.Phase == PhaseQualifying && m.failures > 0 {
			s.timeout, s.maxTries = m.cfg.Timing.RetryTimeout, 1
		}
	}
	var b [2 + proto.NonceLen]byte
	m.cfg.Rand(b[:proto.NonceLen])
	s.active, s.nonce, s.sent = true, [proto.NonceLen]byte(b[:proto.NonceLen]), now
	s.tries++
	to := netip.AddrPortFrom(m.st.Server, proto.Port)
	if k == rsSecondary {
		to = netip.AddrPortFrom(m.st.Server2, proto.Port)
		m.toSecondary, m.secondaryWas = now, m.st.Server2
	}
	a.Send = append(a.Send, Datagram{To: to, Payload: proto.AppendRouterSolicitation(nil, s.nonce, k == rsCone)})
	m.log.Debug("router solicitation sent", "kind", kindNames[k], "to", to, "try", s.tries)
}

// SetRefresh changes the refresh interval (a reloaded configuration); it
// takes effect from the next refresh.
func (m *Machine) SetRefresh(d time.Duration) {
	if d > 0 {
		m.cfg.Timing.Refresh = d
	}
}

// Heard records a packet from the primary server other than an RA (a
// forwarded bubble, a connectivity-test reply): proof that the mapping
// still works, which postpones the next refresh (RFC 4380 §5.2.5).
func (m *Machine) Heard(t time.Time) {
	if t.After(m.lastContact) {
		m.lastContact = t
	}
}

// Suspect asks for an early refresh: the data path has sent packets that
// nothing answered, which is how a NAT that changed our mapping looks.
// Early refreshes are at least SuspectGap apart.
func (m *Machine) Suspect(now time.Time, a *Actions) {
	if m.st.Phase != PhaseQualified || m.rs[rsPrimary].active {
		return
	}
	if !m.lastSuspect.IsZero() && now.Sub(m.lastSuspect) < m.cfg.Timing.SuspectGap {
		return
	}
	m.lastSuspect = now
	m.log.Debug("traffic unanswered: refreshing early")
	m.solicit(now, rsPrimary, true, a)
}

// Deadline is when Tick must be called next; the zero time means only
// Resolved can move the machine on.
func (m *Machine) Deadline() time.Time {
	var d time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	switch m.st.Phase {
	case PhaseResolving:
		return time.Time{}
	case PhaseOffline:
		return m.retryAt
	}
	for k := range m.rs {
		s := &m.rs[k]
		if !s.active {
			continue
		}
		if rsKind(k) == rsCone {
			earliest(s.until)
		} else {
			earliest(s.sent.Add(s.timeout))
		}
	}
	if m.st.Phase == PhaseQualified && !m.rs[rsPrimary].active {
		earliest(m.refreshAt())
	}
	return d
}

func (m *Machine) refreshAt() time.Time {
	return m.lastContact.Add(time.Duration(m.refreshShare * float64(m.cfg.Timing.Refresh)))
}

// Tick runs the timers that are due at now.
func (m *Machine) Tick(now time.Time, a *Actions) {
	switch m.st.Phase {
	case PhaseResolving:
		return
	case PhaseOffline:
		if !now.Before(m.retryAt) {
			m.log.Info("retrying the Teredo server")
			m.resolve(a)
		}
		return
	}
	if s := &m.rs[rsPrimary]; s.active && !now.Before(s.sent.Add(s.timeout)) {
		if s.tries < s.maxTries {
			m.solicit(now, rsPrimary, false, a)
		} else {
			s.active = false
			if m.st.Phase == PhaseQualified {
				m.log.Warn("Lost Teredo connectivity: no reply from Teredo server",
					"server", m.st.Server, "tries", s.tries)
			} else {
				m.log.Warn("No reply from Teredo server", "server", m.st.Server, "tries", s.tries)
			}
			m.st.Unreachable = m.st.Server
			m.goOffline(now, a)
			return
		}
	}
	if s := &m.rs[rsCone]; s.active && !now.Before(s.until) {
		// The cone probe was filtered: not a cone NAT. Compare mappings
		// through the secondary address.
		s.active = false
		m.solicit(now, rsSecondary, true, a)
	}
	if s := &m.rs[rsSecondary]; s.active && !now.Before(s.sent.Add(s.timeout)) {
		if s.tries < s.maxTries {
			m.solicit(now, rsSecondary, false, a)
		} else {
			s.active = false
			a.Changed = true // NATProbing ends
			m.log.Warn("secondary Teredo server address does not answer: NAT behaviour unknown",
				"server2", m.st.Server2)
		}
	}
	if m.st.Phase == PhaseQualified && !m.rs[rsPrimary].active && !now.Before(m.refreshAt()) {
		m.solicit(now, rsPrimary, true, a)
	}
}

// goOffline takes the address down (if any) and schedules the next try.
func (m *Machine) goOffline(now time.Time, a *Actions) {
	for k := range m.rs {
		m.rs[k].active = false
	}
	m.rediscover = false
	m.st.Phase = PhaseOffline
	m.st.Addr = netip.Addr{}
	m.st.Since = time.Time{}
	a.Changed = true
	d := m.cfg.Timing.BackoffMin << min(m.failures, 16)
	if d > m.cfg.Timing.BackoffMax || d <= 0 {
		d = m.cfg.Timing.BackoffMax
	}
	d = time.Duration(float64(d) * m.share()) // 75-100 %: spread clients that lost the same server
	m.failures++
	m.retryAt = now.Add(d)
	m.log.Info("Teredo server retry scheduled", "in", d.Round(time.Millisecond))
}

// share returns a random number in [0.75, 1].
func (m *Machine) share() float64 {
	var b [2]byte
	m.cfg.Rand(b[:])
	return 0.75 + 0.25*float64(binary.BigEndian.Uint16(b[:]))/65535
}

// Receive takes a maintenance datagram (from a server address and port 3544,
// starting with an authentication header) and returns why it was not
// accepted, or nil. Invalid advertisements are ignored, as RFC 4380 §5.2.1
// asks.
func (m *Machine) Receive(now time.Time, b []byte, from netip.AddrPort, a *Actions) error {
	if from.Port() != proto.Port || (from.Addr().Unmap() != m.st.Server && from.Addr().Unmap() != m.st.Server2) {
		return ErrNotServer
	}
	var e proto.Envelope
	if err := proto.ParseEnvelope(b, &e); err != nil {
		return fmt.Errorf("%w: %w", ErrBadAdvert, err)
	}
	if !e.HasAuth {
		return ErrNotSolicited
	}
	k := numKinds
	for i := range m.rs {
		if m.rs[i].active && m.rs[i].nonce == e.Auth.Nonce {
			k = rsKind(i)
		}
	}
	if k == numKinds {
		return ErrNotSolicited
	}
	x := Expect{From: m.st.Server, Cone: k == rsCone, Server: m.st.Server, Prefix: m.cfg.Prefix}
	if k != rsPrimary {
		x.From = m.st.Server2
	}
	ra, err := x.Check(&e, from)
	if errors.Is(err, ErrAuthFailed) {
		m.log.Warn("Authentication with server failed", "server", from)
	}
	if err != nil {
		return err
	}
	mtu := int(ra.MTU)
	if mtu == 0 {
		mtu = proto.MinMTU
	}
	if m.cfg.MaxMTU > 0 && mtu > m.cfg.MaxMTU {
		// Datagrams for a larger MTU would not fit our buffers and be
		// dropped as truncated: advertise less to the host instead.
		if m.st.MTU != m.cfg.MaxMTU {
			m.log.Warn("advertised MTU larger than the client carries", "advertised", mtu, "using", m.cfg.MaxMTU)
		}
		mtu = m.cfg.MaxMTU
	}
	s := &m.rs[k]
	s.active = false
	switch k {
	case rsPrimary:
		m.st.RTT = now.Sub(s.sent)
		m.advertised(now, e.Origin, mtu, a)
	case rsCone:
		m.natFound(NATCone, a)
	case rsSecondary:
		if e.Origin == m.st.Mapping {
			n := NATRestricted
			if m.coneSeen || m.coneSkipped && m.st.NAT == NATCone {
				n = NATCone // filtering not probed again: keep what we knew
			}
			m.natFound(n, a)
		} else {
			m.log.Info("mapping differs towards the secondary server address", "primary", m.st.Mapping, "secondary", e.Origin)
			m.natFound(m.symmetricKind(e.Origin), a)
		}
	}
	return nil
}

// advertised applies a valid RA from the primary address.
func (m *Machine) advertised(now time.Time, mapping netip.AddrPort, mtu int, a *Actions) {
	m.lastContact, m.st.Refreshed = now, now
	m.st.Unreachable = netip.Addr{}
	m.refreshShare = m.share()
	m.failures = 0
	old := m.st
	newMapping := mapping != m.flagsFor || m.st.Server != m.flagsSrv || !m.hasFlags
	if newMapping {
		var r [2]byte
		m.cfg.Rand(r[:])
		// RFC 5991 §4: random bits make the address hard to guess; the
		// cone bit stays 0 as RFC 5991 deprecates it (and Miredo never
		// sets it). They change only with the mapping, so a refresh
		// keeps the address.
		m.flags = proto.RandomFlags(r, false)
		m.flagsFor, m.flagsSrv, m.hasFlags = mapping, m.st.Server, true
	}
	addr := proto.Address{Prefix: m.cfg.Prefix, Server: m.st.Server, Flags: m.flags,
		MappedPort: mapping.Port(), MappedAddr: mapping.Addr()}.Addr()
	m.st.Phase, m.st.Addr, m.st.MTU, m.st.Mapping = PhaseQualified, addr, mtu, mapping
	if old.Phase == PhaseQualified && old.Addr == addr && old.MTU == mtu {
		m.log.Debug("Teredo mapping refreshed", "rtt", m.st.RTT)
		return
	}
	a.Changed = true
	m.st.Since = now
	switch {
	case old.Phase != PhaseQualified:
		m.log.Info("New Teredo address/MTU", "address", addr, "mtu", mtu, "mapping", mapping, "rtt", m.st.RTT)
	case old.Addr != addr:
		m.log.Info("Teredo mapping changed: new address", "address", addr, "old", old.Addr, "mapping", mapping, "old_mapping", old.Mapping)
	default:
		m.log.Info("Teredo MTU changed", "mtu", mtu, "old", old.MTU)
	}
	if newMapping || !m.natProbed {
		m.probeNAT(now, a)
	}
}

// probeNAT starts the NAT probe for a new mapping: a cone solicitation now,
// and the secondary address when the cone answer has had its chance.
func (m *Machine) probeNAT(now time.Time, a *Actions) {
	m.natProbed = true
	a.Changed = true // NATProbing starts
	m.rs[rsSecondary].active = false
	m.coneSkipped = m.secondaryWas == m.st.Server2 && !m.toSecondary.IsZero() &&
		now.Sub(m.toSecondary) < m.cfg.Timing.ConeQuiet
	// A UPnP mapping lets anyone in whatever the NAT does to what we send,
	// and the cone answer coming in through it would make the secondary
	// address's flow leave from the same port: only the mappings are
	// compared (RFC 6081 §5.3.3).
	m.coneSeen = m.cfg.UPnP.IsValid() && m.cfg.UPnP == m.st.Mapping
	if m.coneSkipped || m.coneSeen {
		m.log.Debug("secondary address contacted recently: comparing mappings only")
		m.rs[rsCone].active = false
		m.solicit(now, rsSecondary, true, a)
		return
	}
	// The cone RA leaves the server with the primary's answer; give it
	// twice the primary's round trip and a little more.
	wait := min(max(2*m.st.RTT+250*time.Millisecond, 250*time.Millisecond), m.cfg.Timing.Timeout)
	m.solicit(now, rsCone, true, a)
	m.rs[rsCone].until = now.Add(wait)
}

// symmetricKind tells the symmetric NATs apart by what the two server
// addresses saw (primary: m.st.Mapping, secondary: second).
func (m *Machine) symmetricKind(second netip.AddrPort) NATType {
	primary := m.st.Mapping
	step := int(second.Port()) - int(primary.Port())
	switch {
	case m.cfg.UPnP.IsValid() && m.cfg.UPnP == primary:
		return NATSymmetricUPnP
	case m.cfg.LocalPort != 0 && primary.Port() == m.cfg.LocalPort:
		return NATSymmetricPortPreserving
	case second.Addr() == primary.Addr() && step > 0 && step <= maxSequentialStep:
		return NATSymmetricSequential
	}
	return NATSymmetric
}

func (m *Machine) natFound(n NATType, a *Actions) {
	m.rs[rsCone].active, m.rs[rsSecondary].active = false, false
	a.Changed = true // NATProbing ends, and NAT may change
	m.st.NAT = n
	m.log.Info("NAT behaviour", "nat", n.String(), "mapping", m.st.Mapping)
}

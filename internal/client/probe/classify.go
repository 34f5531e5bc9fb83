// SPDX-License-Identifier: MIT

package probe

import (
	"fmt"
	"net/netip"
)

// NAT types Classify reports.
const (
	NATNone       = "none"       // the server saw our own address and port
	NATCone       = "cone"       // one mapping, anyone may reach it
	NATRestricted = "restricted" // one mapping, only those we sent to may reach it
	NATSymmetric  = "symmetric"  // a mapping per destination
	NATUnknown    = "unknown"    // the secondary address did not answer
)

// RFC 4787 behaviours, as far as a server pair shows them.
const (
	Independent = "endpoint-independent"
	Dependent   = "endpoint-dependent"
	// AddressOrPort is the filtering of a restricted NAT: the probe
	// cannot tell address-dependent from address-and-port-dependent.
	AddressOrPort = "address-dependent or address-and-port-dependent"
	Unknown       = "unknown"
)

// NAT is the behaviour of whatever sits between us and the server, with the
// evidence for it.
type NAT struct {
	Type string `json:"type"`
	// Mapping is RFC 4787 §4.1's mapping behaviour, Filtering §5's.
	Mapping   string `json:"mapping"`
	Filtering string `json:"filtering"`
	// PortPreserving says the mapping towards the primary kept our local
	// port; nil when the primary's answer is all we have.
	PortPreserving *bool `json:"port_preserving,omitempty"`
	// Evidence says what each exchange showed; CannotTell what the
	// exchanges cannot show.
	Evidence   []string `json:"evidence"`
	CannotTell []string `json:"cannot_tell,omitempty"`
}

// restrictedKinds is why a server pair cannot tell the two restricted
// kinds apart.
const restrictedKinds = "address-restricted from port-restricted: that takes a packet from an address we sent to " +
	"but from another port, and a Teredo server answers from port 3544 only"

// Classify reads the NAT behaviour from the three exchanges of a probe
// whose socket is local: primary must have been answered.
func Classify(local netip.AddrPort, primary, cone, secondary Exchange) *NAT {
	n := &NAT{Type: NATUnknown, Mapping: Unknown, Filtering: Unknown}
	m1 := primary.Mapping
	say := func(format string, args ...any) { n.Evidence = append(n.Evidence, fmt.Sprintf(format, args...)) }
	translated := m1 != local
	if translated {
		say("our socket %v was seen by the primary address as %v", local, m1)
	} else {
		say("the primary address saw our own address and port, %v: no translation", local)
	}
	pp := m1.Port() == local.Port()
	n.PortPreserving = &pp
	if translated {
		if pp {
			say("the mapping towards the primary kept our local port %d", local.Port())
		} else {
			say("the mapping towards the primary took port %d for our local port %d", m1.Port(), local.Port())
		}
	}

	switch {
	case cone.Answered:
		n.Filtering = Independent
		say("the cone solicitation to the primary was answered from %v, which we had not sent to: anyone may reach the mapping", cone.From)
	case cone.Sent > 0:
		n.Filtering = AddressOrPort
		say("the cone solicitation's answer from the secondary address, which we had not sent to, did not arrive (%d sent, %v waited): unsolicited packets are filtered",
			cone.Sent, cone.Waited)
	}

	m2 := secondary.Mapping
	switch {
	case secondary.Answered && m2 == m1:
		n.Mapping = Independent
		say("the secondary address saw the same mapping, %v: one mapping for all destinations", m2)
	case secondary.Answered:
		n.Mapping = Dependent
		say("the secondary address saw another mapping, %v: a new mapping per destination", m2)
		if m2.Addr() != m1.Addr() {
			say("the two mappings have different public addresses (%v, %v): the NAT pools addresses", m1.Addr(), m2.Addr())
		}
		if m2.Addr() == m1.Addr() && m2.Port() == m1.Port()+1 {
			say("the second mapping took the next port, %d: the NAT may allocate ports in sequence (RFC 6081 §2)", m2.Port())
		}
	case secondary.Sent > 0:
		say("the secondary address did not answer (%d sent, %v waited): the mapping behaviour is unknown", secondary.Sent, secondary.Waited)
	}

	switch {
	case !translated && n.Filtering == Independent:
		n.Type = NATNone
	case !translated:
		n.Type = NATNone
		say("no NAT, but a firewall filters unsolicited packets: peers must send bubbles first, as to a restricted NAT")
	case n.Mapping == Dependent:
		n.Type = NATSymmetric
		n.CannotTell = append(n.CannotTell, "the filtering of a symmetric NAT beyond the cone answer: whatever it is, "+
			"a peer can only reach the mapping it was sent to")
	case n.Filtering == Independent:
		n.Type = NATCone
		if n.Mapping == Unknown {
			n.CannotTell = append(n.CannotTell, "whether the mapping is the same for all destinations: the secondary address did not answer")
		}
	case n.Mapping == Independent:
		n.Type = NATRestricted
		n.CannotTell = append(n.CannotTell, restrictedKinds)
	}
	return n
}

// SPDX-License-Identifier: MIT

// Package natmatrix is the client-to-client connectivity table of RFC 6081
// (its Figure 1) as the lab measures it: which NAT pairings our Teredo
// client connects through, which Miredo 1.2.6's does, and what the RFC
// says of each. Its e2e test runs every pairing on real packets in the
// namespace lab (internal/lab), several labs at once; this file holds what
// the RFC expects and prints the tables.
//
// An attempt is directed: an initiator pings a responder that has not
// heard from it, both clients freshly started, so the outcome is the
// RFC's "source NAT" to "destination NAT". A table cell (client 1's NAT
// row, client 2's NAT column) shows both directions: 1 -> 2, then 2 -> 1.
package natmatrix

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// Modes are the NAT behaviours of the table, in its order.
func Modes() []lab.NATMode {
	return []lab.NATMode{lab.FullCone, lab.AddressRestricted, lab.PortRestricted, lab.Symmetric,
		lab.SymmetricPortPreserving, lab.SymmetricSequential, lab.SymmetricUPnP}
}

var labels = map[lab.NATMode]string{
	lab.FullCone: "cone", lab.AddressRestricted: "address-restricted", lab.PortRestricted: "port-restricted",
	lab.Symmetric: "symmetric (random)", lab.SymmetricPortPreserving: "symmetric (port-preserving)",
	lab.SymmetricSequential: "symmetric (sequential)", lab.SymmetricUPnP: "symmetric + UPnP",
}

// Label names a mode in the tables.
func Label(m lab.NATMode) string { return labels[m] }

// ReportedNAT is the NAT type our client must report behind each mode.
func ReportedNAT(m lab.NATMode) string {
	switch m {
	case lab.FullCone:
		return "cone"
	case lab.AddressRestricted, lab.PortRestricted:
		return "restricted"
	case lab.SymmetricPortPreserving:
		return "symmetric (port-preserving)"
	case lab.SymmetricSequential:
		return "symmetric (sequential)"
	case lab.SymmetricUPnP:
		return "symmetric (UPnP mapped)"
	}
	return "symmetric"
}

// Why RFC 6081 Figure 1 says a pairing cannot work.
const (
	whyRandom = "random symmetric ports can be neither predicted nor mapped, and the other NAT filters by port (RFC 6081 §3.2, Figure 1)"
	whyUPnPPR = "the UPnP mapping makes only the port in the address reachable; the symmetric side sends from random ports, which the other NAT filters (§3.2, Figure 1)"
	whyUPnPSy = "the UPnP side sends from random ports; the other symmetric NAT admits only the port it aimed at (Figure 1)"
	whySeq    = "the sequential side predicts its port for the port in the peer's address, not for the peer's random port (§3.4, Figure 1)"
)

// Figure1 says whether a client behind from reaches one behind to when
// both implement RFC 6081's extensions (Figure 1, with "UPnP Port-symm."
// for symmetric + UPnP), and if not, why.
func Figure1(from, to lab.NATMode) (bool, string) {
	sym := func(m lab.NATMode) bool { return m.EndpointDependent() }
	open := func(m lab.NATMode) bool { return m == lab.FullCone || m == lab.AddressRestricted }
	pair := func(a, b lab.NATMode) bool { return from == a && to == b || from == b && to == a }
	switch {
	case open(from) || open(to):
		// Cone and address-restricted NATs reach everything and are
		// reached from everything (Symmetric NAT Support).
		return true, ""
	case !sym(from) && !sym(to):
		return true, "" // RFC 4380 alone
	case from == lab.Symmetric || to == lab.Symmetric:
		return false, whyRandom
	case pair(lab.SymmetricUPnP, lab.PortRestricted):
		return false, whyUPnPPR
	case from == lab.SymmetricUPnP && to == lab.SymmetricUPnP:
		return true, ""
	case from == lab.SymmetricUPnP || to == lab.SymmetricUPnP:
		return false, whyUPnPSy
	case from == lab.SymmetricSequential && (to == lab.SymmetricPortPreserving || to == lab.SymmetricSequential):
		return false, whySeq
	}
	return true, "" // port-preserving and sequential with port-restricted, port-preserving
}

// whyMiredoHairpin is why two clients behind one NAT fail without the
// Hairpinning extension.
const whyMiredoHairpin = "Miredo has no Hairpinning extension, and the NAT does not hairpin (RFC 4380 §8.3)"

// Impl is whose client runs.
type Impl uint8

// Implementations.
const (
	Ours Impl = iota
	Miredo
)

func (i Impl) String() string { return [...]string{"ours", "Miredo"}[i] }

// Attempt is one directed measurement: From's client behind FromNAT pings
// To's behind ToNAT (behind the same NAT box when SameNAT: then the two
// modes are equal).
type Attempt struct {
	From, To       Impl
	FromNAT, ToNAT lab.NATMode
	SameNAT        bool
}

func (a Attempt) String() string {
	if a.SameNAT {
		return fmt.Sprintf("%v->%v both behind %v", a.From, a.To, a.FromNAT)
	}
	return fmt.Sprintf("%v(%v)->%v(%v)", a.From, a.FromNAT, a.To, a.ToNAT)
}

// Outcome is what an attempt measured.
type Outcome struct {
	OK   bool
	Took time.Duration // to the first answered ping, or the window
	Note string        // why it failed, when the harness knows
}

// Pairs are the client pairs of the tables: ours with ours, ours with
// Miredo (both ways), Miredo with Miredo (the baseline).
var Pairs = [][2]Impl{{Ours, Ours}, {Ours, Miredo}, {Miredo, Ours}, {Miredo, Miredo}}

// Attempts lists every measurement the three tables need: each ordered
// pair of modes for each client pair, and each mode for two clients behind
// one NAT.
func Attempts() []Attempt {
	var out []Attempt
	for _, p := range Pairs {
		for _, a := range Modes() {
			for _, b := range Modes() {
				out = append(out, Attempt{From: p[0], To: p[1], FromNAT: a, ToNAT: b})
			}
			out = append(out, Attempt{From: p[0], To: p[1], FromNAT: a, ToNAT: a, SameNAT: true})
		}
	}
	return out
}

// Results are the outcomes, by attempt.
type Results map[Attempt]Outcome

// directions returns the two attempts of a cell of client c1 x client c2:
// row (client 1's NAT), column (client 2's); for the same-NAT row, col is
// ignored.
func directions(c1, c2 Impl, row, col lab.NATMode, same bool) (there, back Attempt) {
	if same {
		col = row
	}
	return Attempt{c1, c2, row, col, same}, Attempt{c2, c1, col, row, same}
}

// mark is a cell's entry for one direction.
func (r Results) mark(a Attempt) string {
	o, ok := r[a]
	switch {
	case !ok:
		return "?"
	case o.OK && r.expected(a):
		return "✓"
	case o.OK:
		return "✓!" // works though the RFC or the baseline says it cannot
	case r.expected(a):
		return "FAIL"
	}
	return "✗"
}

// expected says whether an attempt must connect: with our client on both
// sides, where Figure 1 (or the Hairpinning extension) says it works; with
// Miredo on either side, where two Miredo clients connect (nothing that
// worked before may break).
func (r Results) expected(a Attempt) bool {
	if a.From == Ours && a.To == Ours {
		if a.SameNAT {
			return true
		}
		ok, _ := Figure1(a.FromNAT, a.ToNAT)
		return ok
	}
	if a.From == Miredo && a.To == Miredo {
		return r[a].OK // the baseline is what it is
	}
	return r[Attempt{Miredo, Miredo, a.FromNAT, a.ToNAT, a.SameNAT}].OK
}

// MustConnect says whether two of our clients must connect in a, whatever
// Miredo does: where Figure 1 or the Hairpinning extension says so.
func MustConnect(a Attempt) bool {
	return a.From == Ours && a.To == Ours && Results(nil).expected(a)
}

// why explains an expected failure.
func (r Results) why(a Attempt) string {
	switch {
	case a.From == Ours && a.To == Ours && !a.SameNAT:
		_, w := Figure1(a.FromNAT, a.ToNAT)
		return w
	case a.SameNAT:
		return whyMiredoHairpin
	}
	return "two Miredo clients fail here too"
}

// Table prints the table of client c1 (rows) and c2 (columns) in Markdown:
// each cell is 1 -> 2 / 2 -> 1, ✓ connected, ✗ failed as expected, FAIL
// failed where it must connect, ✓! connected where nothing says it can;
// expected failures and surprises are explained below the table.
func (r Results) Table(c1, c2 Impl) string {
	var b strings.Builder
	modes := Modes()
	fmt.Fprintf(&b, "| client 1 (%v) \\ client 2 (%v) |", c1, c2)
	for _, m := range modes {
		fmt.Fprintf(&b, " %s |", Label(m))
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---|", len(modes)))
	b.WriteString("\n")
	var notes, beyond []string
	note := func(a Attempt) {
		o, ok := r[a]
		switch {
		case ok && !o.OK && !r.expected(a):
			if n := fmt.Sprintf("%v: %s", a, r.why(a)); !slices.Contains(notes, n) {
				notes = append(notes, n)
			}
		case ok && o.OK && !r.expected(a):
			if n := fmt.Sprintf("%v: %s", a, beyondWhy(a)); !slices.Contains(beyond, n) {
				beyond = append(beyond, n)
			}
		}
	}
	cell := func(row, col lab.NATMode, same bool) {
		there, back := directions(c1, c2, row, col, same)
		fmt.Fprintf(&b, " %s / %s |", r.mark(there), r.mark(back))
		note(there)
		note(back)
	}
	for _, row := range modes {
		fmt.Fprintf(&b, "| %s |", Label(row))
		for _, col := range modes {
			cell(row, col, false)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "| same NAT (client 1 + client 3) |")
	for _, m := range modes {
		cell(m, m, true)
	}
	b.WriteString("\n")
	if len(notes) > 0 {
		b.WriteString("\nExpected failures (✗):\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if len(beyond) > 0 {
		b.WriteString("\nConnected where nothing said it would (✓!):\n")
		for _, n := range beyond {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// beyondWhy explains an attempt that connected where neither Figure 1 nor
// the baseline says it can.
func beyondWhy(a Attempt) string {
	if !a.SameNAT && (a.ToNAT == lab.SymmetricUPnP && a.To == Ours || a.FromNAT == lab.SymmetricUPnP && a.From == Ours) {
		return "our client behind the UPnP mapping sends no bubble to open its NAT (the mapping lets anyone in) and answers " +
			"a peer along the flow the peer's packet came in on, which its NAT sends from the mapped port, where the peer's " +
			"NAT expects it (Figure 1 assumes answers from random ports, as RFC 6081 §5.3.4.2's rule would send them)"
	}
	return "not predicted"
}

// Problems lists the attempts that failed where they must connect.
func (r Results) Problems() []string {
	var out []string
	for _, a := range Attempts() {
		o, ok := r[a]
		if !ok {
			out = append(out, fmt.Sprintf("%v: not measured", a))
			continue
		}
		if !o.OK && r.expected(a) {
			what := "RFC 6081 says it connects"
			if a.From == Miredo || a.To == Miredo {
				what = "two Miredo clients connect here"
			}
			out = append(out, fmt.Sprintf("%v: failed (%s) but %s", a, o.Note, what))
		}
	}
	return out
}

// Gains counts where two of our clients connect and two Miredo clients do
// not: directed attempts, and table cells (of ours x ours against Miredo
// x Miredo) where ours connects both ways and Miredo fails at least one.
func (r Results) Gains() (directions, cells int) {
	for _, a := range Attempts() {
		if a.From == Ours && a.To == Ours && r[a].OK && !r[Attempt{Miredo, Miredo, a.FromNAT, a.ToNAT, a.SameNAT}].OK {
			directions++
		}
	}
	both := func(c Impl, row, col lab.NATMode, same bool) bool {
		t, b := directionsOf(c, row, col, same)
		return r[t].OK && r[b].OK
	}
	for _, row := range Modes() {
		for _, col := range Modes() {
			if both(Ours, row, col, false) && !both(Miredo, row, col, false) {
				cells++
			}
		}
		if both(Ours, row, row, true) && !both(Miredo, row, row, true) {
			cells++
		}
	}
	return directions, cells
}

func directionsOf(c Impl, row, col lab.NATMode, same bool) (Attempt, Attempt) {
	return directions(c, c, row, col, same)
}

// Slowest is the longest time an attempt took to connect.
func (r Results) Slowest() (Attempt, time.Duration) {
	var worst Attempt
	var took time.Duration
	for a, o := range r {
		if o.OK && o.Took > took {
			worst, took = a, o.Took
		}
	}
	return worst, took
}

// SPDX-License-Identifier: MIT

package natmatrix

import (
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// TestFigure1 holds Figure1 to RFC 6081's Figure 1, transcribed here row
// by row (source NAT) for the lab's seven behaviours, in Modes' order:
// cone, address-restricted, port-restricted, symmetric, port-preserving,
// sequential, UPnP ("UPnP Port symm." column and row).
func TestFigure1(t *testing.T) {
	const Y, N = true, false
	fig := [7][7]bool{
		{Y, Y, Y, Y, Y, Y, Y}, // cone
		{Y, Y, Y, Y, Y, Y, Y}, // address-restricted
		{Y, Y, Y, N, Y, Y, N}, // port-restricted
		{Y, Y, N, N, N, N, N}, // port-symmetric
		{Y, Y, Y, N, Y, Y, N}, // port-preserving port-symmetric
		{Y, Y, Y, N, N, N, N}, // sequential port-symmetric
		{Y, Y, N, N, N, N, Y}, // UPnP port-symmetric
	}
	modes := Modes()
	for i, from := range modes {
		for j, to := range modes {
			ok, why := Figure1(from, to)
			if ok != fig[i][j] {
				t.Errorf("%v -> %v: %v, Figure 1 says %v", from, to, ok, fig[i][j])
			}
			if ok == (why != "") {
				t.Errorf("%v -> %v: %v with reason %q", from, to, ok, why)
			}
		}
	}
}

// TestTables: cells, marks, notes, problems and gains from a few results.
func TestTables(t *testing.T) {
	r := Results{}
	for _, a := range Attempts() {
		ok, _ := Figure1(a.FromNAT, a.ToNAT)
		if a.From != Ours || a.To != Ours {
			// Miredo connects only between cone-like NATs.
			ok = !a.FromNAT.EndpointDependent() && !a.ToNAT.EndpointDependent() && !a.SameNAT
		}
		r[a] = Outcome{OK: ok || a.SameNAT && a.From == Ours && a.To == Ours, Took: time.Second}
	}
	if p := r.Problems(); len(p) != 0 {
		t.Errorf("problems in consistent results: %v", p)
	}
	// Figure 1 has 32 of 49 pairings, Miredo (here) the 9 cone-like
	// ones; with the same-NAT row, 23 + 7 directions. Cells: 31 connect
	// both ways (port-preserving to sequential only one way), less 9,
	// plus 7.
	if dirs, cells := r.Gains(); dirs != 23+7 || cells != 22+7 {
		t.Errorf("gains %d directions, %d cells", dirs, cells)
	}
	tab := r.Table(Ours, Ours)
	for _, want := range []string{"| cone | ✓ / ✓ |", "| symmetric (random) | ✓ / ✓ | ✓ / ✓ | ✗ / ✗ |", "same NAT", whyRandom} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	// A regression against the baseline is a problem; so is a failure the
	// RFC rules out not.
	r[Attempt{Ours, Miredo, lab.FullCone, lab.PortRestricted, false}] = Outcome{Note: "lost"}
	r[Attempt{Ours, Ours, lab.Symmetric, lab.FullCone, false}] = Outcome{Note: "lost"}
	p := r.Problems()
	if len(p) != 2 || !strings.Contains(p[0], "RFC 6081 says") || !strings.Contains(p[1], "two Miredo clients connect") {
		t.Errorf("problems %q", p)
	}
	if tab := r.Table(Ours, Miredo); !strings.Contains(tab, "| cone | ✓ / ✓ | ✓ / ✓ | FAIL / ✓ |") {
		t.Errorf("regression not marked:\n%s", tab)
	}
}

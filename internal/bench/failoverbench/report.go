// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/miredo-go/miredo/internal/failover"
)

// measure is one run of a case.
type measure struct {
	// route is from the event to the router's route change (0: none).
	route time.Duration
	// down and up are the pings each way (nil: not measured).
	down, up *failover.Series
	// tcpDown and tcpUp are the longest TCP stalls (-1: not measured).
	tcpDown, tcpUp time.Duration
	note           string
}

func newMeasure() measure { return measure{tcpDown: -1, tcpUp: -1} }

// row is a case's runs.
type row struct {
	name string
	runs []measure
}

// printTable writes the results as a Markdown table, with medians and
// ranges over the runs.
func printTable(w io.Writer, opt options, rows []row, took time.Duration) {
	fmt.Fprintf(w, "\nFailover of a Teredo fleet (2 relays behind BIRD/ECMP, 2 server pairs behind dnsmasq), %d round(s), pings every %v, measured %v after each event; %v in all\n\n",
		opt.rounds, opt.interval, opt.after, took.Round(time.Second))
	fmt.Fprintln(w, "| case | route change | native→client: longest gap (lost) | client→native: longest gap (lost) | TCP stall native→client | TCP stall client→native | notes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		var route, dg, ug, tcpd, tcpu []time.Duration
		var dl, ul []int
		var notes []string
		for _, m := range r.runs {
			if m.route > 0 {
				route = append(route, m.route)
			}
			if m.down != nil {
				g, _ := m.down.Gap()
				dg, dl = append(dg, g), append(dl, m.down.Lost())
			}
			if m.up != nil {
				g, _ := m.up.Gap()
				ug, ul = append(ug, g), append(ul, m.up.Lost())
			}
			if m.tcpDown >= 0 {
				tcpd = append(tcpd, m.tcpDown)
			}
			if m.tcpUp >= 0 {
				tcpu = append(tcpu, m.tcpUp)
			}
			if m.note != "" && !slices.Contains(notes, m.note) {
				notes = append(notes, m.note)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.name, durs(route), gaps(dg, dl), gaps(ug, ul), durs(tcpd), durs(tcpu), strings.Join(notes, "; "))
	}
}

// durs is the median of ds with its range, or "–".
func durs(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s) == 1 {
		return fmtDur(med)
	}
	return fmt.Sprintf("%s [%s–%s]", fmtDur(med), fmtDur(s[0]), fmtDur(s[len(s)-1]))
}

// gaps is durs with the median of the pings lost.
func gaps(ds []time.Duration, lost []int) string {
	if len(ds) == 0 {
		return "–"
	}
	l := slices.Clone(lost)
	slices.Sort(l)
	return fmt.Sprintf("%s (%d)", durs(ds), l[len(l)/2])
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
}

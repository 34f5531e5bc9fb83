// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/miredo-go/miredo/internal/bench/proccpu"
)

// The relay's goal against Miredo (issue 6, "Speed"): at least this many
// times the throughput at most this fraction of the relay CPU per GB.
const (
	goalThroughput = 2.0
	goalRelayCPU   = 0.5
)

// Figures of one sample, the quantities the table shows.

func mbps(s Sample) float64 { return float64(s.Result.Bytes) * 8 / 1e6 / s.Result.Seconds }

func pps(s Sample) float64 { return float64(s.Result.Packets) / s.Result.Seconds }

// lossPct is the share of UDP datagrams sent that never arrived.
func lossPct(s Sample) float64 {
	if n := s.Result.Packets + s.Result.Lost; n > 0 {
		return 100 * float64(s.Result.Lost) / float64(n)
	}
	return 0
}

func retransmits(s Sample) float64 { return float64(s.Result.Retransmits) }

// cpuPerGB is CPU seconds per 10⁹ bytes delivered.
func cpuPerGB(t proccpu.Times, s Sample) float64 {
	if s.Result.Bytes == 0 {
		return 0
	}
	return t.Total().Seconds() * 1e9 / float64(s.Result.Bytes)
}

func relayPerGB(s Sample) float64  { return cpuPerGB(s.Relay, s) }
func clientPerGB(s Sample) float64 { return cpuPerGB(s.Client, s) }

// quietBusy is where busyStarts counts a run as started on a busy
// machine: half a core of other work, a quarter of this one.
const quietBusy = 0.5

func busyStarts(samples []Sample) int {
	n := 0
	for _, s := range samples {
		if s.BusyBefore > quietBusy {
			n++
		}
	}
	return n
}

// otherCores is the machine's busy time that is neither a daemon's nor
// iperf3's: kernel threads, and other work on the machine.
func otherCores(s Sample) float64 {
	return max(0, cores(s.Machine.Busy-s.Relay.Total()-s.Client.Total()-s.Iperf.Total(), s.Wall))
}

func cores(d, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return d.Seconds() / wall.Seconds()
}

// spread is the median, minimum and maximum of some values.
type spread struct{ med, lo, hi float64 }

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{med, s[0], s[len(s)-1]}
}

// format prints the median, and the range when there is more than one
// value.
func (s spread) format(n int, f func(float64) string) string {
	if n < 2 {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.lo), f(s.hi))
}

func fixed(prec int) func(float64) string {
	return func(v float64) string { return fmt.Sprintf("%.*f", prec, v) }
}

func kilo(v float64) string    { return fmt.Sprintf("%.1fk", v/1000) }
func times(v float64) string   { return fmt.Sprintf("%.2f×", v) }
func percent(v float64) string { return fmt.Sprintf("%.1f%%", v) }

// figure is one column: how to compute and how to print it.
type figure struct {
	of  func(Sample) float64
	fmt func(float64) string
}

func (f figure) cell(ss []Sample) string {
	var v []float64
	for _, s := range ss {
		v = append(v, f.of(s))
	}
	return spreadOf(v).format(len(v), f.fmt)
}

// cell key: a pairing's samples of one traffic kind, in round order.
type cellKey struct{ pairing, traffic string }

func group(samples []Sample) map[cellKey][]Sample {
	m := map[cellKey][]Sample{}
	for _, s := range samples {
		k := cellKey{s.Pairing, s.Traffic}
		m[k] = append(m[k], s)
	}
	return m
}

// writeTable prints, for each traffic kind, one row per pairing (medians
// over rounds, with ranges when there are several), then the ratios to the
// Miredo pairing, round by round.
func writeTable(out io.Writer, pairs []pairing, tests []traffic, samples []Sample) {
	groups := group(samples)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, t := range tests {
		loss := figure{lossPct, func(v float64) string { return fmt.Sprintf("%.2f%%", v) }}
		lossHead := "loss"
		if !t.udp {
			loss = figure{retransmits, fixed(0)}
			lossHead = "retransmits"
		}
		fmt.Fprintf(w, "\n%s\n", t.describe())
		fmt.Fprintf(w, "pairing\tMbit/s\tpackets/s\t%s\trelay cores\trelay CPU s/GB\tclient cores\tclient CPU s/GB\tiperf3 cores\tother cores\n", lossHead)
		for _, p := range pairs {
			ss := groups[cellKey{p.key, t.name}]
			if len(ss) == 0 {
				continue
			}
			relayCores := figure{func(s Sample) float64 { return cores(s.Relay.Total(), s.Wall) }, fixed(2)}
			clientCores := figure{func(s Sample) float64 { return cores(s.Client.Total(), s.Wall) }, fixed(2)}
			daemon := []string{relayCores.cell(ss), figure{relayPerGB, fixed(2)}.cell(ss),
				clientCores.cell(ss), figure{clientPerGB, fixed(2)}.cell(ss)}
			if p.vxlan {
				daemon = []string{"kernel", "–", "kernel", "–"}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.title,
				figure{mbps, fixed(0)}.cell(ss), figure{pps, kilo}.cell(ss), loss.cell(ss),
				daemon[0], daemon[1], daemon[2], daemon[3],
				figure{func(s Sample) float64 { return cores(s.Iperf.Total(), s.Wall) }, fixed(2)}.cell(ss),
				figure{otherCores, fixed(2)}.cell(ss))
		}
		writeRatios(w, pairs, t, groups)
	}
	w.Flush()
	fmt.Fprintln(out, "\nMbit/s and packets/s are the receiver's (TCP packets/s: full segments at the 1280-byte MTU).")
	fmt.Fprintln(out, "CPU is each daemon's process tree (utime+stime, all threads, forked workers and helpers included) over the run;")
	fmt.Fprintln(out, "other cores is the rest of the machine's busy time: kernel threads (softirq, NAPI) and anything else running;")
	fmt.Fprintln(out, "much more than the VXLAN row's means the run shared the machine with other work.")
	if busy := busyStarts(samples); busy > 0 {
		fmt.Fprintf(out, "%d of %d runs started on a busy machine (more than %.1f cores of other work after waiting): their figures are low and their range wide.\n",
			busy, len(samples), quietBusy)
	}
	if slices.ContainsFunc(samples, func(s Sample) bool { return s.Round > 0 }) {
		fmt.Fprintln(out, "Figures are medians over rounds (min–max); ratios pair each round's runs.")
	}
}

// writeRatios prints each pairing against the reference pairing for one
// traffic kind, and how far each is from the VXLAN ceiling.
func writeRatios(w io.Writer, pairs []pairing, t traffic, groups map[cellKey][]Sample) {
	ref := groups[cellKey{refKey, t.name}]
	ceiling := groups[cellKey{"vxlan", t.name}]
	if len(ref) == 0 && len(ceiling) == 0 {
		return
	}
	fmt.Fprintf(w, "  vs Miredo+Miredo\tMbit/s\trelay CPU/GB\tclient CPU/GB\tof VXLAN Mbit/s\tgoal (≥ %.0f× Mbit/s at ≤ %.1f× relay CPU/GB)\n", goalThroughput, goalRelayCPU)
	for _, p := range pairs {
		ss := groups[cellKey{p.key, t.name}]
		if len(ss) == 0 || p.vxlan {
			continue
		}
		rate := ratioCell(ss, ref, mbps)
		relay := ratioCell(ss, ref, relayPerGB)
		client := ratioCell(ss, ref, clientPerGB)
		of := "–"
		if len(ceiling) > 0 {
			v := ratios(ss, ceiling, mbps)
			for i := range v {
				v[i] *= 100
			}
			of = spreadOf(v).format(len(v), percent)
		}
		goal := ""
		if p.key == "ours" && len(ref) > 0 {
			goal = verdict(t, spreadOf(ratios(ss, ref, mbps)).med, spreadOf(ratios(ss, ref, relayPerGB)).med)
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", p.title, rate, relay, client, of, goal)
	}
}

// verdict judges the relay goal; paced runs cannot go faster than their
// pace, so only their CPU counts.
func verdict(t traffic, rate, relayCPU float64) string {
	cpuOK := relayCPU > 0 && relayCPU <= goalRelayCPU
	if t.udp && t.rate > 0 {
		if cpuOK {
			return "CPU met (paced)"
		}
		return "CPU NOT met (paced)"
	}
	if cpuOK && rate >= goalThroughput {
		return "met"
	}
	return "NOT met"
}

func ratioCell(ss, ref []Sample, f func(Sample) float64) string {
	v := ratios(ss, ref, f)
	if len(v) == 0 {
		return "–"
	}
	return spreadOf(v).format(len(v), times)
}

// ratios pairs the samples of one pairing with the reference's round by
// round (runs of one round share the machine's conditions) and returns
// f(s)/f(ref) for each round where both are measured and f(ref) > 0.
func ratios(ss, ref []Sample, f func(Sample) float64) []float64 {
	byRound := map[int]Sample{}
	for _, r := range ref {
		byRound[r.Round] = r
	}
	var v []float64
	for _, s := range ss {
		r, ok := byRound[s.Round]
		if !ok {
			continue
		}
		if d := f(r); d > 0 {
			v = append(v, f(s)/d)
		}
	}
	return v
}

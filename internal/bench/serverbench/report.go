// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// targetRatio is the capacity goal: answered solicitations per server
// CPU-second, ours over Miredo's (issue 4, "Speed").
const targetRatio = 3.0

// Figures of one sample, the quantities the table shows.

func rate(s Sample) float64 { return per(float64(s.Load.Answered), s.Wall) }

func lossPct(s Sample) float64 {
	settled := s.Load.Answered + s.Load.Lost
	if settled == 0 {
		return 0
	}
	return 100 * float64(s.Load.Lost) / float64(settled)
}

// perCPUSecond is answered solicitations per second of server CPU.
func perCPUSecond(s Sample) float64 { return per(float64(s.Load.Answered), s.ServerCPU.Total()) }

// cpuPerMillion is server CPU seconds per million answered solicitations.
func cpuPerMillion(s Sample) float64 { return perMillion(s.ServerCPU.Total(), s) }

// userPerMillion is the user-space part of cpuPerMillion.
func userPerMillion(s Sample) float64 { return perMillion(s.ServerCPU.User, s) }

func perMillion(d time.Duration, s Sample) float64 {
	if s.Load.Answered == 0 {
		return 0
	}
	return d.Seconds() * 1e6 / float64(s.Load.Answered)
}

func cores(d, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return d.Seconds() / wall.Seconds()
}

func per(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
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

// format prints the median, and the range when there is more than one value.
func (s spread) format(n int, f func(float64) string) string {
	if n < 2 {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.lo), f(s.hi))
}

func kilo(v float64) string { return fmt.Sprintf("%.0fk", v/1000) }
func fixed(prec int) func(float64) string {
	return func(v float64) string { return fmt.Sprintf("%.*f", prec, v) }
}

// byTarget groups samples by target name, in round order.
func byTarget(samples []Sample) map[string][]Sample {
	m := map[string][]Sample{}
	for _, s := range samples {
		m[s.Target] = append(m[s.Target], s)
	}
	return m
}

func collect(ss []Sample, f func(Sample) float64) []float64 {
	var v []float64
	for _, s := range ss {
		v = append(v, f(s))
	}
	return v
}

// writeTable prints one row per target (medians over rounds, with ranges
// when there are several) and the ratios of ours to Miredo.
func writeTable(out io.Writer, sel []target, samples []Sample) {
	groups := byTarget(samples)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nserver\tanswered RS/s\tloss %\tserver cores\tCPU s / 1M RS\tof which user\tRS per CPU-s\tgenerator cores\trest of machine\tmean RTT")
	for _, t := range sel {
		ss := groups[t.name]
		n := len(ss)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.name,
			spreadOf(collect(ss, rate)).format(n, kilo),
			spreadOf(collect(ss, lossPct)).format(n, fixed(2)),
			spreadOf(collect(ss, func(s Sample) float64 { return cores(s.ServerCPU.Total(), s.Wall) })).format(n, fixed(2)),
			spreadOf(collect(ss, cpuPerMillion)).format(n, fixed(2)),
			spreadOf(collect(ss, userPerMillion)).format(n, fixed(2)),
			spreadOf(collect(ss, perCPUSecond)).format(n, kilo),
			spreadOf(collect(ss, func(s Sample) float64 { return cores(s.GenCPU.Total(), s.Wall) })).format(n, fixed(2)),
			spreadOf(collect(ss, func(s Sample) float64 {
				return cores(s.Machine.Busy-s.ServerCPU.Total()-s.GenCPU.Total(), s.Wall)
			})).format(n, fixed(2)),
			spreadOf(collect(ss, func(s Sample) float64 { return float64(s.Load.MeanRTT().Microseconds()) / 1000 })).format(n, func(v float64) string { return fmt.Sprintf("%.2fms", v) }),
		)
	}
	w.Flush()

	var ref *target
	for i := range sel {
		if sel[i].miredo {
			ref = &sel[i]
		}
	}
	if ref == nil {
		return
	}
	fmt.Fprintf(w, "\nratio to %s\tanswered RS/s\tRS per CPU-s\tgoal (≥ %.0f× per CPU-s)\n", ref.name, targetRatio)
	for _, t := range sel {
		if t.miredo {
			continue
		}
		rates, effs := ratios(groups[t.name], groups[ref.name])
		n := len(rates)
		eff := spreadOf(effs)
		verdict := "met"
		if eff.med < targetRatio {
			verdict = "NOT met"
		}
		times := func(v float64) string { return fmt.Sprintf("%.2f×", v) }
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.name, spreadOf(rates).format(n, times), eff.format(n, times), verdict)
	}
	w.Flush()
	if len(groups[ref.name]) > 1 {
		fmt.Fprintln(out, "\nFigures are medians over rounds (min–max); ratios pair each round's runs.")
	}
}

// ratios pairs the samples of one target with the reference's, round by
// round (runs of one round share the machine's conditions), and returns the
// answered-rate and per-CPU-second ratios.
func ratios(ss, ref []Sample) (rates, effs []float64) {
	for i := range min(len(ss), len(ref)) {
		if r := rate(ref[i]); r > 0 {
			rates = append(rates, rate(ss[i])/r)
		}
		if e := perCPUSecond(ref[i]); e > 0 {
			effs = append(effs, perCPUSecond(ss[i])/e)
		}
	}
	return rates, effs
}

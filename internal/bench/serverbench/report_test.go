// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/bench/loadgen"
	"github.com/miredo-go/miredo/internal/bench/proccpu"
)

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want spread
	}{
		{nil, spread{}},
		{[]float64{3}, spread{3, 3, 3, 1}},
		{[]float64{5, 1, 3}, spread{3, 1, 5, 3}},
		{[]float64{4, 1, 2, 3}, spread{2.5, 1, 4, 4}},
	}
	for _, tt := range tests {
		if got := spreadOf(tt.in); got != tt.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSelectTargets(t *testing.T) {
	tests := []struct {
		only string
		b    bool
		want []string
		bad  bool
	}{
		{"", false, []string{"ours", "ours --xdp", "miredo-server 1.2.6"}, false},
		{"", true, []string{"ours", "ours-b", "ours --xdp", "miredo-server 1.2.6"}, false},
		{"miredo-server1.2.6, ours", false, []string{"miredo-server 1.2.6", "ours"}, false},
		{"ours--no-batch,ours--xdp", false, []string{"ours --no-batch", "ours --xdp"}, false},
		{"ours-b", false, nil, true},
		{"theirs", false, nil, true},
	}
	for _, tt := range tests {
		got, err := selectTargets(tt.only, tt.b)
		if (err != nil) != tt.bad {
			t.Errorf("selectTargets(%q): err %v, want error %v", tt.only, err, tt.bad)
			continue
		}
		var names []string
		for _, g := range got {
			names = append(names, g.name)
		}
		if strings.Join(names, "|") != strings.Join(tt.want, "|") {
			t.Errorf("selectTargets(%q) = %q, want %q", tt.only, names, tt.want)
		}
	}
}

func TestWirePasses(t *testing.T) {
	loads := []load{{0}, {25}}
	for _, tt := range []struct {
		wire string
		want string
	}{{"sender", "false [0 25]"}, {"thread", "true [0 25]"}, {"both", "false [0 25] true [0]"}} {
		p, err := wirePasses(tt.wire, loads)
		var got []string
		for _, x := range p {
			var pcts []int
			for _, l := range x.loads {
				pcts = append(pcts, l.pct)
			}
			got = append(got, fmt.Sprint(x.thread, pcts))
		}
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("wirePasses(%q) = %v, %v; want %s", tt.wire, got, err, tt.want)
		}
	}
	if _, err := wirePasses("copper", loads); err == nil {
		t.Error("wirePasses accepted copper")
	}
}

func TestParseShapesAndLoads(t *testing.T) {
	sh, err := parseShapes(defaultShapes)
	if err != nil || len(sh) != 7 || sh[0] != (shape{1, 1}) || sh[6] != (shape{256, 64}) {
		t.Errorf("parseShapes(%q) = %v, %v", defaultShapes, sh, err)
	}
	if sh, err := parseShapes("64×1"); err != nil || sh[0] != (shape{64, 1}) {
		t.Errorf("parseShapes(64×1) = %v, %v", sh, err)
	}
	for _, bad := range []string{"", "64", "0x1", "4x8", "64x65", "ax1"} {
		if _, err := parseShapes(bad); err == nil {
			t.Errorf("parseShapes(%q) accepted", bad)
		}
	}
	ld, err := parseLoads("25%, 50")
	if err != nil || len(ld) != 3 || ld[0].pct != 0 || ld[1].pct != 25 || ld[2].pct != 50 {
		t.Errorf("parseLoads = %v, %v: want saturation first, then 25 and 50", ld, err)
	}
	for _, bad := range []string{"0", "101", "half"} {
		if _, err := parseLoads(bad); err == nil {
			t.Errorf("parseLoads(%q) accepted", bad)
		}
	}
	for _, tt := range []struct{ sockets, set, want int }{{1, 0, 64}, {16, 0, 32}, {64, 0, 8}, {256, 0, 2}, {4096, 0, 1}, {64, 3, 3}} {
		if got := window(shape{tt.sockets, 1}, tt.set); got != tt.want {
			t.Errorf("window(%d sockets, -window %d) = %d, want %d", tt.sockets, tt.set, got, tt.want)
		}
	}
}

// sample makes a 1-second sample of target in round, shape 64×1, with
// answered solicitations and server CPU time.
func sample(target string, round int, ld load, answered uint64, cpu time.Duration) Sample {
	return Sample{Target: target, Round: round, Shape: shape{64, 1}, Load: ld, Wall: time.Second,
		Counters:  loadgen.Counters{Sent: answered + answered/100, Answered: answered, Lost: answered / 100, RTT: time.Duration(answered) * time.Millisecond},
		ServerCPU: proccpu.Times{User: cpu / 10, System: cpu - cpu/10},
		GenCPU:    proccpu.Times{System: 500 * time.Millisecond},
		Machine:   proccpu.Machine{Busy: 2 * time.Second, Total: 2 * time.Second}}
}

func TestFigures(t *testing.T) {
	s := sample("x", 0, load{}, 200_000, 800*time.Millisecond)
	for _, tt := range []struct {
		name      string
		got, want float64
	}{
		{"rate", answeredRate(s), 200_000},
		{"share", answeredShare(s), 200_000.0 / 202_000},
		{"loss", lossPct(s), 100 * 2000.0 / 202_000},
		{"per CPU-second", perCPUSecond(s), 250_000},
		{"CPU per answer", cpuPerAnswer(s), 4},
		{"user per answer", userPerAnswer(s), 0.4},
		{"machine per answer", machinePerAnswer(s), 10},
	} {
		if d := tt.got - tt.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	var zero Sample
	if answeredRate(zero) != 0 || perCPUSecond(zero) != 0 || cpuPerAnswer(zero) != 0 || lossPct(zero) != 0 || answeredShare(zero) != 0 {
		t.Error("an empty sample must give zeros, not NaN")
	}
}

func TestWriteReport(t *testing.T) {
	ours, ref := targets[0], targets[len(targets)-1]
	sel := []target{ours, ref}
	sat, paced := load{}, load{25}
	samples := []Sample{
		sample(ours.name, 0, sat, 300_000, 600*time.Millisecond), sample(ref.name, 0, sat, 100_000, 800*time.Millisecond),
		sample(ours.name, 1, sat, 320_000, 640*time.Millisecond), sample(ref.name, 1, sat, 110_000, 880*time.Millisecond),
		// At a paced load both answer the same share: 1.00×, even though
		// the intervals caught different rates.
		sample(ours.name, 0, paced, 25_000, 100*time.Millisecond), sample(ref.name, 0, paced, 26_000, 200*time.Millisecond),
		sample(ours.name, 1, paced, 25_000, 100*time.Millisecond), sample(ref.name, 1, paced, 26_000, 200*time.Millisecond),
	}
	var b strings.Builder
	writeReport(&b, sel, ref, []shape{{64, 1}}, []load{sat, paced}, samples)
	out := b.String()
	for _, want := range []string{
		"ours vs miredo-server 1.2.6: medians of 2 rounds",
		"| 64×1 | sat | 310k (300k–320k) | 105k (100k–110k) | 2.95× (2.91×–3.00×) | 500k (500k–500k) | 125k (125k–125k) | 4.00× (4.00×–4.00×) |",
		"| 64×1 | 25% | 25k (25k–25k) | 26k (26k–26k) | 1.00× (1.00×–1.00×) | 250k (250k–250k) | 130k (130k–130k) | 1.92× (1.92×–1.92×) |",
		"ours: no cell below 1.0×",
		"Details", "mean RTT",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	writeReport(&b, sel, ref, []shape{{64, 1}}, []load{sat}, []Sample{
		sample(ours.name, 0, sat, 90_000, time.Second), sample(ref.name, 0, sat, 100_000, time.Second)})
	if out := b.String(); !strings.Contains(out, "ours: 2 cells below 1.0×: 64×1 sat RS/s 0.90×; 64×1 sat RS per CPU-s 0.90×") || strings.Contains(out, "90k (") {
		t.Errorf("one round behind: want both cells reported and no ranges:\n%s", out)
	}
	xdp := targets[1]
	b.Reset()
	writeReport(&b, []target{xdp, ref}, ref, []shape{{64, 1}}, []load{sat}, []Sample{
		sample(xdp.name, 0, sat, 100_000, 300*time.Millisecond), sample(ref.name, 0, sat, 100_000, time.Second)})
	if out := b.String(); !strings.Contains(out, "goal ≥ 3× met") {
		t.Errorf("XDP at 3.33× per CPU-second: want the goal met:\n%s", out)
	}
}

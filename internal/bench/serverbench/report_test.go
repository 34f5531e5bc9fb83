// SPDX-License-Identifier: MIT

package main

import (
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
		{[]float64{3}, spread{3, 3, 3}},
		{[]float64{5, 1, 3}, spread{3, 1, 5}},
		{[]float64{4, 1, 2, 3}, spread{2.5, 1, 4}},
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
		want []string
		bad  bool
	}{
		{"", []string{"ours", "ours --no-batch", "ours --sockets 1", "miredo-server 1.2.6"}, false},
		{"miredo-server1.2.6, ours", []string{"miredo-server 1.2.6", "ours"}, false},
		{"ours--no-batch", []string{"ours --no-batch"}, false},
		{"theirs", nil, true},
	}
	for _, tt := range tests {
		got, err := selectTargets(tt.only)
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

// sample makes a 1-second sample with answered solicitations and server
// CPU time.
func sample(target string, answered uint64, cpu time.Duration) Sample {
	return Sample{Target: target, Wall: time.Second,
		Load:      loadgen.Counters{Sent: answered + 10, Answered: answered, Lost: answered / 100, RTT: time.Duration(answered) * time.Millisecond},
		ServerCPU: proccpu.Times{User: cpu / 10, System: cpu - cpu/10},
		GenCPU:    proccpu.Times{System: 500 * time.Millisecond},
		Machine:   proccpu.Machine{Busy: 2 * time.Second, Total: 2 * time.Second}}
}

func TestFigures(t *testing.T) {
	s := sample("x", 200_000, 800*time.Millisecond)
	for _, tt := range []struct {
		name      string
		got, want float64
	}{
		{"rate", rate(s), 200_000},
		{"loss", lossPct(s), 100 * 2000.0 / 202_000},
		{"per CPU-second", perCPUSecond(s), 250_000},
		{"CPU per million", cpuPerMillion(s), 4},
		{"user per million", userPerMillion(s), 0.4},
	} {
		if d := tt.got - tt.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	var zero Sample
	if rate(zero) != 0 || perCPUSecond(zero) != 0 || cpuPerMillion(zero) != 0 || lossPct(zero) != 0 {
		t.Error("an empty sample must give zeros, not NaN")
	}
}

func TestWriteTable(t *testing.T) {
	sel := []target{targets[0], targets[3]}
	samples := []Sample{
		sample("ours", 300_000, 600*time.Millisecond), sample("miredo-server 1.2.6", 100_000, 800*time.Millisecond),
		sample("ours", 320_000, 640*time.Millisecond), sample("miredo-server 1.2.6", 110_000, 880*time.Millisecond),
	}
	var b strings.Builder
	writeTable(&b, sel, samples)
	out := b.String()
	for _, want := range []string{
		"answered RS/s", "310k (300k–320k)", // median of two rounds
		"500k (500k–500k)", "125k (125k–125k)", // per CPU-second
		"ratio to miredo-server 1.2.6",
		"2.95× (2.91×–3.00×)", // answered rate, round by round
		"4.00× (4.00×–4.00×)", // per CPU-second
		"met", "medians over rounds",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	writeTable(&b, sel, []Sample{sample("ours", 100_000, time.Second), sample("miredo-server 1.2.6", 100_000, time.Second)})
	if out := b.String(); !strings.Contains(out, "NOT met") || strings.Contains(out, "–") {
		t.Errorf("one round at parity: want NOT met and no ranges:\n%s", out)
	}
}

// SPDX-License-Identifier: MIT

package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

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
	if got := (spread{2, 1, 3}).format(3, fixed(1)); got != "2.0 (1.0–3.0)" {
		t.Errorf("format: %q", got)
	}
	if got := (spread{2, 2, 2}).format(1, fixed(1)); got != "2.0" {
		t.Errorf("format one: %q", got)
	}
}

// sample is one run of 1 s moving gb gigabytes, with relay and client CPU
// seconds.
func sample(pairing, traffic string, round int, gb, relay, client float64) Sample {
	return Sample{
		Pairing: pairing, Traffic: traffic, Round: round, Wall: time.Second,
		Result:  iperfResult{Bytes: int64(gb * 1e9), Seconds: 1, Packets: int64(gb * 1e9 / 1200)},
		Relay:   proccpu.Times{User: time.Duration(relay * float64(time.Second))},
		Client:  proccpu.Times{System: time.Duration(client * float64(time.Second))},
		Machine: proccpu.Machine{Busy: 2 * time.Second, Total: 2 * time.Second},
	}
}

func TestFigures(t *testing.T) {
	s := sample("ours", "tcp-up", 0, 0.1, 0.5, 0.25)
	for _, tt := range []struct {
		name      string
		got, want float64
	}{
		{"Mbit/s", mbps(s), 800},
		{"relay s/GB", relayPerGB(s), 5},
		{"client s/GB", clientPerGB(s), 2.5},
		{"relay cores", cores(s.Relay.Total(), s.Wall), 0.5},
		{"packets/s", pps(s), 83333},
		{"other cores", otherCores(s), 2 - 0.5 - 0.25},
	} {
		if d := tt.got - tt.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	busy := Sample{Wall: time.Second, Relay: proccpu.Times{User: time.Second}, Machine: proccpu.Machine{Busy: time.Second / 2}}
	if got := otherCores(busy); got != 0 {
		t.Errorf("other cores when the daemons' ticks exceed the machine's: %v, want 0", got)
	}
	lossy := Sample{Result: iperfResult{Packets: 90, Lost: 10, Seconds: 1}}
	if got := lossPct(lossy); got != 10 {
		t.Errorf("loss %v%%, want 10%%", got)
	}
	if got := cpuPerGB(proccpu.Times{User: time.Second}, Sample{}); got != 0 {
		t.Errorf("CPU per GB of nothing delivered: %v", got)
	}
}

func TestRatios(t *testing.T) {
	ref := []Sample{sample("miredo", "tcp-up", 0, 0.1, 1, 1), sample("miredo", "tcp-up", 1, 0.2, 1, 1)}
	// Round 1 of ours is missing (a failed run); round 2 has no reference.
	ours := []Sample{sample("ours", "tcp-up", 0, 0.3, 1, 1), sample("ours", "tcp-up", 2, 1, 1, 1)}
	got := ratios(ours, ref, mbps)
	if len(got) != 1 || got[0] < 2.999 || got[0] > 3.001 {
		t.Errorf("ratios = %v, want [3]", got)
	}
	if got := ratioCell(ours[1:], ref, mbps); got != "–" {
		t.Errorf("ratioCell without a matching round: %q", got)
	}
}

func TestVerdict(t *testing.T) {
	tcp := traffic{name: "tcp-up"}
	paced := traffic{name: "udp-up", udp: true, rate: 300e6}
	unpaced := traffic{name: "udpmax-up", udp: true}
	tests := []struct {
		t              traffic
		rate, relayCPU float64
		want           string
	}{
		{tcp, 2.1, 0.4, "met"},
		{tcp, 1.9, 0.4, "NOT met"},
		{tcp, 3, 0.6, "NOT met"},
		{tcp, 3, 0, "NOT met"}, // no CPU measured
		{unpaced, 2, 0.5, "met"},
		{paced, 1, 0.5, "CPU met (paced)"},
		{paced, 1, 0.7, "CPU NOT met (paced)"},
	}
	for _, tt := range tests {
		if got := verdict(tt.t, tt.rate, tt.relayCPU); got != tt.want {
			t.Errorf("verdict(%s, %v, %v) = %q, want %q", tt.t.name, tt.rate, tt.relayCPU, got, tt.want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	pairs := standardPairings(nil, nil)
	tests, err := selectTraffic("tcp-up,udp-down", 300e6)
	if err != nil {
		t.Fatal(err)
	}
	var samples []Sample
	for round := range 2 {
		for _, tr := range tests {
			samples = append(samples,
				sample("miredo", tr.name, round, 0.07, 0.8, 0.8),
				sample("ours", tr.name, round, 0.14, 0.4, 0.4),
				sample("vxlan", tr.name, round, 0.4, 0, 0))
		}
	}
	var out strings.Builder
	writeTable(&out, pairs, tests, samples)
	text := out.String()
	for _, want := range []string{
		"TCP, client → native",
		"UDP 1200-byte datagrams paced at 300 Mbit/s, native → client",
		"Miredo client + Miredo relay",
		"kernel VXLAN (ceiling)",
		"2.00× (2.00×–2.00×)", // ours' throughput against Miredo
		"0.25× (0.25×–0.25×)", // ours' relay CPU per GB: (0.4/0.14)/(0.8/0.07)
		"35.0% (35.0%–35.0%)", // ours against the ceiling
		"met",
		"CPU met (paced)",
		"medians over rounds",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "busy machine") {
		t.Errorf("busy-start note with every run quiet:\n%s", text)
	}
	samples[0].BusyBefore = 1.2
	out.Reset()
	writeTable(&out, pairs, tests, samples)
	if !strings.Contains(out.String(), "1 of 12 runs started on a busy machine") {
		t.Errorf("no busy-start note:\n%s", out.String())
	}
	// Pairings with no samples (our-relay, our-client) get no rows.
	if strings.Contains(text, "Miredo client + our relay") {
		t.Errorf("row for a pairing that did not run:\n%s", text)
	}
}

func TestTCPTableListens(t *testing.T) {
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 00000000000000000000000000000000:1451 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n" +
		"   1: 00000000000000000000000000000000:1452 00000000000000000000000000000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 2\n"
	tests := []struct {
		port uint16
		want bool
	}{
		{5201, true},  // 0x1451, listening
		{5202, false}, // 0x1452, established only
		{80, false},
	}
	for _, tt := range tests {
		if got := tcpTableListens(table, tt.port); got != tt.want {
			t.Errorf("port %d: %v, want %v", tt.port, got, tt.want)
		}
	}
}

func TestVXLANScripts(t *testing.T) {
	client, relay := vxlanScripts(netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("198.51.100.2"))
	for _, tt := range []struct {
		name, script string
		want         []string
	}{
		{"client", client, []string{
			"local 10.0.0.2 remote 192.0.2.20 dstport 4789 srcport 4789 4790 noudpcsum",
			"mtu 1280", "addr add 2001:0:ffff::2/64", "route add ::/0 via 2001:0:ffff::1"}},
		{"relay", relay, []string{
			"local 192.0.2.20 remote 198.51.100.2 dstport 4789 srcport 4789 4790 noudpcsum",
			"mtu 1280", "addr add 2001:0:ffff::1/64"}},
	} {
		for _, w := range tt.want {
			if !strings.Contains(tt.script, w) {
				t.Errorf("%s script lacks %q:\n%s", tt.name, w, tt.script)
			}
		}
	}
	if strings.Contains(relay, "route") {
		t.Errorf("relay script adds a route (the lab's router already sends 2001::/32 to it):\n%s", relay)
	}
}

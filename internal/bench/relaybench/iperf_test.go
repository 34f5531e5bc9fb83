// SPDX-License-Identifier: MIT

package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// Trimmed iperf3 3.12 -J outputs (the fields parseIperf reads).
const (
	udpReverseJSON = `{"start":{"test_start":{"protocol":"UDP","blksize":1200,"reverse":1}},
		"end":{"sum_sent":{"seconds":1.000181,"bytes":6246000,"lost_packets":0,"packets":5205},
		"sum_received":{"seconds":1.000032,"bytes":6246000,"lost_packets":0,"packets":5205}}}`
	udpLossyJSON = `{"start":{"test_start":{"protocol":"UDP","blksize":1200,"reverse":0}},
		"end":{"sum_sent":{"seconds":1.00004,"bytes":234972000,"packets":195810},
		"sum_received":{"seconds":1.000119,"bytes":201274800,"lost_packets":28081,"packets":195810}}}`
	tcpJSON = `{"start":{"tcp_mss":1208,"test_start":{"protocol":"TCP"}},
		"end":{"sum_sent":{"seconds":1.000322,"bytes":1105723392,"retransmits":10735},
		"sum_received":{"seconds":1.000427,"bytes":1105721488}}}`
	tcpDefaultMSSJSON = `{"start":{"tcp_mss_default":1000,"test_start":{"protocol":"TCP"}},
		"end":{"sum_sent":{"seconds":2,"bytes":20000},"sum_received":{"seconds":2,"bytes":10000}}}`
	errorJSON = `{"start":{},"end":{},"error":"unable to connect to server: Connection timed out"}`
)

func TestParseIperf(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want iperfResult
		err  string
	}{
		{"udp reverse", udpReverseJSON, iperfResult{Bytes: 6246000, Seconds: 1.000032, Packets: 5205, Sent: 5205}, ""},
		{"udp lossy", udpLossyJSON, iperfResult{Bytes: 201274800, Seconds: 1.000119, Packets: 195810 - 28081, Sent: 195810, Lost: 28081}, ""},
		{"tcp", tcpJSON, iperfResult{Bytes: 1105721488, Seconds: 1.000427, Packets: 1105721488 / 1208, Retransmits: 10735}, ""},
		{"tcp default mss", tcpDefaultMSSJSON, iperfResult{Bytes: 10000, Seconds: 2, Packets: 10}, ""},
		{"iperf error", errorJSON, iperfResult{}, "unable to connect"},
		{"not json", "iperf3: error", iperfResult{}, "iperf3 output"},
		{"no interval", `{"start":{"test_start":{"protocol":"TCP"}},"end":{}}`, iperfResult{}, "no receiver interval"},
		{"unknown protocol", `{"start":{"test_start":{"protocol":"SCTP"}},"end":{"sum_received":{"seconds":1}}}`, iperfResult{}, "protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIperf([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSelectTraffic(t *testing.T) {
	tests := []struct {
		list string
		want []traffic
		bad  bool
	}{
		{"tcp-up", []traffic{{name: "tcp-up"}}, false},
		{"tcp-down, udp-up,udpmax-down", []traffic{
			{name: "tcp-down", down: true},
			{name: "udp-up", udp: true, rate: 300e6},
			{name: "udpmax-down", udp: true, down: true},
		}, false},
		{"tcp-sideways", nil, true},
		{"tcp-up,tcp-up", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := selectTraffic(tt.list, 300e6)
		if (err != nil) != tt.bad {
			t.Errorf("selectTraffic(%q): err %v, want error %v", tt.list, err, tt.bad)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("selectTraffic(%q) = %+v, want %+v", tt.list, got, tt.want)
		}
	}
	all, err := selectTraffic(strings.Join(trafficNames, ","), 1e6)
	if err != nil || len(all) != len(trafficNames) {
		t.Errorf("every name: %v, %v", all, err)
	}
	if _, err := selectTraffic(defaultTests, 1e6); err != nil {
		t.Errorf("default tests: %v", err)
	}
}

func TestIperfArgs(t *testing.T) {
	dst := netip.MustParseAddr("2001:db8:2::2")
	base := "iperf3 -c 2001:db8:2::2 -6 -p 5201 -t 5 -J --connect-timeout 5000"
	tests := []struct {
		t    traffic
		want string
	}{
		{traffic{name: "tcp-up"}, base},
		{traffic{name: "tcp-down", down: true}, base + " -R"},
		{traffic{name: "udp-up", udp: true, rate: 300e6}, base + " -u -l 1200 -b 300000000"},
		{traffic{name: "udpmax-down", udp: true, down: true}, base + " -u -l 1200 -b 0 -R"},
	}
	for _, tt := range tests {
		if got := strings.Join(iperfArgs(tt.t, dst, 5*time.Second), " "); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.t.name, got, tt.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"300M", 300e6, false},
		{"1.5G", 1.5e9, false},
		{"800k", 800e3, false},
		{"64000", 64000, false},
		{"0", 0, true},
		{"-1M", 0, true},
		{"fast", 0, true},
		{"200G", 0, true},
	}
	for _, tt := range tests {
		got, err := parseRate(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseRate(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		t    traffic
		want string
	}{
		{traffic{}, "TCP, client → native"},
		{traffic{udp: true, rate: 300e6, down: true}, "UDP 1200-byte datagrams paced at 300 Mbit/s, native → client"},
		{traffic{udp: true, rate: 2e9}, "UDP 1200-byte datagrams paced at 2 Gbit/s, client → native"},
		{traffic{udp: true}, "UDP 1200-byte datagrams unpaced, client → native"},
	}
	for _, tt := range tests {
		if got := tt.t.describe(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.t, got, tt.want)
		}
	}
}

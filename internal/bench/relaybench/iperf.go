// SPDX-License-Identifier: MIT

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// iperfPort is where the native host's iperf3 server listens.
const iperfPort = 5201

// datagramSize is the UDP payload of every UDP test: an IPv6 packet of
// 1248 bytes, inside the 1280-byte tunnel MTU, as in the lab notes.
const datagramSize = 1200

// defaultMSS is TCP's segment size at the tunnel MTU (1280 - 40 IPv6 - 20
// TCP - 12 timestamp option), used when iperf3 does not report one.
const defaultMSS = 1208

// traffic is one kind of iperf3 run.
type traffic struct {
	name string
	udp  bool
	// rate is the UDP send rate in bit/s; 0 is as fast as the sender can.
	rate uint64
	// down runs from the native host to the Teredo client (iperf3 -R);
	// otherwise the client sends.
	down bool
}

// trafficNames lists every traffic kind -tests accepts, in table order.
var trafficNames = []string{"tcp-up", "tcp-down", "udp-up", "udp-down", "udpmax-up", "udpmax-down"}

const defaultTests = "tcp-up,tcp-down,udp-up,udp-down,udpmax-up"

// selectTraffic turns -tests into traffic kinds, with rate for the paced
// UDP ones.
func selectTraffic(list string, rate uint64) ([]traffic, error) {
	var out []traffic
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(trafficNames, name) {
			return nil, usagef("-tests: no test %q (have %s)", name, strings.Join(trafficNames, ","))
		}
		if slices.ContainsFunc(out, func(t traffic) bool { return t.name == name }) {
			return nil, usagef("-tests: %q twice", name)
		}
		kind, dir, _ := strings.Cut(name, "-")
		t := traffic{name: name, udp: kind != "tcp", down: dir == "down"}
		if kind == "udp" {
			t.rate = rate
		}
		out = append(out, t)
	}
	return out, nil
}

// describe says what the traffic is, for the table's heading.
func (t traffic) describe() string {
	dir := "client → native"
	if t.down {
		dir = "native → client"
	}
	switch {
	case !t.udp:
		return "TCP, " + dir
	case t.rate == 0:
		return fmt.Sprintf("UDP %d-byte datagrams unpaced, %s", datagramSize, dir)
	default:
		return fmt.Sprintf("UDP %d-byte datagrams paced at %s, %s", datagramSize, formatRate(t.rate), dir)
	}
}

// iperfArgs is the iperf3 client command line for t against server, for d
// (whole seconds: iperf3 takes no fraction).
func iperfArgs(t traffic, server netip.Addr, d time.Duration) []string {
	argv := []string{"iperf3", "-c", server.String(), "-6", "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(int(d / time.Second)), "-J", "--connect-timeout", "5000"}
	if t.udp {
		argv = append(argv, "-u", "-l", strconv.Itoa(datagramSize), "-b", strconv.FormatUint(t.rate, 10))
	}
	if t.down {
		argv = append(argv, "-R")
	}
	return argv
}

// iperfResult is what one iperf3 run delivered, seen by its receiver.
type iperfResult struct {
	Bytes   int64   // payload delivered
	Seconds float64 // the receiver's interval
	// Packets is datagrams delivered (UDP) or full segments that many
	// bytes make (TCP: iperf3 does not count segments).
	Packets int64
	// Sent and Lost are UDP datagrams; Retransmits TCP segments.
	Sent, Lost  int64
	Retransmits int64
}

// iperfJSON is the part of iperf3 -J output read here (iperf3 3.12).
type iperfJSON struct {
	Start struct {
		TCPMSS        int `json:"tcp_mss"`
		TCPMSSDefault int `json:"tcp_mss_default"`
		TestStart     struct {
			Protocol string `json:"protocol"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent     iperfSum `json:"sum_sent"`
		SumReceived iperfSum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

type iperfSum struct {
	Seconds     float64 `json:"seconds"`
	Bytes       int64   `json:"bytes"`
	Packets     int64   `json:"packets"`
	LostPackets int64   `json:"lost_packets"`
	Retransmits int64   `json:"retransmits"`
}

// parseIperf reads iperf3 -J output. In both directions sum_received is
// the receiver's view (iperf3 fetches the server's results); for UDP its
// packets are the highest sequence number seen and lost the gaps.
func parseIperf(out []byte) (iperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 output: %w", err)
	}
	if j.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	recv := j.End.SumReceived
	if recv.Seconds <= 0 {
		return iperfResult{}, errors.New("iperf3 output: no receiver interval")
	}
	r := iperfResult{Bytes: recv.Bytes, Seconds: recv.Seconds}
	switch j.Start.TestStart.Protocol {
	case "UDP":
		r.Sent = j.End.SumSent.Packets
		r.Lost = max(recv.LostPackets, 0)
		r.Packets = max(recv.Packets-r.Lost, 0)
	case "TCP":
		mss := j.Start.TCPMSSDefault
		if j.Start.TCPMSS > 0 {
			mss = j.Start.TCPMSS
		}
		if mss <= 0 {
			mss = defaultMSS
		}
		r.Packets = recv.Bytes / int64(mss)
		r.Retransmits = j.End.SumSent.Retransmits
	default:
		return iperfResult{}, fmt.Errorf("iperf3 output: protocol %q", j.Start.TestStart.Protocol)
	}
	return r, nil
}

// parseRate reads a bit rate such as "300M", "1.5G" or "800000".
func parseRate(s string) (uint64, error) {
	mult := 1.0
	num := s
	switch {
	case strings.HasSuffix(s, "G"):
		mult, num = 1e9, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, num = 1e6, s[:len(s)-1]
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, num = 1e3, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || v*mult > 100e9 {
		return 0, usagef("rate %q: want a positive bit rate such as 300M, at most 100G", s)
	}
	return uint64(v * mult), nil
}

func formatRate(bps uint64) string {
	switch {
	case bps >= 1e9 && bps%1e7 == 0:
		return strconv.FormatFloat(float64(bps)/1e9, 'f', -1, 64) + " Gbit/s"
	case bps >= 1e6:
		return strconv.FormatFloat(float64(bps)/1e6, 'f', -1, 64) + " Mbit/s"
	default:
		return strconv.FormatUint(bps, 10) + " bit/s"
	}
}

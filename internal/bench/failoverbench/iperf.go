// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// tcpRate paces iperf3, so that the machine's two cores are not what the
// measurement sees.
const tcpRate = "50M"

// tcpFloor is what counts as a stall: under a tenth of tcpRate.
const tcpFloor = 5e6

// tcpThrough runs TCP between the native host and client for length,
// calling event after lead, and returns the longest stall: the longest
// stretch of 100 ms intervals under a tenth of the paced rate, as the
// receiver saw it, and whether the flow was back by the end (a sender's intervals count what its socket took,
// which a large send buffer smooths). down sends from the native host
// (iperf3 -R).
func tcpThrough(ctx context.Context, l *lab.Lab, native, client *lab.Host, down bool, lead, length time.Duration, event func()) (stall time.Duration, back bool, err error) {
	srv, err := l.Start(ctx, native, fmt.Sprintf("iperf3-server-%d", time.Now().UnixNano()), "iperf3", "-s", "-1", "-J", "-i", "0.1", "-B", native.IPv6().String())
	if err != nil {
		return 0, false, err
	}
	defer srv.Stop()
	if err := waitTCPListen(ctx, native, 5201); err != nil {
		return 0, false, err
	}
	args := []string{"iperf3", "-c", native.IPv6().String(), "-t", fmt.Sprint(int(length.Seconds())), "-i", "0.1", "-J", "-b", tcpRate, "--connect-timeout", "5000"}
	if down {
		args = append(args, "-R")
	} else {
		args = append(args, "--get-server-output")
	}
	cmd := client.Command(ctx, args...)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return 0, false, err
	}
	select {
	case <-time.After(lead):
		event()
	case <-ctx.Done():
	}
	err = cmd.Wait()
	if dump := os.Getenv("FAILOVERBENCH_IPERF_DUMP"); dump != "" {
		_ = os.WriteFile(fmt.Sprintf("%s-%v.json", dump, down), []byte(out.String()), 0o644)
	}
	stall, back, perr := stallOf([]byte(out.String()), !down)
	if perr != nil {
		return 0, false, fmt.Errorf("iperf3: %v, %w", err, perr)
	}
	return stall, back, nil
}

// iperfReport is the part of iperf3's JSON report read here.
type iperfReport struct {
	Intervals []struct {
		Sum struct {
			Start, End    float64
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum"`
	} `json:"intervals"`
	Error string `json:"error"`
	// Server is the server's own report (--get-server-output).
	Server *iperfReport `json:"server_output_json"`
}

// stallOf reads iperf3's JSON report (the client's intervals, or with
// server set the server's): the longest stretch under a tenth of tcpRate,
// and whether the last interval is above it.
func stallOf(b []byte, server bool) (stall time.Duration, back bool, err error) {
	var rep iperfReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return 0, false, err
	}
	if server {
		if rep.Server == nil {
			return 0, false, fmt.Errorf("no server report (%s)", rep.Error)
		}
		rep = *rep.Server
	}
	if len(rep.Intervals) == 0 {
		return 0, false, fmt.Errorf("no intervals (%s)", rep.Error)
	}
	var longest, cur float64
	for i, iv := range rep.Intervals {
		if i == len(rep.Intervals)-1 && iv.Sum.End-iv.Sum.Start < 0.09 {
			break // the last, partial interval says little
		}
		if iv.Sum.BitsPerSecond < tcpFloor {
			cur += iv.Sum.End - iv.Sum.Start
			longest = max(longest, cur)
		} else {
			cur = 0
		}
	}
	return time.Duration(longest * float64(time.Second)), cur == 0, nil
}

// waitTCPListen polls until a TCP socket listens on port in h.
func waitTCPListen(ctx context.Context, h *lab.Host, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		out, _ := h.Run(ctx, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if strings.TrimSpace(string(out)) != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: nothing listens on TCP %d", h.Name, port)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

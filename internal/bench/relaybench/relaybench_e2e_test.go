// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
)

// TestRunShort runs the whole benchmark briefly — Miredo's pairing, ours
// and the VXLAN ceiling, one TCP and one paced UDP run each — and checks
// that traffic flowed, that the daemons' CPU was measured, that the table
// came out and that the lab is gone afterwards. It measures nothing worth
// reading: `make bench-relay` does.
func TestRunShort(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("needs iperf3 (apt-get install iperf3)")
	}
	opt := defaultOptions()
	opt.Duration, opt.Warmup = time.Second, 0
	opt.Tests = "tcp-up,udp-down"
	opt.UDPRate = 50e6
	opt.Only = "miredo,ours,vxlan"
	opt.Prefix = "rbtest"
	opt.QuietBelow = 0 // CI runs other packages' tests meanwhile
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var out strings.Builder
	samples, err := Run(ctx, opt, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 6 {
		t.Fatalf("%d samples, want 6", len(samples))
	}
	for _, s := range samples {
		if s.Result.Bytes == 0 || s.Result.Packets == 0 {
			t.Errorf("%s %s: nothing delivered: %+v", s.Pairing, s.Traffic, s.Result)
		}
		if s.Pairing != "vxlan" && (s.Relay.Total() <= 0 || s.Client.Total() <= 0) {
			t.Errorf("%s %s: relay CPU %v, client CPU %v: want both measured", s.Pairing, s.Traffic, s.Relay, s.Client)
		}
		if s.Wall < opt.Duration {
			t.Errorf("%s %s: measured %v, shorter than the run", s.Pairing, s.Traffic, s.Wall)
		}
	}
	if !strings.Contains(out.String(), "vs Miredo+Miredo") {
		t.Error("no ratios in the output")
	}
	left, _ := filepath.Glob("/run/netns/" + opt.Prefix + "-*")
	if len(left) > 0 {
		t.Errorf("lab namespaces left behind: %v", left)
		_ = lab.Remove(context.Background(), opt.Prefix)
	}
}

// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
)

// TestRunShort runs the whole benchmark briefly, ours (on sockets and on
// AF_XDP) against Miredo on both kinds of wire, and checks that all
// answered, that the CPU of each was measured, that the
// table came out and that the lab is gone afterwards. It measures nothing
// worth reading: `make bench-server` does.
func TestRunShort(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	opt := defaultOptions()
	opt.Duration, opt.Warmup, opt.Rounds = 500*time.Millisecond, 300*time.Millisecond, 1
	opt.Shapes, opt.Loads = "16x4", "50"
	opt.Prefix = "sbtest"
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var out strings.Builder
	samples, err := Run(ctx, opt, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	// Sender wire: saturated and paced; thread wire: saturated; three
	// servers each.
	if len(samples) != 9 {
		t.Fatalf("%d samples, want 9", len(samples))
	}
	for _, s := range samples {
		if s.Counters.Answered == 0 || s.Counters.Invalid != 0 || s.ServerCPU.Total() <= 0 || s.Wall < opt.Duration {
			t.Errorf("%s %v: %+v: want answers, no invalid ones, server CPU time and a full interval", s.Target, s.Load, s)
		}
		if s.Load.pct == 50 && s.Rate <= 0 {
			t.Errorf("%s: paced run without a rate", s.Target)
		}
	}
	for _, want := range []string{"| 16×4 | 50% |", "ours --xdp vs miredo-server 1.2.6", "-wire thread"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the report", want)
		}
	}
	left, _ := filepath.Glob("/run/netns/" + opt.Prefix + "-*")
	if len(left) > 0 {
		t.Errorf("lab namespaces left behind: %v", left)
		_ = lab.Remove(context.Background(), opt.Prefix)
	}
}

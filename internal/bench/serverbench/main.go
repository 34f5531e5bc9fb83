// SPDX-License-Identifier: MIT

// Command serverbench compares Teredo servers' capacity in a namespace lab:
// our miredo-server (as built, with --no-batch, and with --sockets 1, so that
// each optimisation shows) and Debian's miredo-server 1.2.6, one after the
// other in the same lab under the same load.
//
// For each server it runs the closed-loop load generator of package loadgen
// from the lab's pub host (many sockets on several IPv4 addresses) against
// the server host, and measures, over a fixed interval after a warm-up: the
// valid advertisements per second, the loss, and the CPU time of the
// server's process tree (Miredo forks a worker) per million answered
// solicitations. It prints one table with the ratios to Miredo and removes
// the lab. It needs root, ip(8), nft(8) and Debian's miredo-server.
//
// The load is closed-loop (see package loadgen for why), so the answered
// rate depends on how the two cores are shared between the generator, the
// server and whatever else runs ("rest of machine"); the CPU time per
// answer is the steadier figure. By default the kernel's delivery of each
// datagram across the lab's veths and bridge runs inside the sender's
// system call and is charged to it; -thread-wire moves it into kernel
// threads, so each process pays only for its own system calls.
//
//	go run ./internal/bench/serverbench -duration 5s -rounds 3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	opt := defaultOptions()
	flag.DurationVar(&opt.Duration, "duration", opt.Duration, "measured interval per server run")
	flag.DurationVar(&opt.Warmup, "warmup", opt.Warmup, "load before the measured interval starts")
	flag.IntVar(&opt.Rounds, "rounds", opt.Rounds, "times each server is measured (rounds alternate the servers; the table shows medians)")
	flag.IntVar(&opt.Sockets, "sockets", opt.Sockets, "client sockets of the load generator")
	flag.IntVar(&opt.Window, "window", opt.Window, "solicitations in flight per client socket")
	flag.IntVar(&opt.Sources, "sources", opt.Sources, "client IPv4 addresses on the lab's pub host (1-64)")
	flag.StringVar(&opt.Ours, "ours", "", "our miredo-server binary (default: go build ./cmd/miredo-server)")
	flag.StringVar(&opt.Only, "only", "", "comma-separated subset of servers to run: "+strings.Join(targetNames(), ","))
	flag.StringVar(&opt.Prefix, "lab", opt.Prefix, "lab namespace prefix (a stale lab with it is removed first)")
	flag.StringVar(&opt.ProfileDir, "perf", "", "record perf(1) call graphs of each server's measured interval into this directory")
	flag.BoolVar(&opt.ThreadWire, "thread-wire", false, "deliver datagrams across the lab's veths in NAPI kernel threads, not in the sender's system call (charges each process only its own sends)")
	verbose := flag.Bool("v", false, "log the lab's progress")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "serverbench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	opt.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := Run(ctx, opt, os.Stdout)
	if errors.Is(err, errUsage) {
		fmt.Fprintln(os.Stderr, "serverbench:", err)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serverbench:", err)
		os.Exit(1)
	}
}

// errUsage marks bad options.
var errUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

func defaultOptions() Options {
	return Options{
		Duration: 5 * time.Second,
		Warmup:   time.Second,
		Rounds:   1,
		Sockets:  128,
		Window:   8,
		Sources:  16,
		Prefix:   "srvbench",
	}
}

// SPDX-License-Identifier: MIT

// Command serverbench compares Teredo servers in a namespace lab: our
// miredo-server (and, on request, variants of it: --xdp, another build as
// ours-b, --no-batch, --sockets N) and Debian's miredo-server 1.2.6, one
// after the other in the same lab under the same loads.
//
// Loads come from package loadgen on the lab's pub host against the server
// host, in shapes (-shapes): 1, 16, 64 or 256 client sockets, each a Teredo
// client to the server, from one source address or from many. Each shape
// is driven to saturation (closed loop), then paced below it (-loads) at a
// share of the reference server's (Miredo's) saturated rate of the same
// round, where what counts is the CPU a server spends per answer, waking up
// included. Each run measures, over a fixed interval after a warm-up: the
// valid advertisements per second, the loss, the CPU time of the server's
// process tree (Miredo forks a worker) per answer, and the whole machine's.
//
// Rounds repeat every shape and load with the servers in rotated order, and
// the ratios pair each round's runs, so that other work on the machine
// (shared with other developers) shows as spread rather than as a bias. It
// prints one Markdown table per server against the reference (docs/benchmarks-server.md's
// tables), the goals' verdicts and the details of every run, then removes
// the lab. It needs root, ip(8), nft(8) and Debian's miredo-server.
//
// At saturation the answered rate depends on how the two cores are shared
// between the generator, the server and whatever else runs ("rest of
// machine"); the CPU time per answer is the steadier figure. How the lab's
// wire is paid for matters as much: normally the kernel delivers each
// datagram across the lab's veths and bridge inside the sender's system
// call, so a server's send also pays for the client side's receive path
// (bridge, netfilter, the client's socket); -wire thread moves that into
// kernel threads, so that each process pays only for its own system calls,
// as with a NIC. By default (-wire both) every load runs on the first kind
// and saturation again on the second, each in a lab of its own.
//
//	go run ./internal/bench/serverbench                       # everything: about 25 minutes
//	go run ./internal/bench/serverbench -shapes 64x1 -loads sat -wire sender -rounds 5 -b /tmp/new-server
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
	flag.IntVar(&opt.Rounds, "rounds", opt.Rounds, "times each server is measured in each shape and load (rounds rotate the servers; the tables show medians)")
	flag.StringVar(&opt.Shapes, "shapes", opt.Shapes, "load shapes, SOCKETSxADDRESSES,...: client sockets of the generator and the IPv4 addresses they use (1-64)")
	flag.StringVar(&opt.Loads, "loads", opt.Loads, "loads of each shape: sat (closed loop, always run) and paced loads in percent of the reference server's saturated rate")
	flag.IntVar(&opt.Window, "window", opt.Window, "closed-loop solicitations in flight per client socket (0: about 512 in all)")
	flag.StringVar(&opt.Ours, "ours", "", "our miredo-server binary (default: go build ./cmd/miredo-server)")
	flag.StringVar(&opt.OursB, "b", "", "a second miredo-server binary, run as server ours-b, for an A/B comparison in the same rounds")
	flag.StringVar(&opt.Only, "only", "", "comma-separated subset of servers to run: "+strings.Join(targetNames(), ","))
	flag.StringVar(&opt.Prefix, "lab", opt.Prefix, "lab namespace prefix (a stale lab with it is removed first)")
	flag.StringVar(&opt.ProfileDir, "perf", "", "record perf(1) call graphs of each server's measured interval into this directory")
	flag.StringVar(&opt.Wire, "wire", opt.Wire, "how the lab's veths deliver: sender (in the sender's system call, charging a server for the client side's receive path), thread (in NAPI kernel threads, as a NIC would), or both (every load on sender, then saturation on thread)")
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
		Rounds:   3,
		Shapes:   defaultShapes,
		Loads:    defaultLoads,
		Wire:     "both",
		Prefix:   "srvbench",
	}
}

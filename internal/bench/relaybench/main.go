// SPDX-License-Identifier: MIT

// Command relaybench measures Teredo throughput through a relay in a
// namespace lab, ours against Debian's Miredo 1.2.6 in the same run.
//
// iperf3 runs between the lab's client1 (behind nat1, a port-restricted
// NAT) and the native IPv6 host 2001:db8:2::2, through the relay host, for
// each pairing of client and relay: Miredo + Miredo (the reference), ours +
// ours, Miredo's client + our relay (the relay's own cost), our client +
// Miredo's relay (the client's own cost); the Teredo server (ours unless
// -server miredo) is off the data path. Then the same traffic goes over a
// kernel VXLAN tunnel from client1 to the relay host, through the same NAT
// and hops with the same 1280-byte MTU, as the ceiling.
//
// Each run is TCP or UDP (1200-byte datagrams, paced or not) in one
// direction, for -duration. The table shows the receiver's Mbit/s and
// packets/s, the loss, and the CPU of the relay's and the client's process
// trees (Miredo forks; so does our client's privileged helper) in cores and
// in CPU seconds per GB delivered, and the ratios to the Miredo pairing.
// Each pairing starts fresh daemons every round and warms the path up
// before it is measured; rounds repeat every pairing and the table shows
// medians with their range. The lab is removed at the end; the daemons'
// logs are kept only when something failed.
//
// Our daemons take extra arguments (-relay-args, -client-args), and
// -variant adds pairings of our daemons with other arguments, so that kill
// switches can be compared in the same run. The machine is small and
// shared: each run waits for a quiet machine first (-quiet), the table
// shows the CPU that neither the daemons nor iperf3 used, and only ratios
// within a round are worth comparing across runs. By default the kernel
// delivers each packet across the lab's veths inside the sender's system
// call, so a daemon is charged for the forwarding behind it (the same for
// Miredo); -thread-wire moves that into kernel threads. -perf records
// perf(1) call graphs of both daemons during every run.
//
//	go run ./internal/bench/relaybench -rounds 3
//	go run ./internal/bench/relaybench -only ours,our-relay -relay-args '--no-batch'
//	go run ./internal/bench/relaybench -variant 'nobatch|ours|ours --no-batch'
//	go run ./internal/bench/relaybench -only ours,our-relay -thread-wire -perf /tmp/perf
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
	var variants multiFlag
	var clientArgs, relayArgs, rate string
	flag.DurationVar(&opt.Duration, "duration", opt.Duration, "length of each measured iperf3 run (whole seconds)")
	flag.DurationVar(&opt.Warmup, "warmup", opt.Warmup, "TCP run through each fresh pairing before it is measured (whole seconds; 0: none)")
	flag.IntVar(&opt.Rounds, "rounds", opt.Rounds, "times every pairing is measured (the table shows medians and ranges)")
	flag.StringVar(&opt.Tests, "tests", opt.Tests, "comma-separated runs per pairing, from "+strings.Join(trafficNames, ","))
	flag.StringVar(&rate, "udp-rate", "300M", "send rate of the paced UDP runs (udp-up, udp-down)")
	flag.StringVar(&opt.Only, "only", "", "comma-separated pairings to run (miredo,ours,our-relay,our-client,vxlan and -variant keys; default all)")
	flag.StringVar(&clientArgs, "client-args", "", "extra arguments for our miredo-client (space-separated)")
	flag.StringVar(&relayArgs, "relay-args", "", "extra arguments for our miredo-relay (space-separated)")
	flag.Var(&variants, "variant", "extra pairing KEY|CLIENT|RELAY, CLIENT and RELAY being miredo or 'ours ARGS' (repeatable)")
	flag.StringVar(&opt.Server, "server", opt.Server, "Teredo server: ours or miredo")
	flag.StringVar(&opt.BinDir, "bin", "", "directory with our miredo-{client,relay,server} (default: go build them)")
	flag.StringVar(&opt.Prefix, "lab", opt.Prefix, "lab namespace prefix (a stale lab with it is removed first)")
	flag.StringVar(&opt.PerfDir, "perf", "", "record perf(1) call graphs of the relay and the client during each run into this directory")
	flag.BoolVar(&opt.ThreadWire, "thread-wire", false, "deliver what the relay and the client send across the lab's veths in NAPI kernel threads, not in their system calls (charges each daemon only its own work)")
	flag.Float64Var(&opt.QuietBelow, "quiet", opt.QuietBelow, "before each run, wait (at most 30 s) until the machine is busy less than this many cores (0: do not wait)")
	verbose := flag.Bool("v", false, "log the lab's progress")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "relaybench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	opt.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	err := opt.setPairings(strings.Fields(clientArgs), strings.Fields(relayArgs), variants)
	if err == nil {
		opt.UDPRate, err = parseRate(rate)
	}
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		_, err = Run(ctx, opt, os.Stdout)
	}
	if errors.Is(err, errUsage) {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

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
		Tests:    defaultTests,
		UDPRate:  300e6,
		Server:   "ours",
		Prefix:   "rlybench",
		// The daemons idle between runs; what is left is other work.
		QuietBelow: 0.3,
	}
}

// setPairings fills opt.Pairings: the standard ones with our extra
// arguments, then the variants.
func (opt *Options) setPairings(clientArgs, relayArgs []string, variants []string) error {
	ps := standardPairings(clientArgs, relayArgs)
	for _, v := range variants {
		p, err := parseVariant(v)
		if err != nil {
			return err
		}
		for _, q := range ps {
			if q.key == p.key {
				return usagef("-variant %q: key %q already used", v, p.key)
			}
		}
		ps = append(ps, p)
	}
	opt.Pairings = ps
	return nil
}

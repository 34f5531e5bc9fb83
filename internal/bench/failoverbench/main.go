// SPDX-License-Identifier: MIT

// Command failoverbench measures what the users of a Teredo fleet see when
// one of its members fails, in a namespace lab (make bench-failover).
//
// The fleet is the one of docs/anycast-relays.md (package failover): the
// native host 2001:db8:2::2 behind a router that runs BIRD and spreads
// 2001::/32 over two relays (ECMP), each relay host running BIRD beside
// our relay with --announce-interface under a watchdog (1 s, then SIGABRT,
// then SIGKILL 1 s later, as systemd would), two server pairs behind one
// name served by dnsmasq, clients behind port-restricted NATs (client1,
// client2, client3) and one without (pub). Each case pings every 10 ms
// between the native host and client1, through the relay that carries
// them, and reports the longest time without a reply and the pings lost,
// each way:
//
//	kill        that relay is killed (SIGKILL)
//	hang        it is stopped (SIGSTOP): the watchdog has to kill it
//	drain       it is asked to stop (SIGTERM): withdraw, forward 2 s, exit
//	kill-up     killed while idle, then only the client pings (nothing comes
//	            from the native side to show it the other relay)
//	kill-down   killed while only the native host pings
//	host-hang   the relay and BIRD are stopped, as on a frozen host: BFD
//	            withdraws before the watchdog fires
//	restart     a relay killed earlier starts again: it rejoins, flows spread
//	server      the server pair most clients use is killed: its clients
//	            qualify with the other pair (new addresses) and are reached
//	miredo      a Miredo relay with a static route instead of BIRD, killed
//	            and started again 5 s later (and ours the same way, to compare)
//
// kill, hang and drain also run TCP (iperf3 paced at 50 Mbit/s, each
// direction) through the event, and report the longest stretch under a
// tenth of the usual throughput. Everything runs in one lab, removed at the
// end; logs are kept only when something failed.
//
//	go run ./internal/bench/failoverbench
//	go run ./internal/bench/failoverbench -only kill,drain -rounds 3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

var allCases = []string{"kill", "hang", "drain", "kill-up", "kill-down", "host-hang", "restart", "server", "miredo"}

func main() {
	var opt options
	only := flag.String("only", strings.Join(allCases, ","), "cases to run, comma-separated: "+strings.Join(allCases, ","))
	flag.IntVar(&opt.rounds, "rounds", 1, "runs of each relay case (the table shows the median and the range)")
	flag.DurationVar(&opt.interval, "interval", 10*time.Millisecond, "ping interval")
	flag.DurationVar(&opt.after, "after", 4*time.Second, "how long to go on measuring after each event")
	flag.BoolVar(&opt.iperf, "iperf", true, "also measure TCP throughput over time through kill, hang and drain (iperf3)")
	flag.StringVar(&opt.binDir, "bin", "", "directory with our miredo-{client,relay,server} (default: go build them)")
	flag.BoolVar(&opt.verbose, "v", false, "log the lab's progress")
	flag.Parse()
	for _, c := range strings.Split(*only, ",") {
		if !slices.Contains(allCases, c) {
			fmt.Fprintf(os.Stderr, "failoverbench: -only: no case %q (have %s)\n", c, strings.Join(allCases, ","))
			os.Exit(2)
		}
		opt.cases = append(opt.cases, c)
	}
	level := slog.LevelWarn
	if opt.verbose {
		level = slog.LevelInfo
	}
	opt.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opt); err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		os.Exit(1)
	}
}

type options struct {
	cases    []string
	rounds   int
	interval time.Duration
	after    time.Duration
	iperf    bool
	binDir   string
	verbose  bool
	log      *slog.Logger
}

func (o options) has(c string) bool { return slices.Contains(o.cases, c) }

func run(ctx context.Context, opt options) error {
	for _, tool := range []string{"ip", "nft", "bird", "birdc", "dnsmasq", "iperf3", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (make deps)", tool)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root for network namespaces")
	}
	dir := opt.binDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "failoverbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		for _, name := range []string{"miredo-client", "miredo-relay", "miredo-server"} {
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(tmp, name), "github.com/miredo-go/miredo/cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s: %w\n%s", name, err, b)
			}
		}
		dir = tmp
	}
	bins := func(name string) string { return filepath.Join(dir, name) }
	start := time.Now()
	var rows []row
	fleetCases := slices.DeleteFunc(slices.Clone(opt.cases), func(c string) bool { return c == "miredo" })
	if len(fleetCases) > 0 {
		r, err := runFleet(ctx, opt, bins)
		rows = append(rows, r...)
		if err != nil {
			printTable(os.Stdout, opt, rows, time.Since(start))
			return err
		}
	}
	if opt.has("miredo") {
		r, err := runStatic(ctx, opt, bins)
		rows = append(rows, r...)
		if err != nil {
			printTable(os.Stdout, opt, rows, time.Since(start))
			return err
		}
	}
	printTable(os.Stdout, opt, rows, time.Since(start))
	return nil
}

// withLab builds a lab, runs fn in it and removes it, keeping the daemons'
// logs when fn failed.
func withLab(ctx context.Context, opts lab.Options, fn func(*lab.Lab) ([]row, error)) (rows []row, err error) {
	l, err := lab.Build(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if kept, cerr := l.Finish(err != nil); kept != "" {
			fmt.Printf("logs kept in %s\n", kept)
		} else if err == nil {
			err = cerr
		}
	}()
	return fn(l)
}

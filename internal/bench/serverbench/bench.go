// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/miredo-go/miredo/internal/bench/loadgen"
	"github.com/miredo-go/miredo/internal/bench/proccpu"
	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

// Options shape a benchmark run.
type Options struct {
	Duration, Warmup time.Duration
	Rounds           int
	// Shapes lists the load shapes, "SOCKETSxADDRESSES,..." (see shape).
	Shapes string
	// Loads lists the loads of each shape: "sat" and percentages of the
	// reference server's saturated rate (see load).
	Loads string
	// Window is the closed-loop window per client socket; 0 picks one
	// per shape (see window).
	Window int
	// Ours is our server's binary; empty builds it. OursB is a second
	// build of ours, run as target "ours-b", for A/B comparisons of a
	// change in the same rounds.
	Ours, OursB string
	// Only lists the targets to run, by name, comma-separated; empty runs
	// ours, ours --xdp and Miredo (and ours-b when OursB is set).
	Only string
	// Prefix names the lab's namespaces.
	Prefix string
	// ProfileDir, if set, receives a perf(1) recording of each measured
	// interval.
	ProfileDir string
	// Wire says how the lab's veths deliver (see threadWire): "sender"
	// (in the sender's system call), "thread" (in NAPI kernel threads), or
	// "both": every load in sender mode, then saturation again in thread
	// mode, where each server pays only for its own system calls, as it
	// would with a NIC.
	Wire string
	Log  *slog.Logger
}

// target is one server configuration to measure.
type target struct {
	name   string
	miredo bool     // Debian's miredo-server instead of ours
	args   []string // extra flags for ours
	b      bool     // Options.OursB instead of Options.Ours
	xdp    bool     // with --xdp on the server host's interface
}

// targets are what -only picks from; a round measures them in this order,
// rotated by one each round so that none always runs first.
var targets = []target{
	{name: "ours"},
	{name: "ours --xdp", xdp: true},
	{name: "ours-b", b: true},
	{name: "ours-b --xdp", b: true, xdp: true},
	{name: "ours --no-batch", args: []string{"--no-batch"}},
	{name: "ours --sockets 1", args: []string{"--sockets", "1"}},
	{name: "ours --sockets 2", args: []string{"--sockets", "2"}},
	{name: "miredo-server 1.2.6", miredo: true},
}

func targetNames() []string {
	var n []string
	for _, t := range targets {
		n = append(n, strings.ReplaceAll(t.name, " ", ""))
	}
	return n
}

// selectTargets picks the targets named in only (names without spaces, as
// targetNames gives them); empty means ours, ours --xdp and Miredo, and
// ours-b with b.
func selectTargets(only string, b bool) ([]target, error) {
	if only == "" {
		only = "ours,ours--xdp,miredo-server1.2.6"
		if b {
			only = "ours,ours-b,ours--xdp,miredo-server1.2.6"
		}
	}
	names := targetNames()
	var out []target
	for _, want := range strings.Split(only, ",") {
		i := slices.Index(names, strings.TrimSpace(want))
		if i < 0 {
			return nil, usagef("-only: no server %q (have %s)", want, strings.Join(names, ","))
		}
		if targets[i].b && !b {
			return nil, usagef("-only: %s needs -b BINARY", names[i])
		}
		out = append(out, targets[i])
	}
	return out, nil
}

// reference is the target the ratios and the paced rates are relative to:
// Miredo when selected, else the first.
func reference(sel []target) target {
	for _, t := range sel {
		if t.miredo {
			return t
		}
	}
	return sel[0]
}

// Sample is one measured interval of one server.
type Sample struct {
	Target string
	Round  int
	Shape  shape
	Load   load
	// Rate is the paced load's offered rate (0 for saturation).
	Rate     float64
	Wall     time.Duration
	Counters loadgen.Counters
	// ServerCPU is the server's process tree's CPU time; GenCPU this
	// process's (the generator, mostly); Machine the whole machine's.
	ServerCPU, GenCPU proccpu.Times
	Machine           proccpu.Machine
}

// extraSourceBase is where the generator's added addresses start on the pub
// host (its own is 192.0.2.30); the lab's topology leaves .100-.163 free.
var extraSourceBase = netip.MustParseAddr("192.0.2.100")

// Run builds a lab, measures every selected server on every shape and load
// Rounds times, prints the tables to out and removes the lab. It returns
// the samples.
func Run(ctx context.Context, opt Options, out io.Writer) ([]Sample, error) {
	sel, err := selectTargets(opt.Only, opt.OursB != "")
	if err != nil {
		return nil, err
	}
	shapes, err := parseShapes(opt.Shapes)
	if err != nil {
		return nil, err
	}
	loads, err := parseLoads(opt.Loads)
	if err != nil {
		return nil, err
	}
	switch {
	case opt.Duration < 100*time.Millisecond || opt.Duration > 10*time.Minute:
		return nil, usagef("-duration %v: want 100ms to 10m", opt.Duration)
	case opt.Warmup < 0 || opt.Warmup > time.Minute:
		return nil, usagef("-warmup %v: want 0 to 1m", opt.Warmup)
	case opt.Rounds < 1 || opt.Rounds > 20:
		return nil, usagef("-rounds %d: want 1 to 20", opt.Rounds)
	case opt.Window < 0 || opt.Window > loadgen.MaxWindow:
		return nil, usagef("-window %d: want 0 (per shape) to %d", opt.Window, loadgen.MaxWindow)
	}
	if reason := lab.Missing(); reason != "" {
		return nil, fmt.Errorf("lab: %s", reason)
	}
	if reason := refmiredo.Missing(); reason != "" && slices.ContainsFunc(sel, func(t target) bool { return t.miredo }) {
		return nil, fmt.Errorf("refmiredo: %s", reason)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	passes, err := wirePasses(opt.Wire, loads)
	if err != nil {
		return nil, err
	}
	// Everything below is bounded: each run by its own deadline, the whole
	// by this one.
	runs := 0
	for _, p := range passes {
		runs += opt.Rounds * len(sel) * len(shapes) * len(p.loads)
	}
	perRun := opt.Warmup + opt.Duration + time.Minute
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(runs)*perRun)
	defer cancel()

	ours := opt.Ours
	if ours == "" && slices.ContainsFunc(sel, func(t target) bool { return !t.miredo && !t.b }) {
		dir, err := os.MkdirTemp("", "serverbench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if ours, err = buildOurs(ctx, dir); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "serverbench: %d rounds, %v per run after %v warm-up, %d cores; load shapes are client sockets × source addresses\n",
		opt.Rounds, opt.Duration, opt.Warmup, runtime.NumCPU())
	var all []Sample
	for _, p := range passes {
		samples, err := runPass(ctx, opt, p, sel, shapes, ours, out)
		all = append(all, samples...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// pass is one lab with one kind of wire and the loads run on it.
type pass struct {
	thread bool
	loads  []load
}

func (p pass) String() string {
	if p.thread {
		return "veth delivery in NAPI kernel threads (-wire thread: each server pays only for its own system calls, as with a NIC)"
	}
	return "veth delivery in the sender's system call (-wire sender: a server also pays for the client side's receive path)"
}

// wirePasses turns -wire into passes.
func wirePasses(wire string, loads []load) ([]pass, error) {
	switch wire {
	case "sender":
		return []pass{{false, loads}}, nil
	case "thread":
		return []pass{{true, loads}}, nil
	case "both", "":
		return []pass{{false, loads}, {true, []load{{0}}}}, nil
	}
	return nil, usagef("-wire %q: want sender, thread or both", wire)
}

// runPass builds a lab with p's wire, measures every target on every shape
// and p's loads Rounds times, prints the report and removes the lab.
func runPass(ctx context.Context, opt Options, p pass, sel []target, shapes []shape, ours string, out io.Writer) ([]Sample, error) {
	l, err := lab.Build(ctx, lab.Options{Prefix: opt.Prefix, Logger: opt.Log})
	if err != nil {
		return nil, err
	}
	failed := true
	defer func() {
		kept, err := l.Finish(failed)
		if err != nil {
			opt.Log.Warn("lab not removed cleanly", "err", err)
		}
		if kept != "" {
			fmt.Fprintf(out, "serverbench: the servers' logs are kept in %s\n", kept)
		}
	}()
	most := 1
	for _, sh := range shapes {
		most = max(most, sh.sources)
	}
	sources, err := addSources(ctx, l.Host(lab.Pub), most)
	if err != nil {
		return nil, err
	}
	if p.thread {
		if err := threadWire(ctx, l); err != nil {
			return nil, err
		}
	}
	b := &bench{opt: opt, lab: l, ours: ours, sources: sources}
	ref := reference(sel)
	fmt.Fprintf(out, "\n## %s\n", p)
	var samples []Sample
	for round := range opt.Rounds {
		// Rotate the order each round, so that drift in the machine's
		// other load does not always favour the same server.
		order := append(slices.Clone(sel[round%len(sel):]), sel[:round%len(sel)]...)
		for _, sh := range shapes {
			var peak float64 // the reference's saturated rate this round
			for _, ld := range p.loads {
				rate := 0.0
				if ld.pct > 0 {
					if peak == 0 {
						return samples, fmt.Errorf("%v: %s answered nothing at saturation", sh, ref.name)
					}
					rate = peak * float64(ld.pct) / 100
				}
				for _, t := range order {
					s, err := b.measure(ctx, t, round, sh, ld, rate)
					if err != nil {
						return samples, fmt.Errorf("%s, %v, %v (round %d): %w", t.name, sh, ld, round+1, err)
					}
					opt.Log.Info("measured", "server", t.name, "round", round+1, "shape", sh.String(), "load", ld.short(),
						"thread_wire", p.thread, "answered_per_s", answeredRate(s), "per_cpu_s", perCPUSecond(s))
					if ld.pct == 0 && t.name == ref.name {
						peak = answeredRate(s)
					}
					samples = append(samples, s)
				}
			}
		}
	}
	writeReport(out, sel, ref, shapes, p.loads, samples)
	failed = false
	return samples, nil
}

// buildOurs builds cmd/miredo-server into dir, statically as `make build`
// does but with symbols, so perf can name functions.
func buildOurs(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "miredo-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "github.com/miredo-go/miredo/cmd/miredo-server")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build miredo-server: %w\n%s", err, b)
	}
	return bin, nil
}

// addSources gives the pub host n-1 more IPv4 addresses (inside the lab
// namespace only) and returns all n it sends from.
func addSources(ctx context.Context, h *lab.Host, n int) ([]netip.Addr, error) {
	srcs := []netip.Addr{h.IPv4()}
	a := extraSourceBase
	for len(srcs) < n {
		if _, err := h.Run(ctx, "ip", "addr", "add", a.String()+"/24", "dev", h.Ifname); err != nil {
			return nil, fmt.Errorf("add source address %v: %w", a, err)
		}
		srcs = append(srcs, a)
		a = a.Next()
	}
	return srcs, nil
}

type bench struct {
	opt     Options
	lab     *lab.Lab
	ours    string
	sources []netip.Addr
}

// measure runs one server, loads it with shape sh (closed-loop, or paced
// at rate), and samples the measured interval.
func (b *bench) measure(ctx context.Context, t target, round int, sh shape, ld load, rate float64) (Sample, error) {
	srvHost := b.lab.Host(lab.Server)
	primary := netip.AddrPortFrom(srvHost.IPv4(), proto.Port)
	name := fmt.Sprintf("%s-%dx%d-%s-r%d", strings.ReplaceAll(t.name, " ", ""), sh.sockets, sh.sources,
		strings.TrimSuffix(ld.short(), "%"), round+1)
	ctx, cancel := context.WithTimeout(ctx, b.opt.Warmup+b.opt.Duration+time.Minute)
	defer cancel()
	if err := waitPortFree(ctx, srvHost, proto.Port); err != nil {
		return Sample{}, err
	}
	p, err := b.startServer(ctx, t, name)
	if err != nil {
		return Sample{}, err
	}
	defer func() {
		if err := p.Stop(); err != nil {
			b.opt.Log.Warn("server stop", "server", t.name, "err", err)
		}
	}()
	if err := srvHost.WaitUDP(ctx, proto.Port); err != nil {
		return Sample{}, fmt.Errorf("%w\n%s", err, p.Tail(10))
	}

	var g *loadgen.Generator
	err = b.lab.Host(lab.Pub).Do(func() error {
		var err error
		cfg := loadgen.Config{
			Server: primary, Sources: b.sources[:sh.sources], Sockets: sh.sockets, Window: window(sh, b.opt.Window),
			MaxDuration: b.opt.Warmup + b.opt.Duration + 10*time.Second,
		}
		if rate > 0 {
			cfg.Rate, cfg.Window = rate, pacedWindow(sh)
		}
		g, err = loadgen.Open(cfg)
		return err
	})
	if err != nil {
		return Sample{}, err
	}
	genCtx, stopGen := context.WithCancel(ctx)
	genDone := make(chan error, 1)
	go func() { genDone <- g.Run(genCtx) }()
	defer func() {
		stopGen()
		<-genDone
	}()

	if err := sleep(ctx, b.opt.Warmup); err != nil {
		return Sample{}, err
	}
	// The server must be answering before we measure it: poll for a first
	// advertisement (the warm-up normally has them already).
	if err := poll(ctx, 10*time.Second, func() bool { return g.Counters().Answered > 0 }); err != nil {
		return Sample{}, fmt.Errorf("no advertisement from %s: %w\n%s", t.name, err, p.Tail(10))
	}
	var perf *proccpu.PerfRecording
	if b.opt.ProfileDir != "" {
		if perf, err = proccpu.StartPerf(ctx, b.opt.ProfileDir, name, p.Pid()); err != nil {
			return Sample{}, err
		}
	}
	before, err := snapshot(p.Pid(), g)
	if err != nil {
		return Sample{}, err
	}
	if err := sleep(ctx, b.opt.Duration); err != nil {
		return Sample{}, err
	}
	after, err := snapshot(p.Pid(), g)
	if err != nil {
		return Sample{}, err
	}
	if perf != nil {
		if err := perf.Stop(); err != nil {
			b.opt.Log.Warn("perf", "server", t.name, "err", err)
		}
	}
	return Sample{
		Target:    t.name,
		Round:     round,
		Shape:     sh,
		Load:      ld,
		Rate:      rate,
		Wall:      after.at.Sub(before.at),
		Counters:  after.load.Sub(before.load),
		ServerCPU: after.tree.Since(before.tree),
		GenCPU:    after.self.Sub(before.self),
		Machine:   after.machine.Sub(before.machine),
	}, nil
}

func (b *bench) startServer(ctx context.Context, t target, name string) (*lab.Process, error) {
	h := b.lab.Host(lab.Server)
	if t.miredo {
		return refmiredo.Start(ctx, b.lab, h, name, refmiredo.ServerBinary, refmiredo.ServerConfig(h.IPv4()))
	}
	conf := filepath.Join(b.lab.LogDir, name+".conf")
	if err := os.WriteFile(conf, []byte(refmiredo.ServerConfig(h.IPv4())), 0o644); err != nil {
		return nil, err
	}
	// The load comes from one /24: the per-/24 send limit, which Miredo
	// does not have, is off so that capacity is what gets measured.
	bin := b.ours
	if t.b {
		bin = b.opt.OursB
	}
	argv := append([]string{bin, "-c", conf, "-p", filepath.Join(b.lab.LogDir, name+".pid"), "--rate-limit", "0"}, t.args...)
	if t.xdp {
		argv = append(argv, "--xdp", h.Ifname)
	}
	return b.lab.Start(ctx, h, name, argv...)
}

// point is everything sampled at one end of the measured interval.
type point struct {
	at      time.Time
	load    loadgen.Counters
	tree    proccpu.Tree
	self    proccpu.Times
	machine proccpu.Machine
}

func snapshot(pid int, g *loadgen.Generator) (point, error) {
	var p point
	var err error
	p.at = time.Now()
	p.load = g.Counters()
	if p.tree, err = proccpu.ReadTree(pid); err != nil {
		return p, err
	}
	if p.self, err = proccpu.Self(); err != nil {
		return p, err
	}
	p.machine, err = proccpu.ReadMachine()
	return p, err
}

// waitPortFree waits until no socket in h is bound to port: the previous
// server (or its forked worker) has really gone.
func waitPortFree(ctx context.Context, h *lab.Host, port uint16) error {
	suffix := fmt.Sprintf(":%04X ", port)
	var table string
	err := poll(ctx, 10*time.Second, func() bool {
		_ = h.Do(func() error {
			b, err := os.ReadFile("/proc/thread-self/net/udp")
			table = string(b)
			return err
		})
		return table != "" && !strings.Contains(table, suffix)
	})
	if err != nil {
		return fmt.Errorf("UDP port %d still bound in %s: %w", port, h.Name, err)
	}
	return nil
}

// poll checks cond every 20 ms until it holds, for at most limit.
func poll(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// sleep waits d: the measured interval is a span of time, not a condition.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/miredo-go/miredo/internal/bench/proccpu"
	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

// Options shape a benchmark run.
type Options struct {
	// Duration is each measured run's; Warmup the unmeasured TCP run
	// through each fresh pairing (0: none). Whole seconds, as iperf3 takes.
	Duration, Warmup time.Duration
	Rounds           int
	// Tests lists the traffic kinds (trafficNames), comma-separated.
	Tests string
	// UDPRate is the paced UDP runs' rate, bit/s.
	UDPRate uint64
	// Pairings are those available (nil: the standard ones); Only keeps
	// some, by key, comma-separated.
	Pairings []pairing
	Only     string
	// Server is the Teredo server, "ours" or "miredo".
	Server string
	// BinDir holds our miredo-{client,relay,server}; empty builds them.
	BinDir string
	// Prefix names the lab's namespaces.
	Prefix string
	// PerfDir, if set, receives perf(1) recordings of the daemons.
	PerfDir string
	// ThreadWire moves the lab's veth delivery of what the daemons send
	// out of their system calls into kernel threads (see threadWire).
	ThreadWire bool
	// QuietBelow holds each run back (at most quietWait) until the
	// machine has been busy less than this many cores for half a second:
	// the machine is shared, and a run that starts in someone else's
	// burst measures them. 0 starts at once.
	QuietBelow float64
	Log        *slog.Logger
}

// Sample is one measured iperf3 run through one pairing.
type Sample struct {
	Pairing, Traffic string
	Round            int
	Wall             time.Duration
	Result           iperfResult
	// Relay and Client are the CPU time of each daemon's process tree
	// (zero for the VXLAN ceiling, which is all kernel); Iperf that of
	// both iperf3 ends; Machine the whole machine's.
	Relay, Client, Iperf proccpu.Times
	Machine              proccpu.Machine
	// BusyBefore is the machine's busy cores just before the run.
	BusyBefore float64
}

// Lab addresses of the path under test.
const (
	tunIfname  = refmiredo.DefaultIfname
	clientHost = lab.Client1
)

// Run builds a lab, measures every selected pairing with every selected
// traffic kind Rounds times, prints the table to out and removes the lab.
// It returns the samples.
func Run(ctx context.Context, opt Options, out io.Writer) ([]Sample, error) {
	if opt.Pairings == nil {
		opt.Pairings = standardPairings(nil, nil)
	}
	pairs, err := selectPairings(opt.Pairings, opt.Only)
	if err != nil {
		return nil, err
	}
	tests, err := selectTraffic(opt.Tests, opt.UDPRate)
	if err != nil {
		return nil, err
	}
	switch {
	case opt.Duration < time.Second || opt.Duration > 5*time.Minute || opt.Duration%time.Second != 0:
		return nil, usagef("-duration %v: want whole seconds from 1s to 5m", opt.Duration)
	case opt.Warmup < 0 || opt.Warmup > time.Minute || opt.Warmup%time.Second != 0:
		return nil, usagef("-warmup %v: want whole seconds from 0 to 1m", opt.Warmup)
	case opt.Rounds < 1 || opt.Rounds > 20:
		return nil, usagef("-rounds %d: want 1 to 20", opt.Rounds)
	case opt.Server != "ours" && opt.Server != "miredo":
		return nil, usagef("-server %q: want ours or miredo", opt.Server)
	}
	if reason := lab.Missing(); reason != "" {
		return nil, fmt.Errorf("lab: %s", reason)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return nil, fmt.Errorf("needs iperf3 (apt-get install iperf3): %w", err)
	}
	if reason := refmiredo.Missing(); reason != "" && (usesMiredo(pairs) || opt.Server == "miredo") {
		return nil, fmt.Errorf("refmiredo: %s", reason)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	// Everything below is bounded: each run by its own deadline, the whole
	// by this one.
	perPairing := time.Minute + opt.Warmup + time.Duration(len(tests))*(opt.Duration+30*time.Second)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute+time.Duration(opt.Rounds*len(pairs))*perPairing)
	defer cancel()

	bins, cleanBins, err := ourBinaries(ctx, opt, usesOurs(pairs) || opt.Server == "ours")
	if err == nil && bins.from != "" {
		fmt.Fprintf(out, "relaybench: our daemons %s\n", bins.from)
	}
	if err != nil {
		return nil, err
	}
	defer cleanBins()

	if err := labFree(ctx, opt.Prefix); err != nil {
		return nil, err
	}
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
			fmt.Fprintf(out, "relaybench: the daemons' logs are kept in %s\n", kept)
		}
	}()
	b := &bench{opt: opt, lab: l, bins: bins, client: l.Host(clientHost), relay: l.Host(lab.Relay), native: l.Host(lab.Native)}
	if err := b.setUp(ctx); err != nil {
		return nil, err
	}
	wire := "veth delivery in the sender's system call"
	if opt.ThreadWire {
		wire = "veth delivery from the daemons in NAPI kernel threads"
	}
	fmt.Fprintf(out, "relaybench: %d rounds × %d pairings × %d runs of %v (after a %v TCP warm-up per pairing); %s behind a %s NAT ↔ relay ↔ native %s; Teredo and VXLAN MTU 1280; server: %s; %s\n",
		opt.Rounds, len(pairs), len(tests), opt.Duration, opt.Warmup, clientHost, lab.PortRestricted, b.native.IPv6(), opt.Server, wire)
	for _, p := range pairs {
		fmt.Fprintf(out, "  %-10s %s: %s\n", p.key, p.title, p.legend())
	}
	var samples []Sample
	for round := range opt.Rounds {
		for _, p := range pairs {
			ss, err := b.runPairing(ctx, p, tests, round)
			samples = append(samples, ss...)
			if err != nil {
				return samples, fmt.Errorf("%s (round %d): %w", p.title, round+1, err)
			}
		}
	}
	writeTable(out, pairs, tests, samples)
	failed = false
	return samples, nil
}

// binaries are the paths of our daemons, and where they come from.
type binaries struct{ client, relay, server, from string }

// ourBinaries finds our daemons in opt.BinDir or builds them into a
// temporary directory that the returned function removes. Built binaries
// keep their symbols, so perf can name functions.
func ourBinaries(ctx context.Context, opt Options, need bool) (binaries, func(), error) {
	dir := opt.BinDir
	clean := func() {}
	if need && dir == "" {
		tmp, err := os.MkdirTemp("", "relaybench-")
		if err != nil {
			return binaries{}, clean, err
		}
		clean = func() { os.RemoveAll(tmp) }
		for _, name := range []string{"miredo-client", "miredo-relay", "miredo-server"} {
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(tmp, name), "github.com/miredo-go/miredo/cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				clean()
				return binaries{}, func() {}, fmt.Errorf("go build %s: %w\n%s", name, err, b)
			}
		}
		dir = tmp
	}
	from := "from " + dir
	if opt.BinDir == "" {
		// The tree is shared and changes under a long run: say which one
		// was built.
		rev, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output()
		from = "built from the working tree at " + strings.TrimSpace(string(rev))
		if err != nil {
			from = "built from the working tree"
		}
	}
	bins := binaries{from: from,
		client: filepath.Join(dir, "miredo-client"),
		relay:  filepath.Join(dir, "miredo-relay"),
		server: filepath.Join(dir, "miredo-server"),
	}
	if need {
		for _, p := range []string{bins.client, bins.relay, bins.server} {
			if _, err := os.Stat(p); err != nil {
				clean()
				return binaries{}, func() {}, fmt.Errorf("-bin: %w", err)
			}
		}
	}
	return bins, clean, nil
}

type bench struct {
	opt                   Options
	lab                   *lab.Lab
	bins                  binaries
	client, relay, native *lab.Host
	iperfServer           *lab.Process
}

// setUp puts nat1 in port-restricted mode and starts what every pairing
// shares: the Teredo server and the native host's iperf3 server.
func (b *bench) setUp(ctx context.Context) error {
	if err := b.lab.SetNAT(ctx, lab.NAT1, lab.PortRestricted); err != nil {
		return err
	}
	if b.opt.ThreadWire {
		if err := threadWire(ctx, b.lab); err != nil {
			return err
		}
	}
	srv := b.lab.Host(lab.Server)
	var p *lab.Process
	var err error
	if b.opt.Server == "miredo" {
		p, err = refmiredo.Start(ctx, b.lab, srv, "server", refmiredo.ServerBinary, refmiredo.ServerConfig(srv.IPv4()))
	} else {
		conf := filepath.Join(b.lab.LogDir, "server.conf")
		if err := os.WriteFile(conf, []byte(refmiredo.ServerConfig(srv.IPv4())), 0o644); err != nil {
			return err
		}
		p, err = b.lab.Start(ctx, srv, "server", b.bins.server, "-c", conf, "-p", filepath.Join(b.lab.LogDir, "server.pid"))
	}
	if err != nil {
		return err
	}
	if err := srv.WaitUDP(ctx, proto.Port); err != nil {
		return fmt.Errorf("the Teredo server: %w\n%s", err, p.Tail(10))
	}
	b.iperfServer, err = b.lab.Start(ctx, b.native, "iperf3-server", "iperf3", "-s", "-B", b.native.IPv6().String(), "-p", fmt.Sprint(iperfPort))
	if err != nil {
		return err
	}
	if err := waitTCPListen(ctx, b.native, iperfPort); err != nil {
		return fmt.Errorf("iperf3 server: %w\n%s", err, b.iperfServer.Tail(10))
	}
	return nil
}

// runPairing sets a pairing up from scratch, warms its path up, measures
// every traffic kind through it and takes it down again.
func (b *bench) runPairing(ctx context.Context, p pairing, tests []traffic, round int) ([]Sample, error) {
	name := fmt.Sprintf("r%d-%s", round+1, p.key)
	var relay, client *lab.Process
	if p.vxlan {
		if err := b.vxlanUp(ctx); err != nil {
			return nil, err
		}
		defer func() {
			if err := b.vxlanDown(); err != nil {
				b.opt.Log.Warn("vxlan teardown", "err", err)
			}
		}()
	} else {
		var err error
		if relay, client, err = b.startPair(ctx, p, name); err != nil {
			return nil, err
		}
		defer stopAll(b.opt.Log, client, relay)
	}
	dst := b.native.IPv6()
	if err := b.client.Ping(ctx, dst); err != nil {
		return nil, fmt.Errorf("path to %s: %w%s", dst, err, tails(client, relay))
	}
	if b.opt.Warmup > 0 {
		if _, _, err := b.iperf(ctx, traffic{name: "warm-up"}, b.opt.Warmup); err != nil {
			return nil, fmt.Errorf("warm-up: %w%s", err, tails(client, relay))
		}
	}
	var samples []Sample
	for _, t := range tests {
		s, err := b.measure(ctx, t, relay, client, name+"-"+t.name)
		if err != nil {
			return samples, fmt.Errorf("%s: %w%s", t.name, err, tails(client, relay))
		}
		s.Pairing, s.Round = p.key, round
		b.opt.Log.Info("measured", "pairing", p.key, "test", t.name, "round", round+1, "mbit_s", mbps(s))
		samples = append(samples, s)
	}
	return samples, nil
}

// startPair starts the relay, then the client, waits until the client has
// qualified, and returns both.
func (b *bench) startPair(ctx context.Context, p pairing, name string) (relay, client *lab.Process, err error) {
	// The previous pairing's tunnels must be gone before new ones take
	// their name, and its NAT mappings forgotten.
	for _, h := range []*lab.Host{b.relay, b.client} {
		if err := linkGone(ctx, h, tunIfname); err != nil {
			return nil, nil, err
		}
	}
	if err := b.lab.FlushConntrack(lab.NAT1); err != nil {
		return nil, nil, err
	}
	if relay, err = b.startRelay(ctx, p.relay, name+"-relay"); err != nil {
		return nil, nil, err
	}
	if client, err = b.startClient(ctx, p.client, name+"-client"); err != nil {
		stopAll(b.opt.Log, relay)
		return nil, nil, err
	}
	if _, err := refmiredo.Qualified(ctx, b.client); err != nil {
		stopAll(b.opt.Log, client, relay)
		return nil, nil, fmt.Errorf("client not qualified: %w%s", err, tails(client, relay))
	}
	return relay, client, nil
}

func (b *bench) startRelay(ctx context.Context, r role, name string) (*lab.Process, error) {
	h := b.relay
	conf := refmiredo.RelayConfig(h.IPv4(), tunIfname)
	var p *lab.Process
	var err error
	if r.miredo {
		p, err = refmiredo.Start(ctx, b.lab, h, name, refmiredo.MiredoBinary, conf)
	} else {
		path := filepath.Join(b.lab.LogDir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		argv := append([]string{b.bins.relay, "-c", path, "-p", filepath.Join(b.lab.LogDir, name+".pid")}, r.args...)
		p, err = b.lab.Start(ctx, h, name, argv...)
	}
	if err != nil {
		return nil, err
	}
	if err := h.WaitLink(ctx, tunIfname); err != nil {
		stopAll(b.opt.Log, p)
		return nil, fmt.Errorf("relay tunnel: %w%s", err, tails(p))
	}
	return p, nil
}

func (b *bench) startClient(ctx context.Context, r role, name string) (*lab.Process, error) {
	server := b.lab.Host(lab.Server).IPv4()
	if r.miredo {
		return refmiredo.StartClient(ctx, b.lab, b.client, name, server)
	}
	path := filepath.Join(b.lab.LogDir, name+".conf")
	if err := os.WriteFile(path, []byte("RelayType client\nInterfaceName "+tunIfname+"\n"), 0o644); err != nil {
		return nil, err
	}
	argv := append([]string{b.bins.client, "-c", path, "--server", server.String(),
		"-p", filepath.Join(b.lab.LogDir, name+".pid")}, r.args...)
	return b.lab.Start(ctx, b.client, name, argv...)
}

// measure runs one iperf3 test and samples the daemons' CPU around it.
func (b *bench) measure(ctx context.Context, t traffic, relay, client *lab.Process, name string) (Sample, error) {
	var recs []*proccpu.PerfRecording
	if b.opt.PerfDir != "" {
		for _, p := range []struct {
			proc *lab.Process
			role string
		}{{relay, "relay"}, {client, "client"}} {
			if p.proc == nil {
				continue
			}
			r, err := proccpu.StartPerf(ctx, b.opt.PerfDir, name+"-"+p.role, p.proc.Pid())
			if err != nil {
				stopPerf(b.opt.Log, recs)
				return Sample{}, err
			}
			recs = append(recs, r)
		}
	}
	busy, err := b.waitQuiet(ctx)
	if err != nil {
		stopPerf(b.opt.Log, recs)
		return Sample{}, err
	}
	before, err := snapshot(relay, client, b.iperfServer)
	if err != nil {
		stopPerf(b.opt.Log, recs)
		return Sample{}, err
	}
	res, iperfCPU, runErr := b.iperf(ctx, t, b.opt.Duration)
	after, err := snapshot(relay, client, b.iperfServer)
	stopPerf(b.opt.Log, recs)
	if runErr != nil {
		return Sample{}, runErr
	}
	if err != nil {
		return Sample{}, err
	}
	return Sample{
		Traffic:    t.name,
		Wall:       after.at.Sub(before.at),
		Result:     res,
		Relay:      after.relay.Since(before.relay),
		Client:     after.client.Since(before.client),
		Iperf:      iperfCPU.Add(after.iperf.Since(before.iperf)),
		Machine:    after.machine.Sub(before.machine),
		BusyBefore: busy,
	}, nil
}

// quietWait bounds how long a run waits for a quiet machine.
const quietWait = 30 * time.Second

// waitQuiet samples the machine's busy cores over half-second windows
// until one is below opt.QuietBelow, for at most quietWait, and returns the
// last window's figure.
func (b *bench) waitQuiet(ctx context.Context) (float64, error) {
	deadline := time.Now().Add(quietWait)
	for {
		m0, err := proccpu.ReadMachine()
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		m1, err := proccpu.ReadMachine()
		if err != nil {
			return 0, err
		}
		busy := cores(m1.Busy-m0.Busy, time.Since(t0))
		if busy < b.opt.QuietBelow || b.opt.QuietBelow <= 0 || time.Now().After(deadline) {
			return busy, nil
		}
		b.opt.Log.Info("waiting for a quiet machine", "busy_cores", busy)
	}
}

// iperf runs an iperf3 client on the client host for d and returns its
// result and the client's CPU time (ip netns exec execs iperf3 in place,
// so the child's usage is iperf3's).
func (b *bench) iperf(ctx context.Context, t traffic, d time.Duration) (iperfResult, proccpu.Times, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := b.client.Command(ctx, iperfArgs(t, b.native.IPv6(), d)...)
	out, err := cmd.Output()
	var cpu proccpu.Times
	if cmd.ProcessState != nil {
		cpu = proccpu.Times{User: cmd.ProcessState.UserTime(), System: cmd.ProcessState.SystemTime()}
	}
	res, perr := parseIperf(out)
	switch {
	case perr != nil && err != nil:
		return res, cpu, fmt.Errorf("iperf3: %w (%v)", err, perr)
	case perr != nil:
		return res, cpu, perr
	}
	return res, cpu, nil
}

// point is what is sampled at each end of a run.
type point struct {
	at                   time.Time
	relay, client, iperf proccpu.Tree
	machine              proccpu.Machine
}

// snapshot reads the process trees of the daemons and the iperf3 server
// (nil processes are skipped) and the machine's CPU time.
func snapshot(relay, client, iperfServer *lab.Process) (point, error) {
	p := point{at: time.Now()}
	var err error
	for _, d := range []struct {
		proc *lab.Process
		tree *proccpu.Tree
	}{{relay, &p.relay}, {client, &p.client}, {iperfServer, &p.iperf}} {
		if d.proc == nil {
			continue
		}
		if *d.tree, err = proccpu.ReadTree(d.proc.Pid()); err != nil {
			return p, fmt.Errorf("%s: %w", d.proc.Name, err)
		}
	}
	p.machine, err = proccpu.ReadMachine()
	return p, err
}

// stopAll stops daemons in order, skipping nil ones.
func stopAll(log *slog.Logger, ps ...*lab.Process) {
	for _, p := range ps {
		if p == nil {
			continue
		}
		if err := p.Stop(); err != nil {
			log.Warn("stop", "name", p.Name, "err", err)
		}
	}
}

// tails is the end of each daemon's log, for an error message.
func tails(ps ...*lab.Process) string {
	var b strings.Builder
	for _, p := range ps {
		if p != nil {
			fmt.Fprintf(&b, "\n--- %s:\n%s", p.Name, p.Tail(15))
		}
	}
	return b.String()
}

// labFree fails if a lab with this prefix has processes in its namespaces:
// lab.Build would remove it as stale, killing another benchmark's run.
func labFree(ctx context.Context, prefix string) error {
	names, err := filepath.Glob(filepath.Join("/run/netns", prefix+"-*"))
	if err != nil {
		return err
	}
	for _, path := range names {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", filepath.Base(path)).Output()
		if err == nil && len(strings.TrimSpace(string(out))) > 0 {
			return fmt.Errorf("lab %q is in use (processes in %s): another run? Pass -lab OTHER, or remove it with go run ./internal/lab/labctl down --prefix %s",
				prefix, filepath.Base(path), prefix)
		}
	}
	return nil
}

// linkGone waits (at most 10 s) until interface name no longer exists in h:
// a stopped daemon's tunnel is removed when its last descriptor closes.
func linkGone(ctx context.Context, h *lab.Host, name string) error {
	return poll(ctx, 10*time.Second, func() bool {
		_, err := h.Run(ctx, "ip", "link", "show", "dev", name)
		return err != nil
	}, fmt.Sprintf("%s: interface %s still there", h.Name, name))
}

// waitTCPListen waits (at most 10 s) until a TCP socket listens on port in
// h.
func waitTCPListen(ctx context.Context, h *lab.Host, port uint16) error {
	return poll(ctx, 10*time.Second, func() bool {
		var found bool
		_ = h.Do(func() error {
			for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
				b, err := os.ReadFile(f)
				if err == nil && tcpTableListens(string(b), port) {
					found = true
				}
			}
			return nil
		})
		return found
	}, fmt.Sprintf("%s: TCP port %d listening", h.Name, port))
}

// tcpTableListens reads /proc/net/tcp{,6}: local address HEXADDR:HEXPORT in
// the second column, state in the fourth (0A is LISTEN).
func tcpTableListens(table string, port uint16) bool {
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], suffix) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// poll checks cond every 20 ms until it holds, for at most limit.
func poll(ctx context.Context, limit time.Duration, cond func() bool, what string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// vxlanPrefix addresses the ceiling tunnel's two ends. It lies inside the
// Teredo prefix, so the lab's router already sends the native host's
// replies to the relay host, as it does for Teredo clients.
var (
	vxlanRelayAddr  = netip.MustParsePrefix("2001:0:ffff::1/64")
	vxlanClientAddr = netip.MustParsePrefix("2001:0:ffff::2/64")
)

const (
	vxlanIfname = "vx0"
	vxlanPort   = 4789
)

// vxlanScripts are the ip(8) batch scripts that make the ceiling tunnel:
// VXLAN over IPv4 from the client host through its NAT to the relay host,
// carrying IPv6 at the Teredo MTU. The source port is pinned to the
// destination port (the kernel picks from [min, max)), so the relay's
// packets match the NAT's mapping of the client's and come back through a
// port-restricted NAT. The outer UDP checksum is left out (noudpcsum, as
// IPv4 allows): with it, the SYN of a TCP connection arrives at the relay
// host with a bad outer checksum once nat1 has rewritten it (kernel 6.18;
// the checksum is offloaded through the veths), and TCP never connects.
func vxlanScripts(clientV4, relayV4, natWAN netip.Addr) (client, relay string) {
	link := func(local, remote netip.Addr, addr netip.Prefix) string {
		return fmt.Sprintf("link add %[1]s type vxlan id 4242 local %[2]s remote %[3]s dstport %[4]d srcport %[4]d %[5]d noudpcsum dev eth0\n"+
			"link set %[1]s mtu 1280 up\n"+
			"addr add %[6]s dev %[1]s nodad\n", vxlanIfname, local, remote, vxlanPort, vxlanPort+1, addr)
	}
	client = link(clientV4, relayV4, vxlanClientAddr) + fmt.Sprintf("route add ::/0 via %s dev %s\n", vxlanRelayAddr.Addr(), vxlanIfname)
	relay = link(relayV4, natWAN, vxlanRelayAddr)
	return client, relay
}

func (b *bench) vxlanUp(ctx context.Context) error {
	for _, h := range []*lab.Host{b.relay, b.client} {
		if err := linkGone(ctx, h, tunIfname); err != nil {
			return err
		}
	}
	if err := b.lab.FlushConntrack(lab.NAT1); err != nil {
		return err
	}
	client, relay := vxlanScripts(b.client.IPv4(), b.relay.IPv4(), b.lab.WAN(lab.NAT1))
	if _, err := b.relay.RunInput(ctx, relay, "ip", "-batch", "-"); err != nil {
		return fmt.Errorf("vxlan on %s: %w", b.relay.Name, err)
	}
	if _, err := b.client.RunInput(ctx, client, "ip", "-batch", "-"); err != nil {
		_ = b.vxlanDown()
		return fmt.Errorf("vxlan on %s: %w", b.client.Name, err)
	}
	return nil
}

// vxlanDown removes both ends (and the client's route with its device),
// even after the run's context has ended.
func (b *bench) vxlanDown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, h := range []*lab.Host{b.client, b.relay} {
		if _, err := h.Run(ctx, "ip", "link", "show", "dev", vxlanIfname); err != nil {
			continue // not there
		}
		if _, err := h.Run(ctx, "ip", "link", "del", "dev", vxlanIfname); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SPDX-License-Identifier: MIT

package lab

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Options shape a lab. The zero value is a working lab.
type Options struct {
	// Prefix starts every namespace name ("<prefix>-router"): letters and
	// digits, at most 12. New derives one from the test binary and test
	// name; Build defaults to "lab". A stale lab with the same prefix is
	// removed first.
	Prefix string
	// NAT1 and NAT2 are the initial behaviours of the two NAT boxes.
	NAT1, NAT2 NATMode
	// LogDir receives the daemons' logs. New defaults to a directory under
	// $MIREDO_LAB_LOGDIR if set (kept), else to t.TempDir(); Build to a new
	// temporary directory, which it keeps.
	LogDir string
	// Logger receives the lab's own progress; nil discards it.
	Logger *slog.Logger
	// Fleet adds a second relay, a second server and a DNS host, and
	// leaves the Teredo prefix to BGP (see fleet.go).
	Fleet bool
}

// Lab is a running topology. Its methods are safe for concurrent use.
type Lab struct {
	// Prefix starts every namespace name.
	Prefix string
	// LogDir holds the daemons' logs.
	LogDir string

	log   *slog.Logger
	hosts map[string]*Host
	fleet bool

	mu        sync.Mutex
	nats      map[string]*natState
	processes []*Process
	closers   []io.Closer

	closeOnce sync.Once
	closeErr  error
}

// natState is a NAT box's current behaviour.
type natState struct {
	spec natSpec
	mode NATMode
	wan  int // index into spec.wans
	// gateway is the UPnP gateway a SymmetricUPnP box runs in this
	// process; nil in other modes and in a lab Attach found.
	gateway *Gateway
}

var prefixRE = regexp.MustCompile(`^[a-z0-9]{1,12}$`)

// New builds a lab for a test and removes it when the test ends. It skips the
// test when not root or when ip(8) or nft(8) is missing. On failure it logs
// the tail of every daemon's log.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	if reason := Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	if opts.Prefix == "" {
		opts.Prefix = testPrefix(t.Name())
	}
	if opts.LogDir == "" {
		opts.LogDir = t.TempDir()
		if base := os.Getenv("MIREDO_LAB_LOGDIR"); base != "" {
			opts.LogDir = filepath.Join(base, sanitize(t.Name()))
			if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
				t.Fatalf("lab: log dir: %v", err)
			}
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	l, err := Build(ctx, opts)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Logf("lab %s up in %v, logs in %s", l.Prefix, time.Since(start).Round(time.Millisecond), l.LogDir)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range l.Processes() {
				t.Logf("--- tail of %s (%s):\n%s", p.Name, p.LogPath, p.Tail(40))
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab: close: %v", err)
		}
	})
	return l
}

// Missing says why a lab cannot be built here, or "" if it can: tests that
// must look at the machine before New skip with it.
func Missing() string {
	if os.Geteuid() != 0 {
		return "needs root for network namespaces (run the e2e tests as root: sudo go test -tags e2e ./...)"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("needs %s(8) (apt-get install iproute2 nftables)", tool)
		}
	}
	return ""
}

// testPrefix is stable for a given package and test, so that a rerun
// removes what a killed run left, while tests of other packages running at
// the same time get other prefixes. go test runs each test binary in its
// package's directory.
func testPrefix(testName string) string {
	h := fnv.New32a()
	dir, _ := os.Getwd()
	fmt.Fprintf(h, "%s\x00%s", dir, testName)
	return fmt.Sprintf("t%07x", h.Sum32()>>4)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// tlogWriter sends the lab's own logs to the test log.
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Build creates the namespaces, links, addresses, routes and NAT rules. On
// error nothing is left behind. The caller must Close the lab.
func Build(ctx context.Context, opts Options) (*Lab, error) {
	l, err := attach(opts)
	if err != nil {
		return nil, err
	}
	if err := l.removeStale(ctx); err != nil {
		return nil, err
	}
	if l.LogDir == "" {
		dir, err := os.MkdirTemp("", "miredo-lab-"+l.Prefix+"-")
		if err != nil {
			return nil, fmt.Errorf("lab: log dir: %w", err)
		}
		l.LogDir = dir
	}
	if err := l.build(ctx); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("lab %s: %w", l.Prefix, err)
	}
	return l, nil
}

// Attach returns a handle on a lab that Build made earlier, possibly in
// another process (the demo's "up", then "nat", then "down"). The NAT boxes'
// modes and WAN addresses are read back from their rules; opts.NAT1 and
// opts.NAT2 are ignored. Close on an attached lab deletes the lab.
func Attach(ctx context.Context, opts Options) (*Lab, error) {
	l, err := attach(opts)
	if err != nil {
		return nil, err
	}
	for name := range l.hosts {
		if _, err := os.Stat(filepath.Join(netnsDir, l.ns(name))); err != nil {
			return nil, fmt.Errorf("lab %s: %w", l.Prefix, err)
		}
	}
	for name, st := range l.nats {
		out, err := l.Host(name).Run(ctx, "nft", "list", "table", "ip", natTable)
		if err != nil {
			return nil, fmt.Errorf("lab %s: %w", l.Prefix, err)
		}
		mode, wan, err := parseRuleset(string(out))
		if err != nil {
			return nil, fmt.Errorf("lab %s: %s: %w", l.Prefix, name, err)
		}
		st.mode = mode
		if i := slices.Index(st.spec.wans, wan); i >= 0 {
			st.wan = i
		}
	}
	return l, nil
}

func attach(opts Options) (*Lab, error) {
	if opts.Prefix == "" {
		opts.Prefix = "lab"
	}
	if !prefixRE.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("lab: prefix %q: want 1 to 12 lower-case letters or digits", opts.Prefix)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{Prefix: opts.Prefix, LogDir: opts.LogDir, log: log, hosts: map[string]*Host{}, nats: map[string]*natState{}, fleet: opts.Fleet}
	for _, s := range specsFor(l.fleet) {
		h := &Host{lab: l, Name: s.name, Netns: l.ns(s.name), Ifname: s.ifname}
		for _, p := range s.v4 {
			h.v4 = append(h.v4, p.Addr())
		}
		for _, p := range s.v6 {
			h.v6 = append(h.v6, p.Addr())
		}
		l.hosts[s.name] = h
	}
	modes := map[string]NATMode{NAT1: opts.NAT1, NAT2: opts.NAT2}
	for _, n := range natSpecs() {
		l.nats[n.name] = &natState{spec: n, mode: modes[n.name]}
	}
	return l, nil
}

// Remove deletes every namespace of the lab with this prefix, and whatever
// runs in them, even if the lab is incomplete. Nothing there is not an error.
func Remove(ctx context.Context, prefix string) error {
	l, err := attach(Options{Prefix: prefix})
	if err != nil {
		return err
	}
	return l.removeStale(ctx)
}

func (l *Lab) ns(host string) string { return l.Prefix + "-" + host }

// removeStale deletes namespaces left by an earlier lab with this prefix.
func (l *Lab) removeStale(ctx context.Context) error {
	stale, err := labNetns(l.Prefix)
	if err != nil {
		return err
	}
	for _, name := range stale {
		l.log.Warn("lab: removing stale namespace", "netns", name)
		if err := deleteNetns(ctx, name); err != nil {
			return fmt.Errorf("lab: remove stale %s: %w", name, err)
		}
	}
	return nil
}

func (l *Lab) build(ctx context.Context) error {
	specs := specsFor(l.fleet)
	for _, s := range specs {
		if _, err := run(ctx, "", "ip", "netns", "add", l.ns(s.name)); err != nil {
			return err
		}
		if err := writeSysctls(l.hosts[s.name].NetnsPath(), s.sysctls()); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	for _, sc := range ipScripts(l.ns, l.fleet) {
		if _, err := run(ctx, sc.script, "ip", "-n", l.ns(sc.host), "-batch", "-"); err != nil {
			return fmt.Errorf("%s: %w", sc.host, err)
		}
	}
	for _, name := range []string{NAT1, NAT2} {
		if err := l.applyNAT(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// Host returns the named host (Server, Client1, ...); it panics on a name
// that is not in the topology, a programming error.
func (l *Lab) Host(name string) *Host {
	h, ok := l.hosts[name]
	if !ok {
		panic("lab: no host " + name)
	}
	return h
}

// Hosts lists every host, in creation order.
func (l *Lab) Hosts() []*Host {
	var out []*Host
	for _, s := range specsFor(l.fleet) {
		out = append(out, l.hosts[s.name])
	}
	return out
}

// SetNAT switches a NAT box (NAT1 or NAT2) to mode. Its mappings are
// forgotten: the connection tracking table is flushed so that no flow keeps
// the old behaviour.
func (l *Lab) SetNAT(ctx context.Context, nat string, mode NATMode) error {
	l.mu.Lock()
	st, err := l.natLocked(nat)
	if err == nil {
		st.mode = mode
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return l.applyNAT(ctx, nat)
}

// NATMode is a NAT box's current behaviour.
func (l *Lab) NATMode(nat string) NATMode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mustNATLocked(nat).mode
}

// WAN is the address a NAT box currently translates to.
func (l *Lab) WAN(nat string) netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.mustNATLocked(nat)
	return st.spec.wans[st.wan]
}

// Rebind changes every mapping of a NAT box, as a NAT reboot or a new lease
// would: it moves to its other WAN address and forgets all flows. Clients
// see packets from their peers stop arriving and must requalify.
func (l *Lab) Rebind(ctx context.Context, nat string) error {
	l.mu.Lock()
	st, err := l.natLocked(nat)
	if err == nil {
		st.wan = (st.wan + 1) % len(st.spec.wans)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return l.applyNAT(ctx, nat)
}

// FlushConntrack forgets a NAT box's flows without changing its rules; with
// one host on the LAN the next packets usually get the same mappings back.
func (l *Lab) FlushConntrack(nat string) error {
	if _, err := l.natOnly(nat); err != nil {
		return err
	}
	return l.flushConntrack(l.Host(nat))
}

func (l *Lab) natOnly(nat string) (*natState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.natLocked(nat)
}

func (l *Lab) natLocked(nat string) (*natState, error) {
	st, ok := l.nats[nat]
	if !ok {
		return nil, fmt.Errorf("lab: %q is not a NAT box (want %s or %s)", nat, NAT1, NAT2)
	}
	return st, nil
}

func (l *Lab) mustNATLocked(nat string) *natState {
	st, err := l.natLocked(nat)
	if err != nil {
		panic(err)
	}
	return st
}

// applyNAT installs a NAT box's current rules and flushes its flows. A
// SymmetricUPnP box gets its UPnP gateway, which keeps its mappings across a
// Rebind; leaving that mode stops the gateway.
func (l *Lab) applyNAT(ctx context.Context, nat string) error {
	l.mu.Lock()
	st := l.mustNATLocked(nat)
	mode, wan, spec, gw := st.mode, st.spec.wans[st.wan], st.spec, st.gateway
	if gw != nil && mode != SymmetricUPnP {
		st.gateway = nil
	}
	l.mu.Unlock()
	if gw != nil && mode != SymmetricUPnP {
		_ = gw.Close()
		gw = nil
	}
	h := l.Host(nat)
	install := func(maps []PortMapping) error {
		if _, err := h.RunInput(ctx, natRuleset(mode, spec.lan, wan, maps), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("%s: set %s: %w", nat, mode, err)
		}
		return nil
	}
	var err error
	if gw != nil {
		err = gw.reinstall(install)
	} else {
		err = install(nil)
	}
	if err != nil {
		return err
	}
	if err := l.flushConntrack(h); err != nil {
		return err
	}
	if mode == SymmetricUPnP && gw == nil {
		if gw, err = startGateway(l, nat, spec); err != nil {
			return err
		}
		l.track(gw)
		l.mu.Lock()
		st.gateway = gw
		l.mu.Unlock()
	}
	l.log.Info("lab: NAT set", "nat", nat, "mode", mode.String(), "wan", wan)
	return nil
}

// Gateway returns the UPnP gateway of a NAT box in SymmetricUPnP mode, or
// nil. Only the process that set the mode runs it.
func (l *Lab) Gateway(nat string) *Gateway {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mustNATLocked(nat).gateway
}

func (l *Lab) flushConntrack(h *Host) error {
	ns, err := netns.GetFromPath(h.NetnsPath())
	if err != nil {
		return fmt.Errorf("%s: open netns: %w", h.Name, err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("%s: netlink: %w", h.Name, err)
	}
	defer nh.Close()
	if err := nh.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("%s: flush conntrack: %w", h.Name, err)
	}
	return nil
}

func (l *Lab) addProcess(p *Process) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.processes = append(l.processes, p)
}

// Processes lists the daemons started with Start, in start order.
func (l *Lab) Processes() []*Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.processes)
}

func (l *Lab) track(c io.Closer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, c)
}

// Close stops every daemon, closes the sockets the lab opened and deletes the
// Finish closes a lab a command built: it removes the daemons' logs when
// the run went well and keeps them when it failed, returning the kept
// directory ("" when removed) for the caller to print.
func (l *Lab) Finish(failed bool) (keptLogs string, err error) {
	err = l.Close()
	if failed {
		return l.LogDir, err
	}
	_ = os.RemoveAll(l.LogDir)
	return "", err
}

// namespaces (and with them every interface). It is safe to call twice.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errs []error
		procs := l.Processes()
		var wg sync.WaitGroup
		perr := make([]error, len(procs))
		for i, p := range procs {
			wg.Go(func() { perr[i] = p.Stop() })
		}
		wg.Wait()
		errs = append(errs, perr...)
		l.mu.Lock()
		closers := l.closers
		l.closers = nil
		l.mu.Unlock()
		for _, c := range closers {
			_ = c.Close() // the caller may have closed it already
		}
		names, err := labNetns(l.Prefix)
		errs = append(errs, err)
		for _, name := range names {
			errs = append(errs, deleteNetns(ctx, name))
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

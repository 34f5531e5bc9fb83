// SPDX-License-Identifier: MIT

//go:build e2e

package soak

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/tunnel"
	"github.com/miredo-go/miredo/pkg/control"
	"github.com/miredo-go/miredo/pkg/proto"
)

var duration = flag.Duration("duration", 2*time.Minute, "how long the soak runs after the clients qualified (make soak: 30m)")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

const (
	clientsPerNAT = 10
	ifname        = "teredo"
	sampleEvery   = 10 * time.Second
	// floodEvery spaces the spoofed floods; a short run gets one per
	// quarter so that its first and last thirds each see one.
	floodEvery = 5 * time.Minute
	floodSize  = 20000
	// relayMaxPeers is the relay's table bound here (--max-peers), small
	// enough that a flood fills it and eviction is exercised.
	relayMaxPeers = 8192
	pingEvery     = 200 * time.Millisecond
	churnEvery    = 2 * time.Second
	qualifyWithin = time.Minute
)

// Bounds. Growth is judged by comparing the last third of the samples
// with the first third (which holds the start and a flood): a leak grows
// from one to the other, a bounded cost does not.
const (
	rssSlack       = 8 << 20 // relay and server, bytes
	clientRSSSlack = 4 << 20
	goroutineSlack = 5
	fdSlack        = 2
	// minReplies is the share of native -> client pings that must be
	// answered over the whole run, floods included.
	minReplies = 0.9
	// minChurn is the share of client -> client churn pings that must
	// get an answer (three tries each).
	minChurn = 0.9
)

// daemon is one of our daemons under soak, with its samples.
type daemon struct {
	name     string
	role     string
	h        *lab.Host
	p        *lab.Process
	sock     string
	addr     netip.Addr // a client's Teredo address, set when it qualified
	maxPeers uint64     // its peer table bound (0: no peer table)

	mu      sync.Mutex
	samples []sample
}

// sample is one status reading.
type sample struct {
	at         time.Duration
	rss        uint64
	goroutines int
	fds        int
	peers      uint64
	queued     uint64
	state      string
	addr       netip.Addr
}

// statusReply is the part of every role's status answer the soak reads.
type statusReply struct {
	control.Common
	State     string     `json:"state"`
	Address   netip.Addr `json:"address"`
	PeerCount uint64     `json:"peer_count"`
	Counters  struct {
		Engine struct {
			QueuedBytes uint64 `json:"queued_bytes"`
		} `json:"engine"`
	} `json:"counters"`
}

func (d *daemon) read(ctx context.Context, at time.Duration) (sample, error) {
	raw, err := control.Query(ctx, d.sock, control.Request{Command: control.CommandStatus})
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", d.name, err)
	}
	var r statusReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return sample{}, fmt.Errorf("%s: status: %w", d.name, err)
	}
	s := sample{at: at, rss: r.RSSBytes, goroutines: r.Goroutines, fds: r.OpenFDs, peers: r.PeerCount,
		queued: r.Counters.Engine.QueuedBytes, state: r.State, addr: r.Address}
	d.mu.Lock()
	d.samples = append(d.samples, s)
	d.mu.Unlock()
	return s, nil
}

// TestSoak runs the soak (see the package doc) and checks that nothing
// grows without bound, no client is lost and no daemon logs an error.
func TestSoak(t *testing.T) {
	l := lab.New(t, lab.Options{NAT1: lab.PortRestricted, NAT2: lab.FullCone})
	ctx := t.Context()
	server, relay, native, attacker := l.Host(lab.Server), l.Host(lab.Relay), l.Host(lab.Native), l.Host(lab.Pub)
	sock := func(name string) string { return filepath.Join(l.LogDir, name+".sock") }

	var daemons []*daemon
	start := func(h *lab.Host, name, role string, maxPeers uint64, argv ...string) *daemon {
		t.Helper()
		d := &daemon{name: name, role: role, h: h, sock: sock(name), maxPeers: maxPeers}
		var err error
		if d.p, err = l.Start(ctx, h, name, append(argv, "--control-socket", d.sock)...); err != nil {
			t.Fatal(err)
		}
		daemons = append(daemons, d)
		return d
	}
	start(server, "server", "server", 0, lab.Binary(t, "miredo-server"), "--primary", server.IPv4().String())
	if err := server.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatal(err)
	}
	start(relay, "relay", "relay", relayMaxPeers, lab.Binary(t, "miredo-relay"), "--cone", "-c", "/dev/null",
		"--max-peers", fmt.Sprint(relayMaxPeers))
	if err := relay.WaitLink(ctx, ifname); err != nil {
		t.Fatal(err)
	}
	// The relay's UDP port is its own choice: the flood needs it. Its
	// control socket comes up just after its tunnel.
	var raw json.RawMessage
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if raw, err = control.Query(ctx, daemons[1].sock, control.Request{Command: control.CommandStatus}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	var relayStatus struct {
		Local netip.AddrPort `json:"local"`
	}
	if err := json.Unmarshal(raw, &relayStatus); err != nil || relayStatus.Local.Port() == 0 {
		t.Fatalf("relay status %s: %v", raw, err)
	}
	relayAt := netip.AddrPortFrom(relay.IPv4(), relayStatus.Local.Port())

	// Twenty clients, ten behind each NAT.
	conf := filepath.Join(l.LogDir, "client.conf")
	if err := os.WriteFile(conf, []byte("InterfaceName "+ifname+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Every LAN host is added before any client starts: with each client
	// started right after its host, one start in three had a client or
	// three whose first solicitation left its NAT untranslated (its
	// conntrack entry had no SNAT, and the retries every 2-4 s kept that
	// entry alive, so the client never qualified), always while later
	// hosts were joining the NAT's LAN bridge; none in twelve starts
	// since.
	var clients [2][]*daemon
	var hosts [2][]*lab.Host
	for n, nat := range []struct {
		name string
		lan  [3]byte
	}{{lab.NAT1, [3]byte{10, 0, 0}}, {lab.NAT2, [3]byte{10, 0, 1}}} {
		for i := range clientsPerNAT {
			name := fmt.Sprintf("x%d%02d", n+1, i)
			v4 := netip.AddrFrom4([4]byte{nat.lan[0], nat.lan[1], nat.lan[2], byte(10 + i)})
			h, err := l.AddLANHost(ctx, nat.name, name, v4)
			if err != nil {
				t.Fatal(err)
			}
			hosts[n] = append(hosts[n], h)
		}
	}
	for n := range hosts {
		for i, h := range hosts[n] {
			clients[n] = append(clients[n], start(h, fmt.Sprintf("x%d%02d", n+1, i), "client", tunnel.DefaultClientMaxPeers,
				lab.Binary(t, "miredo-client"), "-c", conf, "--server", server.IPv4().String()))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*clientsPerNAT)
	// A client qualifies in well under a second; one that has not in a
	// minute never will: fail then rather than at the test's timeout.
	qctx, cancel := context.WithTimeout(ctx, qualifyWithin)
	defer cancel()
	for _, group := range clients {
		for _, c := range group {
			wg.Go(func() {
				addr, err := c.h.WaitAddr(qctx, ifname, netip.PrefixFrom(netip.MustParseAddr("2001::"), 32))
				if err == nil {
					err = c.h.WaitDefaultRoute(qctx, ifname)
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w\n%s", c.name, err, c.p.Tail(20))
				}
				c.addr = addr
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := append(append([]*daemon(nil), clients[0]...), clients[1]...)
	for _, c := range all {
		if err := native.Ping(ctx, c.addr); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	t.Logf("%d clients qualified; soaking for %v", len(all), *duration)

	// Steady traffic: the native host pings every client through the relay.
	began := time.Now()
	var pingers []*lab.Pinger
	for _, c := range all {
		p, err := native.StartPinger(ctx, c.addr, pingEvery)
		if err != nil {
			t.Fatal(err)
		}
		pingers = append(pingers, p)
		defer p.Stop()
	}

	runCtx, stopRun := context.WithTimeout(ctx, *duration)
	defer stopRun()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopRun()

	// Churn: a client pings a client behind the other NAT, a new pair
	// every two seconds, so peer entries come and (idle a minute) go.
	// Each try is kept with what it met (see churnTry), so that misses are
	// reported by cause rather than only counted.
	var churnMu sync.Mutex
	var tries []churnTry
	var floodStarts []time.Duration
	bg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(churnEvery)
		defer tick.Stop()
		lastEnd := map[[2]int]time.Duration{} // per pair: when its last try ended
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			i, j := rng.IntN(clientsPerNAT), rng.IntN(clientsPerNAT)
			a, b := clients[0][i], clients[1][j]
			fromCone := rng.IntN(2) == 1
			if fromCone {
				a, b = b, a
			}
			at := time.Since(began)
			try := churnTry{at: at, from: a.name, to: b.name, fromCone: fromCone, idle: -1, sinceFlood: -1}
			if end, ok := lastEnd[[2]int{i, j}]; ok {
				try.idle = at - end
			}
			churnMu.Lock()
			if n := len(floodStarts); n > 0 {
				try.sinceFlood, try.flood = at-floodStarts[n-1], n
			}
			churnMu.Unlock()
			_, err := a.h.Run(runCtx, "ping", "-n", "-q", "-c", "3", "-i", "0.3", "-W", "2", "-w", "5", b.addr.String())
			if err != nil && runCtx.Err() != nil {
				return // cut short by the end of the run: not a try
			}
			lastEnd[[2]int{i, j}] = time.Since(began)
			try.ok = err == nil
			if !try.ok {
				t.Logf("churn %s -> %s at %v: no answer (%s)", a.name, b.name, at.Round(time.Second), try.describe())
			}
			churnMu.Lock()
			tries = append(tries, try)
			churnMu.Unlock()
		}
	})

	// Floods: spoofed solicitations at the server, spoofed echo requests
	// from made-up Teredo clients through the relay, spoofed bubbles at
	// the clients behind the full-cone NAT.
	every := min(floodEvery, *duration/4)
	var floods atomic.Int64
	bg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for round := 0; ; round++ {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			sent := time.Since(began)
			churnMu.Lock()
			floodStarts = append(floodStarts, sent)
			churnMu.Unlock()
			if err := attacker.SendSpoofed(flood(round, server, relayAt, native, clients[1])); err != nil {
				t.Errorf("flood: %v", err)
				return
			}
			if err := floodTeredo(round, server, native); err != nil {
				t.Errorf("flood: %v", err)
				return
			}
			floods.Add(1)
			t.Logf("flood %d sent at %v (took %v)", round+1, sent.Round(time.Second),
				(time.Since(began) - sent).Round(time.Millisecond))
		}
	})

	// Sampling, every 10 s and once more at the end.
	sampleAll := func() {
		at := time.Since(began)
		for _, d := range daemons {
			s, err := d.read(ctx, at)
			if err != nil {
				t.Errorf("%v at %v", err, at.Round(time.Second))
				continue
			}
			if d.role == "client" && (s.state != "qualified" || s.addr != d.addr) {
				t.Errorf("%s lost at %v: state %s, address %v (was %v)", d.name, at.Round(time.Second), s.state, s.addr, d.addr)
			}
		}
	}
	sampleAll()
	tick := time.NewTicker(sampleEvery)
sampling:
	for {
		select {
		case <-runCtx.Done():
			break sampling
		case <-tick.C:
			sampleAll()
		}
	}
	tick.Stop()
	stopRun()
	bg.Wait()
	sampleAll()
	elapsed := time.Since(began)

	for _, d := range daemons {
		select {
		case <-d.p.Done():
			t.Errorf("%s exited during the soak: %v\n%s", d.name, d.p.Err(), d.p.Tail(20))
		default:
		}
		checkBounds(t, d)
		if lines := errorLines(d.p.Tail(1 << 20)); len(lines) > 0 {
			t.Errorf("%s logged %d errors, first: %s", d.name, len(lines), lines[0])
		}
	}
	want := int(elapsed / pingEvery)
	for i, p := range pingers {
		_, got := p.Counts()
		if float64(got) < minReplies*float64(want) {
			t.Errorf("native -> %s: %d replies of about %d pings", all[i].name, got, want)
		}
	}
	churnMu.Lock()
	tried, ok := int64(len(tries)), int64(0)
	for _, c := range tries {
		if c.ok {
			ok++
		}
	}
	t.Logf("churn misses by cause:\n%s", churnReport(tries))
	churnMu.Unlock()
	if tried == 0 || float64(ok) < minChurn*float64(tried) {
		t.Errorf("churn: %d of %d client -> client pings answered", ok, tried)
	}
	if floods.Load() == 0 {
		t.Errorf("no flood was sent")
	}
	t.Logf("soak of %v: %d floods of %d datagrams each, %d/%d churn pings answered\n%s", elapsed.Round(time.Second),
		floods.Load(), 4*floodSize, ok, tried, curves(daemons))
	for _, d := range daemons[:2] {
		t.Logf("%s counters at the end:\n%s", d.name, counters(ctx, d))
	}
	for n, group := range clients {
		t.Logf("clients behind %s, engine counters summed: %s", natNames[n], engineSums(ctx, group, slrCounters))
	}
	writeCSV(t, filepath.Join(l.LogDir, "soak.csv"), daemons)
}

// counters prints a daemon's non-zero counters as its status does.
func counters(ctx context.Context, d *daemon) string {
	raw, err := control.Query(ctx, d.sock, control.Request{Command: control.CommandStatus})
	if err != nil {
		return err.Error()
	}
	var r struct {
		Counters map[string]any `json:"counters"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return err.Error()
	}
	var b strings.Builder
	control.WriteCounters(&b, r.Counters)
	return b.String()
}

// flood builds one round of spoofed datagrams: floodSize at each target.
// Sources come from the lab's "Internet" ranges, different every round.
func flood(round int, server *lab.Host, relay netip.AddrPort, native *lab.Host, targets []*daemon) []lab.Spoofed {
	out := make([]lab.Spoofed, 0, 3*floodSize)
	src := func(i int) netip.AddrPort {
		base := [2]byte{198, 51}
		third := byte(100)
		if i%2 == 1 {
			base, third = [2]byte{203, 0}, 113
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{base[0], base[1], third, byte(10 + i%240)}),
			uint16(1024+round*1000+i/240))
	}
	teredo := func(from netip.AddrPort) netip.Addr {
		return proto.Address{Prefix: proto.DefaultPrefix, Server: server.IPv4(), MappedAddr: from.Addr(), MappedPort: from.Port()}.Addr()
	}
	srv := netip.AddrPortFrom(server.IPv4(), proto.Port)
	for i := range floodSize {
		from := src(i)
		var nonce [proto.NonceLen]byte
		nonce[0], nonce[1] = byte(i), byte(i>>8)
		out = append(out, lab.Spoofed{From: from, To: srv, Payload: proto.AppendRouterSolicitation(nil, nonce, i%2 == 0)})
		out = append(out, lab.Spoofed{From: from, To: relay, Payload: proto.AppendEchoRequest(nil,
			proto.EchoFields{Src: teredo(from), Dst: native.IPv6(), HopLimit: 64, ID: uint16(round), Seq: uint16(i)})})
		c := targets[i%len(targets)]
		to, _ := proto.ParseAddress(c.addr)
		out = append(out, lab.Spoofed{From: from, To: to.Mapping(), Payload: proto.AppendBubble(nil, teredo(from), c.addr, 0)})
	}
	return out
}

// floodTeredo sends floodSize UDP datagrams from the native host to
// Teredo addresses nobody holds, through the relay: each one a new peer
// to queue a packet for and test, as anyone on the IPv6 Internet can
// make a relay do.
func floodTeredo(round int, server, native *lab.Host) error {
	c, err := native.ListenUDP(netip.AddrPortFrom(native.IPv6(), 0))
	if err != nil {
		return err
	}
	defer c.Close()
	payload := make([]byte, 64)
	for i := range floodSize {
		mapped := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i%100)})
		to := proto.Address{Prefix: proto.DefaultPrefix, Server: server.IPv4(), MappedAddr: mapped,
			MappedPort: uint16(20000 + round*1000 + i/100)}.Addr()
		if _, err := c.WriteToUDPAddrPort(payload, netip.AddrPortFrom(to, 9)); err != nil {
			return fmt.Errorf("native -> %v: %w", to, err)
		}
	}
	return nil
}

// checkBounds applies the soak's bounds to one daemon's samples.
func checkBounds(t *testing.T, d *daemon) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.samples)
	if n < 3 {
		t.Errorf("%s: only %d samples", d.name, n)
		return
	}
	first, last := d.samples[:(n+2)/3], d.samples[n-(n+2)/3:]
	peak := func(ss []sample, f func(sample) uint64) uint64 {
		var m uint64
		for _, s := range ss {
			m = max(m, f(s))
		}
		return m
	}
	slack := uint64(rssSlack)
	if d.role == "client" {
		slack = clientRSSSlack
	}
	for _, b := range []struct {
		what  string
		f     func(sample) uint64
		slack uint64
	}{
		{"resident memory", func(s sample) uint64 { return s.rss }, slack},
		{"goroutines", func(s sample) uint64 { return uint64(s.goroutines) }, goroutineSlack},
		{"open files", func(s sample) uint64 { return uint64(s.fds) }, fdSlack},
	} {
		if early, late := peak(first, b.f), peak(last, b.f); late > early+b.slack {
			t.Errorf("%s: %s grew from at most %d in the first third to %d in the last (slack %d)", d.name, b.what, early, late, b.slack)
		}
	}
	for _, s := range d.samples {
		if d.maxPeers > 0 && s.peers > d.maxPeers {
			t.Errorf("%s: %d peers at %v, over its bound %d", d.name, s.peers, s.at.Round(time.Second), d.maxPeers)
		}
		if s.queued > tunnel.DefaultMaxQueueBytes {
			t.Errorf("%s: %d bytes queued at %v, over the bound %d", d.name, s.queued, s.at.Round(time.Second), tunnel.DefaultMaxQueueBytes)
		}
	}
}

// errorLines are the log lines at level ERROR.
func errorLines(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	return out
}

// curves summarises each daemon's samples: start, peak and end values.
func curves(daemons []*daemon) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s %-22s %-16s %-13s %-22s %s\n", "daemon", "RSS MiB start/max/end", "goroutines", "open files", "peers", "queued bytes max")
	for _, d := range daemons {
		d.mu.Lock()
		ss := d.samples
		d.mu.Unlock()
		if len(ss) == 0 {
			continue
		}
		s0, sn := ss[0], ss[len(ss)-1]
		var rss, peers, queued uint64
		var gr int
		for _, s := range ss {
			rss, peers, queued, gr = max(rss, s.rss), max(peers, s.peers), max(queued, s.queued), max(gr, s.goroutines)
		}
		mb := func(v uint64) float64 { return float64(v) / (1 << 20) }
		fmt.Fprintf(&b, "%-7s %5.1f/%5.1f/%5.1f      %3d/%3d/%3d      %3d -> %3d     %5d/%5d/%5d      %d\n", d.name,
			mb(s0.rss), mb(rss), mb(sn.rss), s0.goroutines, gr, sn.goroutines, s0.fds, sn.fds, s0.peers, peers, sn.peers, queued)
	}
	return b.String()
}

// writeCSV keeps every sample next to the daemons' logs, for plotting.
func writeCSV(t *testing.T, path string, daemons []*daemon) {
	var b strings.Builder
	b.WriteString("daemon,seconds,rss_bytes,goroutines,open_fds,peers,queued_bytes,state\n")
	for _, d := range daemons {
		d.mu.Lock()
		for _, s := range d.samples {
			fmt.Fprintf(&b, "%s,%.0f,%d,%d,%d,%d,%d,%s\n", d.name, s.at.Seconds(), s.rss, s.goroutines, s.fds, s.peers, s.queued, s.state)
		}
		d.mu.Unlock()
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("samples: %v", err)
	}
	t.Logf("samples in %s (kept with the logs when the test fails, or under $MIREDO_LAB_LOGDIR)", path)
}

// natNames name the soak's NATs in clients' order (lab.Options above).
var natNames = [2]string{"the port-restricted NAT", "the full-cone NAT"}

// Ages of a churn pair's path, by what the clients' peer entries for each
// other hold: valid (a packet within 30 s, RFC 4380 §5.2.4), kept but
// stale (the entry lives a minute after its last use), or gone.
const (
	pathValid = 30 * time.Second
	pathKept  = 61 * time.Second
	// floodShadow is how long after a flood began a try counts as "after
	// a flood": the flood's sending, and the queues it filled, are over
	// well within it.
	floodShadow = 30 * time.Second
)

// churnTry is one churn ping and what it met.
type churnTry struct {
	at       time.Duration // since the soak began
	from, to string
	fromCone bool // from the full-cone NAT's side to the port-restricted one's
	// idle is how long the pair had been silent since its last try
	// (either direction), -1 if it never talked.
	idle time.Duration
	// sinceFlood is how long before this try the last flood began, -1
	// before the first; flood is that flood's number.
	sinceFlood time.Duration
	flood      int
	ok         bool
}

func (c churnTry) direction() string {
	if c.fromCone {
		return "full-cone -> port-restricted"
	}
	return "port-restricted -> full-cone"
}

// path names the state the pair's path was in.
func (c churnTry) path() string {
	switch {
	case c.idle < 0 || c.idle >= pathKept:
		return "new path"
	case c.idle < pathValid:
		return "path idle <30s"
	}
	return "path idle 30-61s"
}

func (c churnTry) afterFlood() bool { return c.sinceFlood >= 0 && c.sinceFlood < floodShadow }

func (c churnTry) describe() string {
	s := c.direction() + ", " + c.path()
	if c.idle >= 0 {
		s += fmt.Sprintf(" (talked %v before)", c.idle.Round(time.Second))
	}
	if c.sinceFlood >= 0 {
		s += fmt.Sprintf(", %v after flood %d began", c.sinceFlood.Round(time.Second), c.flood)
	}
	return s
}

// churnReport tabulates misses over tries by direction and path state,
// and by whether a flood had just begun.
func churnReport(tries []churnTry) string {
	paths := []string{"new path", "path idle <30s", "path idle 30-61s"}
	type cell struct{ miss, n int }
	cells := map[[2]string]*cell{}
	var flood, calm cell
	for _, c := range tries {
		k := [2]string{c.direction(), c.path()}
		if cells[k] == nil {
			cells[k] = &cell{}
		}
		f := &calm
		if c.afterFlood() {
			f = &flood
		}
		cells[k].n++
		f.n++
		if !c.ok {
			cells[k].miss++
			f.miss++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-30s", "misses/tries")
	for _, p := range paths {
		fmt.Fprintf(&b, " %18s", p)
	}
	b.WriteString("\n")
	for _, d := range []string{"full-cone -> port-restricted", "port-restricted -> full-cone"} {
		fmt.Fprintf(&b, "%-30s", d)
		for _, p := range paths {
			c := cells[[2]string{d, p}]
			if c == nil {
				c = &cell{}
			}
			fmt.Fprintf(&b, " %18s", fmt.Sprintf("%d/%d", c.miss, c.n))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "within %v after a flood began: %d/%d; otherwise %d/%d\n", floodShadow, flood.miss, flood.n, calm.miss, calm.n)
	return b.String()
}

// slrCounters are the engine counters that tell how clients refresh a
// silent path (RFC 6081 §5.7) and what floods cost their peer tables.
var slrCounters = []string{"solicitations", "advertisements", "indirect_saved", "solicitations_unanswered",
	"indirect_bubbles", "created", "evicted", "drop_peer_limited", "drop_table_full"}

// engineSums adds up some engine counters over a group of clients.
func engineSums(ctx context.Context, group []*daemon, keys []string) string {
	sums := make([]float64, len(keys))
	for _, d := range group {
		raw, err := control.Query(ctx, d.sock, control.Request{Command: control.CommandStatus})
		if err != nil {
			return err.Error()
		}
		var r struct {
			Counters struct {
				Engine map[string]float64 `json:"engine"`
			} `json:"counters"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Sprintf("%s: %v", d.name, err)
		}
		for i, k := range keys {
			sums[i] += r.Counters.Engine[k]
		}
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.0f", k, sums[i])
	}
	return strings.Join(parts, " ")
}

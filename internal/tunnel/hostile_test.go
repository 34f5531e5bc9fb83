// SPDX-License-Identifier: MIT

package tunnel

import (
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// attacker is a host that saw one of our bubbles on the wire (or guessed a
// mapping): a global address that is no peer's mapping.
var attacker = netip.MustParseAddrPort("203.0.113.66:6666")

// ourLL is the link-local source en bubbles peer a from, back key epochs
// before the current one.
func ourLL(en *env, a netip.Addr, back uint32) netip.Addr {
	k := a.As16()
	return en.e.bubbleSource(&k, epochOf(en.e.now())-back)
}

// TestHMACBubble: a bubble addressed to the link-local source we bubble a
// peer from verifies a mapping other than the one its address names (a
// peer behind a symmetric NAT) only while a bubble of ours to that peer is
// outstanding, and never moves a trusted peer heard from in the last 30 s.
func TestHMACBubble(t *testing.T) {
	probed := func(en *env) { en.tun(pkt(native, peerAddr, 8)) } // one bubble out, packet queued
	cases := []struct {
		name  string
		mode  Mode
		setup func(en *env)
		from  netip.AddrPort
		want  verdict
		// where the peer's mapping must point afterwards (zero: no entry)
		mapping netip.AddrPort
		// the bubble's destination is our source this many key epochs ago
		back uint32
	}{
		{"answer to our bubble", ConeRelay, probed, peerMap2, consumed, peerMap2, 0},
		{"answer 29 s after our bubble", ConeRelay, func(en *env) { probed(en); en.clk.advance(29 * time.Second) },
			peerMap2, consumed, peerMap2, 0},
		{"no bubble outstanding: trusted peer heard now", ConeRelay, func(en *env) { en.trust(peerAddr, peerMap) },
			attacker, drop(DropMismatch), peerMap, 0},
		{"bubble outstanding but trusted peer heard now", ConeRelay, func(en *env) {
			probed(en)
			en.trust(peerAddr, peerMap)
		}, attacker, drop(DropMismatch), peerMap, 0},
		{"our bubble is 31 s old", ConeRelay, func(en *env) { probed(en); en.clk.advance(31 * time.Second) },
			attacker, drop(DropMismatch), peerMap, 0},
		{"client: trusted peer heard now", Client, func(en *env) { en.trust(peerAddr, peerMap) },
			attacker, drop(DropMismatch), peerMap, 0},
		{"client: no entry", Client, nil, attacker, drop(DropMismatch), netip.AddrPort{}, 0},
		{"client: answer to our bubble", Client, func(en *env) { en.tun(pkt(selfAddr, peerAddr, 8)) },
			peerMap2, consumed, peerMap2, 0},
		{"answer across a key rotation", ConeRelay, func(en *env) {
			en.clk.advance(keyEpochTicks/ticksPerSecond*time.Second - time.Second)
			probed(en)
			en.clk.advance(2 * time.Second)
		}, peerMap2, consumed, peerMap2, 1},
		{"source two key epochs old", ConeRelay, func(en *env) {
			en.clk.advance(2 * keyEpochTicks / ticksPerSecond * time.Second)
			probed(en)
		}, peerMap2, drop(DropMismatch), peerMap, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, tc.mode)
			if tc.setup != nil {
				tc.setup(en)
			}
			if v := en.udp(bubble(peerAddr, ourLL(en, peerAddr, tc.back)), tc.from); v != tc.want {
				t.Errorf("verdict %+v (%v), want %+v (%v)", v, v.reason, tc.want, tc.want.reason)
			}
			p, ok := en.peer(peerAddr)
			if got := p.mapping(); ok != tc.mapping.IsValid() || ok && got != tc.mapping {
				t.Errorf("peer %v at %v, want at %v", ok, got, tc.mapping)
			}
		})
	}
}

// TestNativeSourceBubble: a bubble from a native source is nobody's answer
// (our connectivity tests are answered by echo replies), so it is dropped
// and costs nothing: no entry, no test.
func TestNativeSourceBubble(t *testing.T) {
	for _, dst := range []netip.Addr{selfAddr, native2, netip.MustParseAddr("fe80::1")} {
		en := newEnv(t, Client)
		v := en.udp(bubble(native, dst), attacker)
		if v != drop(DropNativeBubble) || len(en.out.UDP) != 0 {
			t.Errorf("to %v: %+v (%v), sent to %v", dst, v, v.reason, en.sentTo())
		}
		if st := en.e.Stats(); st.Peers != 0 || st.Pings != 0 {
			t.Errorf("to %v: %d peers, %d pings", dst, st.Peers, st.Pings)
		}
	}
}

// TestTickIncomingOnlyQueue: packets from an unverified native source get
// one connectivity test and wait for its answer, but Tick does not repeat
// it (a spoofed source must not make us send four); once the answer is
// overdue they are dropped, with no ICMPv6 error to the host. A queue that
// also holds a host packet is repeated as usual.
func TestTickIncomingOnlyQueue(t *testing.T) {
	cases := []struct {
		name      string
		outgoing  bool // the host sends to the peer too
		wantPings uint64
	}{
		{"incoming only", false, 1},
		{"incoming then outgoing", true, maxProbes},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, Client)
			if v := en.udp(pkt(native, selfAddr, 8), relayMap); v != queuedV {
				t.Fatalf("incoming: %+v", v)
			}
			if tc.outgoing {
				en.tun(pkt(selfAddr, native, 8))
			}
			local := 0
			for range 5 {
				en.clk.advance(2 * time.Second)
				en.tick()
				local += len(en.out.Local)
			}
			st := en.e.Stats()
			if st.Pings != tc.wantPings {
				t.Errorf("%d pings, want %d", st.Pings, tc.wantPings)
			}
			if st.QueuedBytes != 0 || st.Dropped[DropQueueExpired] == 0 {
				t.Errorf("queue not expired: %+v", st)
			}
			if want := map[bool]int{false: 0, true: 1}[tc.outgoing]; local != want {
				t.Errorf("%d packets to the host, want %d", local, want)
			}
		})
	}
}

// TestIncomingTestBudget: datagrams from unverified native sources trigger
// at most 10 connectivity tests at once and 10 a second after that, all
// sources together; the rest are dropped before they take a table entry.
func TestIncomingTestBudget(t *testing.T) {
	en := newEnv(t, Client)
	src := func(i int) netip.Addr {
		a := native.As16()
		a[14], a[15] = byte(i>>8), byte(i)
		return netip.AddrFrom16(a)
	}
	flood := func(from, n int) (pings int) {
		for i := range n {
			en.udp(pkt(src(from+i), selfAddr, 8), relayMap)
			pings += len(en.out.UDP)
		}
		return pings
	}
	if n := flood(0, 100); n != 10 {
		t.Fatalf("%d tests for 100 spoofed sources at once, want 10", n)
	}
	if st := en.e.Stats(); st.Peers != 10 || st.Dropped[DropProbeLimited] != 90 || st.PingsLimited != 90 {
		t.Errorf("%d entries, want 10; %d dropped, %d limited, want 90", st.Peers, st.Dropped[DropProbeLimited], st.PingsLimited)
	}
	en.clk.advance(500 * time.Millisecond)
	if n := flood(100, 100); n != 5 {
		t.Fatalf("%d tests half a second later, want 5", n)
	}
	en.clk.advance(10 * time.Second)
	if n := flood(200, 100); n != 10 {
		t.Fatalf("%d tests after a pause, want 10 (the burst)", n)
	}
}

// TestHostTestBudget: the host's own connectivity tests have a budget of
// their own (an incoming flood cannot use it up); tests it refuses are not
// lost but sent by Tick when tokens come back.
func TestHostTestBudget(t *testing.T) {
	en := newEnv(t, Client)
	dst := func(i int) netip.Addr {
		a := native.As16()
		a[14], a[15] = 0x10, byte(i)
		return netip.AddrFrom16(a)
	}
	// A flood of spoofed native sources uses up the other budget.
	for i := range 50 {
		en.udp(pkt(dst(100+i), selfAddr, 8), relayMap)
	}
	pings := 0
	for i := range 15 {
		if v := en.tun(pkt(selfAddr, dst(i), 8)); v != queuedV {
			t.Fatalf("packet %d: %+v", i, v)
		}
		pings += len(en.out.UDP)
	}
	if pings != 10 {
		t.Fatalf("%d tests at once, want 10", pings)
	}
	en.clk.advance(time.Second)
	en.tick()
	if len(en.out.UDP) != 5 {
		t.Fatalf("Tick sent %d refused tests, want 5", len(en.out.UDP))
	}
	for i := range 15 {
		if p, _ := en.peer(dst(i)); p.probes != 1 {
			t.Errorf("peer %d: %d tests", i, p.probes)
		}
	}
}

// TestOriginReplyBubble: a packet from our server with an origin indication
// makes a client bubble the origin (to open its NAT) only when it is
// addressed to us, at most once per origin every 2 s, and 10 a second in
// all: a forger of our server's address cannot aim our bubbles at a third
// party at will. These are RFC 4380's rules, with RFC 6081's extensions
// off; TestIndirectBubbleBudget holds the extensions to the same budget.
func TestOriginReplyBubble(t *testing.T) {
	legacy := func(c *Config) { c.Disable = AllExtensions }
	withOrigin := func(origin netip.AddrPort, p []byte) []byte { return append(proto.AppendOrigin(nil, origin), p...) }
	origin := func(i int) netip.AddrPort { return netip.AddrPortFrom(attacker.Addr(), uint16(1000+i)) }
	type step struct {
		after time.Duration
		pkt   []byte
		want  verdict
		reply bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"bubble to us", []step{{0, withOrigin(peerMap, bubble(peerAddr, selfAddr)), consumed, true}}},
		{"bubble to someone else", []step{{0, withOrigin(attacker, bubble(peerAddr, native2)), drop(DropBadDst), false}}},
		{"bubble to a Teredo address not ours", []step{
			{0, withOrigin(attacker, bubble(peerAddr, teredoAddr(serverIP, peerMap2))), drop(DropBadDst), false}}},
		{"packet to someone else", []step{{0, withOrigin(attacker, pkt(peerAddr, native2, 8)), drop(DropBadDst), false}}},
		{"same origin within 2 s", []step{
			{0, withOrigin(attacker, bubble(peerAddr, selfAddr)), consumed, true},
			{1900 * time.Millisecond, withOrigin(attacker, bubble(peerAddr, selfAddr)), consumed, false},
			{100 * time.Millisecond, withOrigin(attacker, bubble(peerAddr, selfAddr)), consumed, true},
		}},
		{"another origin within 2 s", []step{
			{0, withOrigin(attacker, bubble(peerAddr, selfAddr)), consumed, true},
			{0, withOrigin(peerMap, bubble(peerAddr, selfAddr)), consumed, true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, Client, legacy)
			for i, s := range tc.steps {
				en.clk.advance(s.after)
				if v := en.udp(s.pkt, server); v != s.want {
					t.Errorf("step %d: %+v (%v), want %+v (%v)", i, v, v.reason, s.want, s.want.reason)
				}
				if got := len(en.out.UDP) == 1; got != s.reply || len(en.out.UDP) > 1 {
					t.Errorf("step %d: sent to %v, want a reply: %v", i, en.sentTo(), s.reply)
				}
			}
		})
	}

	// Many origins at once: 10, then 10 a second.
	en := newEnv(t, Client, legacy)
	replies := func(from, n int) (r int) {
		for i := range n {
			en.udp(withOrigin(origin(from+i), bubble(peerAddr, selfAddr)), server)
			r += len(en.out.UDP)
		}
		return r
	}
	if n := replies(0, 100); n != 10 {
		t.Errorf("%d replies to 100 origins at once, want 10", n)
	}
	en.clk.advance(time.Second)
	if n := replies(100, 100); n != 10 {
		t.Errorf("%d replies a second later, want 10", n)
	}
	if st := en.e.Stats(); st.ReplyBubbles != 20 || st.RepliesLimited != 180 {
		t.Errorf("%d replies, %d limited, want 20 and 180", st.ReplyBubbles, st.RepliesLimited)
	}
}

// pinned is the memory queued packets hold: the whole buffer each sits in.
func pinned(e *Engine) (bytes, packets int) {
	for i := range e.table.shards {
		s := &e.table.shards[i]
		s.mu.Lock()
		for _, q := range s.queues {
			for _, it := range q.items {
				if it.buf != nil {
					bytes += len(it.buf.b)
				} else {
					bytes += cap(it.data)
				}
				packets++
			}
		}
		s.mu.Unlock()
	}
	return bytes, packets
}

// TestQueueChargesBuffers: the queue budgets count the buffers packets are
// held in, not their length, so small packets cannot pin many times the
// budget; packets still fit by size (small ones take small buffers).
func TestQueueChargesBuffers(t *testing.T) {
	const budget = 256 << 10
	cases := []struct {
		name string
		size int // IPv6 payload bytes
	}{
		{"tiny", 8},
		{"SYN", 40},
		{"half", 600},
		{"full", 1280 - proto.IPv6HeaderLen},
		{"jumbo", 3000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, ConeRelay, func(c *Config) { c.MaxPeers = 1 << 16; c.MaxQueueBytes = budget; c.PeerQueueBytes = 8192 })
			n := 0
			for i := range 1 << 14 {
				if en.tun(pkt(native, nth(i), tc.size)) == drop(DropQueueFull) {
					break
				}
				n++
			}
			got, packets := pinned(en.e)
			st := en.e.Stats()
			t.Logf("%d-byte packets: %d queued, %d bytes pinned, %d charged", tc.size+proto.IPv6HeaderLen, packets, got, st.QueuedBytes)
			if got > budget || uint64(got) > st.QueuedBytes {
				t.Errorf("%d bytes pinned, %d charged, budget %d", got, st.QueuedBytes, budget)
			}
			if packets < budget/(4*(tc.size+proto.IPv6HeaderLen)+256) {
				t.Errorf("only %d packets fit", packets)
			}
		})
	}
}

// TestQueueDropAccounting: a dropped queue is counted under the reason it
// was dropped for, on the counters of the goroutine that dropped it.
func TestQueueDropAccounting(t *testing.T) {
	cases := []struct {
		name    string
		mode    Mode
		run     func(en *env)
		counter func(e *Engine) *counters
		why     DropReason
	}{
		{"evicted by a host packet", ConeRelay, func(en *env) {
			en.tun(pkt(native, peerAddr, 8))
			en.tun(pkt(native, teredoAddr(serverIP, peerMap2), 8))
		}, func(e *Engine) *counters { return &e.st.tun }, DropQueueEvicted},
		{"evicted by a datagram", Client, func(en *env) {
			en.udp(pkt(native, selfAddr, 8), relayMap)
			en.udp(pkt(peerAddr, selfAddr, 8), peerMap)
		}, func(e *Engine) *counters { return &e.st.udp }, DropQueueEvicted},
		{"reset by a new address", Client, func(en *env) {
			en.tun(pkt(selfAddr, peerAddr, 8))
			en.e.SetSelf(Self{Addr: teredoAddr(serverIP, peerMap2), Server: server})
		}, func(e *Engine) *counters { return &e.st.tick }, DropQueueReset},
		{"given up at Tick", ConeRelay, func(en *env) {
			en.tun(pkt(native, peerAddr, 8))
			for range 5 {
				en.clk.advance(2 * time.Second)
				en.tick()
			}
		}, func(e *Engine) *counters { return &e.st.tick }, DropQueueExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, tc.mode, func(c *Config) { c.MaxPeers = 1 })
			tc.run(en)
			st := en.e.Stats()
			var want [NumDropReasons]uint64
			want[tc.why] = 1
			if st.Dropped != want {
				t.Errorf("dropped %v, want one %v", st.Dropped, tc.why)
			}
			if n := tc.counter(en.e).dropped[tc.why].Load(); n != 1 {
				t.Errorf("%d on the caller's counters, want 1", n)
			}
		})
	}
}

// TestBudgetSurvivesChurn: a peer that used up its 4 bubbles keeps that
// budget for 300 s after the last one even if its entry goes away
// meanwhile, evicted by a flood of other destinations or expired while
// idle: recreating it must not buy 4 more bubbles (§5.2.6).
func TestBudgetSurvivesChurn(t *testing.T) {
	cases := []struct {
		name   string
		remove func(en *env)
	}{
		{"evicted by a flood", func(en *env) {
			for i := range 50 {
				en.tun(pkt(native, nth(1000+i), 8))
			}
		}},
		{"expired while idle", func(en *env) {
			en.clk.advance(time.Duration(idleTicks/ticksPerSecond)*time.Second + time.Second)
			en.tick()
		}},
	}
	p := pkt(native, peerAddr, 8)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			en := newEnv(t, RestrictedRelay, func(c *Config) { c.MaxPeers = 16 })
			en.tun(p)
			for range maxProbes {
				en.clk.advance(2 * time.Second)
				en.tick()
			}
			last := en.clk.t.Add(-2 * time.Second) // the fourth bubble
			if v := en.tun(p); v != drop(DropUnreachable) {
				t.Fatalf("budget not used up: %+v", v)
			}
			tc.remove(en)
			if _, ok := en.peer(peerAddr); ok {
				t.Fatal("entry still there")
			}
			if v := en.tun(p); v != drop(DropUnreachable) || len(en.out.UDP) != 0 {
				t.Fatalf("recreated: %+v, sent to %v", v, en.sentTo())
			}
			// 300 s after the last bubble the budget starts afresh.
			en.clk.t = last.Add(probeWindow/ticksPerSecond*time.Second + time.Second)
			en.tick() // expires the entry: the memory must not outlive the window either
			if v := en.tun(p); v != queuedV || len(en.out.UDP) != 2 {
				t.Fatalf("after 300 s: %+v, sent to %v", v, en.sentTo())
			}
		})
	}
}

// TestBudgetMemo: what the budget memory keeps when two addresses share a
// slot, and what a new entry gets back.
func TestBudgetMemo(t *testing.T) {
	en := newEnv(t, ConeRelay)
	a := peerAddr.As16()
	s := en.e.table.shardOf(&a)
	slot := addrHash(&a, s.seed) % budgetSlots
	var b [16]byte // another address in the same slot
	for i := 0; ; i++ {
		if b = nth(i).As16(); addrHash(&b, s.seed)%budgetSlots == slot && b != a {
			break
		}
	}
	const now = tick(10_000)
	cases := []struct {
		name    string
		first   peer // removed first
		then    peer // then removed
		restore *[16]byte
		want    uint8 // probes a new entry for restore starts with
	}{
		{"used budget comes back", peer{addr: a, probes: 4, lastTx: now - 10}, peer{}, &a, 4},
		{"other address gets nothing", peer{addr: a, probes: 4, lastTx: now - 10}, peer{}, &b, 0},
		{"less used neighbour does not wash it out", peer{addr: a, probes: 4, lastTx: now - 10}, peer{addr: b, probes: 1, lastTx: now}, &a, 4},
		{"more used neighbour takes the slot", peer{addr: a, probes: 1, lastTx: now - 10}, peer{addr: b, probes: 4, lastTx: now}, &b, 4},
		{"stale record gives way", peer{addr: a, probes: 4, lastTx: now - probeWindow - 1}, peer{addr: b, probes: 1, lastTx: now}, &b, 1},
		{"answered since: forgotten", peer{addr: a, probes: 3, lastTx: now - 10}, peer{addr: a}, &a, 0},
		{"untouched entry leaves no record", peer{addr: a}, peer{}, &a, 0},
		{"older than the window", peer{addr: a, probes: 4, lastTx: now - probeWindow - 1}, peer{}, &a, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.memo = [budgetSlots]budgetMemo{}
			s.remember(&tc.first, now)
			if tc.then.addr != ([16]byte{}) {
				s.remember(&tc.then, now)
			}
			i, _ := s.insert(tc.restore, now, queueDrop{en.e, &en.e.st.tick})
			defer s.remove(i, now, queueDrop{en.e, &en.e.st.tick}, DropQueueExpired)
			if got := s.peers[i].probes; got != tc.want {
				t.Errorf("new entry starts with %d probes, want %d", got, tc.want)
			}
			s.peers[i].probes = 0 // leave no record behind
		})
	}
}

// TestSetSelfConcurrent: requalification (SetSelf, from the client's
// maintenance goroutine) while both directions and the timer run (run with
// -race). Afterwards the books balance: a new address leaves no entry and
// no queued byte behind.
func TestSetSelfConcurrent(t *testing.T) {
	var randMu sync.Mutex
	r := detRand()
	en := newEnv(t, Client, func(c *Config) {
		c.MaxPeers = 64 // evictions too
		c.Rand = func(b []byte) { randMu.Lock(); defer randMu.Unlock(); r(b) }
	})
	e := en.e
	var clkMu sync.Mutex
	now := en.clk.t
	e.cfg.Now = func() time.Time { clkMu.Lock(); defer clkMu.Unlock(); return now }
	selves := []Self{
		{Addr: selfAddr, Server: server},
		{Addr: teredoAddr(serverIP, peerMap2), Server: server, Cone: true},
		{},
	}
	const n = 3000
	var wg, data sync.WaitGroup
	wg.Add(4)
	data.Add(2)
	done := make(chan struct{})
	go func() { data.Wait(); close(done) }()
	go func() { // Teredo -> host: Teredo peers, native peers, bubbles via the server
		defer wg.Done()
		defer data.Done()
		var out Out
		for i := range n {
			out.Reset()
			dst := selves[i%2].Addr
			a := nth(i % 100)
			m, _ := proto.ParseAddress(a)
			switch i % 3 {
			case 0:
				e.FromUDP(pkt(a, dst, 40), m.Mapping(), &out)
			case 1:
				src := native.As16()
				src[15] = byte(i)
				e.FromUDP(pkt(netip.AddrFrom16(src), dst, 40), relayMap, &out)
			case 2:
				e.FromUDP(append(proto.AppendOrigin(nil, m.Mapping()), bubble(a, dst)...), server, &out)
			}
		}
	}()
	go func() { // host -> Teredo
		defer wg.Done()
		defer data.Done()
		var out Out
		for i := range n {
			out.Reset()
			src := selves[i%2].Addr
			if i%2 == 0 {
				e.FromTunnel(pkt(src, nth(i%100), 40), &out)
			} else {
				e.FromTunnel(pkt(src, native2, 40), &out)
			}
		}
	}()
	var resets int
	go func() { // maintenance: requalifies as long as traffic flows
		defer wg.Done()
		for i := range 1_000_000 {
			select {
			case <-done:
				return
			default:
			}
			e.SetSelf(selves[i%len(selves)])
			resets++
			runtime.Gosched()
		}
	}()
	go func() { // timer
		defer wg.Done()
		var out Out
		for range 100 {
			out.Reset()
			clkMu.Lock()
			now = now.Add(700 * time.Millisecond)
			clkMu.Unlock()
			e.Tick(&out)
			_ = e.Stats()
		}
	}()
	wg.Wait()
	e.SetSelf(Self{Addr: teredoAddr(serverIP, relay2Map), Server: server})
	st := e.Stats()
	t.Logf("%d SetSelf calls; %d created, %d queued, %d queue_reset, %d pings", resets, st.Created, st.Queued, st.Dropped[DropQueueReset], st.Pings)
	if st.FromUDP != n || st.FromTunnel != n || st.Peers != 0 || st.QueuedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// SPDX-License-Identifier: MIT

package tunnel

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// TestQueueBounds: per-peer and global byte budgets (charged what each
// packet holds), FIFO order (Miredo sends LIFO), copies that survive the
// caller's buffer reuse, and buffers returned at Reset.
func TestQueueBounds(t *testing.T) {
	c400, c600, c200 := queueCost(400), queueCost(600), queueCost(200)
	en := newEnv(t, ConeRelay, func(c *Config) {
		c.PeerQueueBytes = 2*c400 + 100
		c.MaxQueueBytes = 2*c400 + c600 + c200 - 1
	})
	var sentPkts [][]byte
	for i := range 3 {
		p := pkt(native, peerAddr, 400-proto.IPv6HeaderLen)
		p[proto.IPv6HeaderLen] = byte(i)
		v := en.tun(p)
		if i < 2 && v != queuedV || i == 2 && v != drop(DropQueueFull) {
			t.Fatalf("packet %d: %+v", i, v)
		}
		if i < 2 {
			sentPkts = append(sentPkts, append([]byte(nil), p...))
		}
		clear(p) // the caller reuses its buffer
	}
	// A second peer takes 600 bytes; then the global budget is used up.
	other := teredoAddr(serverIP, peerMap2)
	if v := en.tun(pkt(native, other, 600-proto.IPv6HeaderLen)); v != queuedV {
		t.Fatalf("second peer: %+v", v)
	}
	third := teredoAddr(serverIP, relayMap)
	if v := en.tun(pkt(native, third, 200-proto.IPv6HeaderLen)); v != drop(DropQueueFull) {
		t.Fatalf("past the global budget: %+v", v)
	}
	if st := en.e.Stats(); st.QueuedBytes != uint64(2*c400+c600) {
		t.Fatalf("queued %d bytes", st.QueuedBytes)
	}
	en.udp(bubble(peerAddr, native), peerMap)
	if len(en.out.UDP) != 2 {
		t.Fatalf("flushed %d", len(en.out.UDP))
	}
	for i, m := range en.out.UDP {
		if string(m.Buf[:m.N]) != string(sentPkts[i]) {
			t.Fatalf("packet %d out of order or damaged", i)
		}
	}
	if len(en.out.held) != 2 {
		t.Fatalf("out holds %d pooled buffers", len(en.out.held))
	}
	en.out.Reset()
	if len(en.out.held) != 0 || en.e.Stats().QueuedBytes != uint64(c600) {
		t.Fatalf("after Reset: %d held, %d queued", len(en.out.held), en.e.Stats().QueuedBytes)
	}
}

// TestQueueCost: the smallest buffer that holds the packet, plus the slot.
func TestQueueCost(t *testing.T) {
	for _, tc := range []struct{ n, buf int }{
		{1, 128}, {48, 128}, {128, 128}, {129, 256}, {1280, 2048}, {2048, 2048}, {2049, 2049}, {9000, 9000},
	} {
		if got := queueCost(tc.n); got != tc.buf+slotBytes {
			t.Errorf("queueCost(%d) = %d, want %d+%d", tc.n, got, tc.buf, slotBytes)
		}
		if tc.n <= qbufSize {
			if b := newBufPools()[bufClass(tc.n)].Get().(*qbuf); len(b.b) != tc.buf {
				t.Errorf("a %d-byte packet gets a %d-byte buffer, want %d", tc.n, len(b.b), tc.buf)
			}
		}
	}
}

// TestLargePacketQueued: a packet larger than a pooled buffer (MTU raised)
// is queued in a buffer of its own.
func TestLargePacketQueued(t *testing.T) {
	en := newEnv(t, ConeRelay, func(c *Config) { c.PeerQueueBytes = 8000 })
	p := pkt(native, peerAddr, 3000)
	if v := en.tun(p); v != queuedV {
		t.Fatal(v)
	}
	en.udp(bubble(peerAddr, native), peerMap)
	if len(en.out.UDP) != 1 || en.out.UDP[0].N != len(p) || len(en.out.held) != 0 {
		t.Fatalf("%d out, %d held", len(en.out.UDP), len(en.out.held))
	}
}

// nth returns a distinct Teredo address behind a global IPv4 address.
func nth(i int) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], 0xC6336400+uint32(i>>15)) // 198.51.100.x
	return teredoAddr(serverIP, netip.AddrPortFrom(netip.AddrFrom4(a), 1024+uint16(i&0x7fff)))
}

// activate makes peer i trusted and in use (verified, sent to).
func activate(en *env, i int) {
	en.trust(nth(i), peerMap)
	en.tun(pkt(native, nth(i), 8))
}

// TestFloodKeepsActivePeers: a flood of new destinations (spoofed native
// senders) churns only the probation list; trusted peers in use stay; when
// nothing but active peers is left, newcomers are refused; idle ones can be
// evicted.
func TestFloodKeepsActivePeers(t *testing.T) {
	const max = 1024
	en := newEnv(t, ConeRelay, func(c *Config) { c.MaxPeers = max })
	for i := range 1000 {
		activate(en, i)
	}
	for i := range 20000 {
		en.tun(pkt(native, nth(100000+i), 8))
	}
	st := en.e.Stats()
	if st.Peers > max {
		t.Fatalf("%d peers, bound %d", st.Peers, max)
	}
	for i := range 1000 {
		if p, ok := en.peer(nth(i)); !ok || !p.has(fTrusted) {
			t.Fatalf("active peer %d evicted", i)
		}
	}
	if st.Evicted < 19000 || st.Dropped[DropTableFull] != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Fill the rest with active peers: newcomers are refused.
	for i := 1000; i < max; i++ {
		activate(en, i)
	}
	if v := en.tun(pkt(native, nth(500000), 8)); v != drop(DropTableFull) {
		t.Fatalf("full of active peers: %+v", v)
	}
	// Active peers stay active while they talk; after 31 s of silence the
	// oldest idle one makes room.
	en.clk.advance(31 * time.Second)
	if v := en.tun(pkt(native, nth(500000), 8)); v != queuedV {
		t.Fatalf("idle peers not evicted: %+v", v)
	}
}

// TestSpoofedSourcesCreateNothing: the relay never learns a peer from a
// packet it did not ask for, however well the mapping matches.
func TestSpoofedSourcesCreateNothing(t *testing.T) {
	en := newEnv(t, ConeRelay)
	for i := range 5000 {
		a := nth(i)
		m, _ := proto.ParseAddress(a)
		en.udp(pkt(a, native, 8), m.Mapping())
	}
	if st := en.e.Stats(); st.Peers != 0 || st.Dropped[DropUnknownPeer] != 5000 {
		t.Fatalf("stats %+v", st)
	}
}

// TestClientFloodKeepsActivePeers: a client learns Teredo peers from
// packets they send, so a spoofing flood creates entries, but on probation:
// peers we talk to stay.
func TestClientFloodKeepsActivePeers(t *testing.T) {
	const max = 1024
	en := newEnv(t, Client, func(c *Config) { c.MaxPeers = max })
	en.trust(native, relayMap)
	en.tun(pkt(selfAddr, native, 8)) // in use
	for i := range 10000 {
		a := nth(i)
		m, _ := proto.ParseAddress(a)
		en.udp(pkt(a, selfAddr, 8), m.Mapping())
	}
	if st := en.e.Stats(); st.Peers > max {
		t.Fatalf("%d peers", st.Peers)
	}
	if p, ok := en.peer(native); !ok || !p.has(fTrusted) {
		t.Fatal("active peer evicted")
	}
}

// TestShardBound: with many shards the bound still holds overall.
func TestShardBound(t *testing.T) {
	const max = 1 << 17
	en := newEnv(t, ConeRelay, func(c *Config) { c.MaxPeers = max })
	if n := len(en.e.table.shards); n != 64 {
		t.Fatalf("%d shards", n)
	}
	for i := range 2 * max {
		en.tun(pkt(native, nth(i), 8))
	}
	if st := en.e.Stats(); st.Peers > max || st.Peers < max-64 {
		t.Fatalf("%d peers for a bound of %d", st.Peers, max)
	}
}

// TestIdlePeerMemory: an idle peer costs at most 200 bytes.
func TestIdlePeerMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 200k peers")
	}
	const n = 200_000
	got := idlePeerBytes(n)
	t.Logf("%.0f bytes per idle peer (%d peers)", got, n)
	if got > 200 {
		t.Errorf("%.0f bytes per idle peer, want at most 200", got)
	}
}

// idlePeerBytes fills a table with n trusted idle peers and returns the
// heap growth per peer.
func idlePeerBytes(n int) float64 {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	e := New(Config{Mode: ConeRelay, Now: clk.now, Rand: detRand(), MaxPeers: n})
	for i := range n {
		k := nth(i).As16()
		s := e.table.shardOf(&k)
		s.mu.Lock()
		idx, _ := s.insert(&k, e.now(), queueDrop{e, &e.st.tick})
		s.peers[idx].flags |= fTrusted
		s.mu.Unlock()
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	runtime.KeepAlive(e)
	return float64(ms1.HeapAlloc-ms0.HeapAlloc) / float64(n)
}

// TestConcurrentDirections runs both directions and the timer at once (run
// with -race): each goroutine has its own Out, as the daemons do.
func TestConcurrentDirections(t *testing.T) {
	en := newEnv(t, Client)
	e := en.e
	var clkMu sync.Mutex
	now := en.clk.t
	e.cfg.Now = func() time.Time { clkMu.Lock(); defer clkMu.Unlock(); return now }
	var wg sync.WaitGroup
	const n = 3000
	wg.Add(3)
	go func() {
		defer wg.Done()
		var out Out
		for i := range n {
			out.Reset()
			e.FromTunnel(pkt(selfAddr, nth(i%200), 40), &out)
		}
	}()
	go func() {
		defer wg.Done()
		var out Out
		for i := range n {
			out.Reset()
			a := nth(i % 200)
			m, _ := proto.ParseAddress(a)
			e.FromUDP(pkt(a, selfAddr, 40), m.Mapping(), &out)
		}
	}()
	go func() {
		defer wg.Done()
		var out Out
		for range 100 {
			out.Reset()
			clkMu.Lock()
			now = now.Add(500 * time.Millisecond)
			clkMu.Unlock()
			e.Tick(&out)
			_ = e.Stats()
		}
	}()
	wg.Wait()
	st := e.Stats()
	if st.FromTunnel != n || st.FromUDP != n {
		t.Fatalf("stats %+v", st)
	}
}

// TestClientSpoofedFlood: 200,000 bubbles, each from its own spoofed
// source whose Teredo address names that source as its mapping, may add a
// client only a budgeted number of peers, within its small default bound;
// the peer the host talks to keeps working throughout; and once the flood's
// entries expire, the memory they took comes back. (A client used to take
// every one of them, up to the relay's bound of a million.)
func TestClientSpoofedFlood(t *testing.T) {
	en := newEnv(t, Client, func(c *Config) { c.MaxPeers = 0 })
	if got := en.e.cfg.MaxPeers; got != DefaultClientMaxPeers {
		t.Fatalf("client bound %d, want %d", got, DefaultClientMaxPeers)
	}
	en.trust(peerAddr, peerMap)
	talk := func() {
		t.Helper()
		if v := en.tun(pkt(selfAddr, peerAddr, 8)); v != sent {
			t.Fatalf("host packet to the active peer: %+v", v)
		}
		if v := en.udp(pkt(peerAddr, selfAddr, 8), peerMap); v != sent {
			t.Fatalf("packet from the active peer: %+v", v)
		}
	}
	talk()
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC() // twice: pooled buffers survive one collection
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	const flood = 200_000
	for i := range flood {
		a := nth(i)
		m, _ := proto.ParseAddress(a)
		en.udp(bubble(a, selfAddr), m.Mapping())
		if i%10_000 == 0 { // 100,000 a second for 2 s
			en.clk.advance(100 * time.Millisecond)
			en.tick()
			talk()
		}
	}
	during := heap()
	st := en.e.Stats()
	t.Logf("after the flood: %d peers, %d created, %d limited; heap +%d KiB", st.Peers, st.Created,
		st.Dropped[DropPeerLimited], (int64(during)-int64(before))/1024)
	if st.Peers > DefaultClientMaxPeers || st.Created > newPeerBurst+3*newPeersPerSecond {
		t.Errorf("%d peers, %d created: the budget did not hold", st.Peers, st.Created)
	}
	if grew := int64(during) - int64(before); grew > 1<<20 {
		t.Errorf("heap grew by %d KiB during the flood, want at most 1 MiB", grew/1024)
	}
	// Two minutes later the flood's entries have expired; the active peer,
	// still in use, has not.
	for range 120 {
		en.clk.advance(time.Second)
		en.tick()
		talk()
	}
	after := heap()
	if st := en.e.Stats(); st.Peers != 1 {
		t.Errorf("%d peers left, want the active one", st.Peers)
	}
	if grew := int64(after) - int64(before); grew > 64<<10 {
		t.Errorf("heap still %d KiB above its size before the flood", grew/1024)
	}
	runtime.KeepAlive(en)
}

// TestCompact: a shard compacted after most of its entries went keeps the
// survivors findable, in the same LRU order on the same lists, with their
// queues, and stays consistent under more inserts and removals.
func TestCompact(t *testing.T) {
	en := newEnv(t, ConeRelay, func(c *Config) { c.MaxPeers = 2047 })
	s := &en.e.table.shards[0]
	if len(en.e.table.shards) != 1 {
		t.Fatalf("%d shards", len(en.e.table.shards))
	}
	now := en.e.now()
	var keys [][16]byte
	for i := 0; len(keys) < 2000; i++ {
		k := nth(i).As16()
		if en.e.table.shardOf(&k) != s {
			continue
		}
		keys = append(keys, k)
		idx, _ := s.insert(&k, now, queueDrop{en.e, &en.e.st.tick})
		if len(keys)%7 == 0 {
			s.peers[idx].flags |= fTrusted
			s.protect(idx)
		}
		if len(keys)%11 == 0 {
			en.e.enqueue(s.queueOf(idx), pkt(native, nth(i), 8), false, netip.AddrPort{})
		}
	}
	var kept [][16]byte
	for i, k := range keys {
		if i%5 == 0 {
			kept = append(kept, k)
			continue
		}
		idx, _ := s.lookup(&k)
		s.remove(idx, now, queueDrop{en.e, &en.e.st.tick}, DropQueueExpired)
	}
	order := func() [2][][16]byte {
		var o [2][][16]byte
		for l := range s.lists {
			for i := s.lists[l].head; i != noIndex; i = s.peers[i].next {
				o[l] = append(o[l], s.peers[i].addr)
			}
		}
		return o
	}
	was := order()
	s.compact()
	if len(s.peers) != s.n || s.n != len(kept) || !reflect.DeepEqual(order(), was) {
		t.Fatalf("after compaction: slab %d, %d live, want %d in the same order", len(s.peers), s.n, len(kept))
	}
	checkShard(t, s)
	for i, k := range kept {
		idx, ok := s.lookup(&k)
		if !ok || s.peers[idx].addr != k {
			t.Fatalf("kept entry %d lost", i)
		}
		if q := s.peers[idx].has(fQueued); q != (s.queues[idx] != nil) || (q && len(s.queues[idx].items) != 1) {
			t.Fatalf("kept entry %d: queue flag %v, queue %v", i, q, s.queues[idx])
		}
	}
	for i := range 3000 {
		k := nth(100_000 + i).As16()
		if en.e.table.shardOf(&k) == s {
			s.insert(&k, now, queueDrop{en.e, &en.e.st.tick})
		}
	}
	checkShard(t, s)
}

// checkShard verifies a shard's invariants: the index and the lists hold
// exactly the live entries, links agree both ways, and queued entries have
// queues.
func checkShard(t *testing.T, s *shard) {
	t.Helper()
	seen := 0
	for l := range s.lists {
		prev := noIndex
		for i := s.lists[l].head; i != noIndex; i = s.peers[i].next {
			p := &s.peers[i]
			if p.prev != prev || s.index[p.addr] != i || p.has(fProtected) != (l == protected) {
				t.Fatalf("list %d broken at entry %d", l, i)
			}
			prev = i
			seen++
		}
		if s.lists[l].tail != prev {
			t.Fatalf("list %d: tail %d, last %d", l, s.lists[l].tail, prev)
		}
	}
	if seen != s.n || len(s.index) != s.n {
		t.Fatalf("%d on lists, %d indexed, n %d", seen, len(s.index), s.n)
	}
	for i, q := range s.queues {
		if q == nil || !s.peers[i].has(fQueued) {
			t.Fatalf("queue of entry %d without flag", i)
		}
	}
}

// TestMemoryComesBack: the memory 200,000 peers took (here destinations
// the host sent to through a relay) is returned once they expire: the
// shards are compacted, not left at the size they grew to.
func TestMemoryComesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 200k peers")
	}
	en := newEnv(t, ConeRelay, func(c *Config) { c.MaxPeers = 1 << 18 })
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC() // twice: pooled buffers survive one collection
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := range 200_000 {
		en.tun(pkt(native, nth(i), 8))
		if i%1000 == 0 {
			en.e.queued.Store(0) // keep the queue budget out of the way
		}
	}
	full := heap()
	for range 150 {
		en.clk.advance(time.Second)
		en.tick()
	}
	after := heap()
	t.Logf("heap: +%d KiB with 200k peers, +%d KiB after they expired", (int64(full)-int64(before))/1024, (int64(after)-int64(before))/1024)
	if st := en.e.Stats(); st.Peers != 0 {
		t.Fatalf("%d peers left", st.Peers)
	}
	if grew := int64(after) - int64(before); grew > 256<<10 {
		t.Errorf("heap still %d KiB above its size before the peers came", grew/1024)
	}
	runtime.KeepAlive(en)
}

// SPDX-License-Identifier: MIT

package udpio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// batching: the platform has the batch path (and truncation reports).
const batching = runtime.GOOS == "linux"

// modes are the I/O paths every behaviour must hold on: with and without
// batching, and with each offload (ignored off Linux).
var modes = []struct {
	name string
	opt  Options
}{
	{"batch", Options{RecvBuffer: 1 << 20}},
	{"nobatch", Options{RecvBuffer: 1 << 20, NoBatch: true}},
	{"gso", Options{RecvBuffer: 1 << 20, GSO: true}},
	{"gro", Options{RecvBuffer: 1 << 20, GRO: true}},
	{"gso+gro", Options{RecvBuffer: 1 << 20, GSO: true, GRO: true}},
	{"raw", Options{RecvBuffer: 1 << 20, RawSyscalls: true}},
	{"blocking", Options{RecvBuffer: 1 << 20, BlockingReads: true}},
	{"blocking+raw+gso", Options{RecvBuffer: 1 << 20, BlockingReads: true, RawSyscalls: true, GSO: true}},
}

// listen opens a loopback socket closed at the end of the test.
func listen(t testing.TB, opt Options) *Conn {
	t.Helper()
	c, err := Listen(loopback, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// watchdog closes c after d, so that a read waiting for a datagram that
// never comes fails the test with net.ErrClosed instead of hanging it.
func watchdog(t testing.TB, c *Conn, d time.Duration) {
	tm := time.AfterFunc(d, func() { c.Close() })
	t.Cleanup(func() { tm.Stop() })
}

// newMsgs returns k messages with buffers of size bytes.
func newMsgs(k, size int) []Message {
	msgs := make([]Message, k)
	for i := range msgs {
		msgs[i].Buf = make([]byte, size)
	}
	return msgs
}

// fill makes msgs[i] a datagram of n bytes to dst whose first four bytes
// are seq+i, the rest a pattern derived from it.
func fill(msgs []Message, n int, dst netip.AddrPort, seq int) {
	for i := range msgs {
		m := &msgs[i]
		m.N, m.Addr = n, dst
		pattern(m.Buf[:n], seq+i)
	}
}

func pattern(b []byte, id int) {
	for j := range b {
		b[j] = byte(id*7 + j)
	}
	if len(b) >= 4 {
		binary.BigEndian.PutUint32(b, uint32(id))
	}
}

// readN reads until want datagrams have arrived and returns copies of them
// in arrival order.
func readN(t testing.TB, c *Conn, want, size int) []Message {
	t.Helper()
	watchdog(t, c, 10*time.Second)
	var got []Message
	in := newMsgs(MaxBatch+3, size) // more than one batch: ReadBatch must cap it
	for len(got) < want {
		n, err := c.ReadBatch(in)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), want, err)
		}
		if n < 1 || n > MaxBatch {
			t.Fatalf("ReadBatch returned %d, want 1..%d", n, MaxBatch)
		}
		for _, m := range in[:n] {
			m.Buf = bytes.Clone(m.Buf[:m.N])
			got = append(got, m)
		}
	}
	if len(got) != want {
		t.Fatalf("got %d datagrams, want %d", len(got), want)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	for _, tx := range modes {
		for _, rx := range modes {
			for _, count := range []int{1, 7, MaxBatch, 2*MaxBatch + 3} {
				name := fmt.Sprintf("%s-to-%s/%d", tx.name, rx.name, count)
				t.Run(name, func(t *testing.T) {
					a, b := listen(t, tx.opt), listen(t, rx.opt)
					const size = 100
					out := newMsgs(count, size+20) // N < len(Buf): only Buf[:N] goes
					fill(out, size, b.LocalAddr(), 1000)
					n, err := a.WriteBatch(out)
					if n != count || err != nil {
						t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, count)
					}
					got := readN(t, b, count, 2048)
					want := make([]byte, size)
					for i, m := range got {
						pattern(want, 1000+i)
						if !bytes.Equal(m.Buf, want) || m.N != size {
							t.Fatalf("datagram %d: got %d bytes % x..., want %d bytes % x...", i, m.N, head(m.Buf), size, head(want))
						}
						if m.Addr != a.LocalAddr() || m.Truncated {
							t.Fatalf("datagram %d: from %v truncated=%v, want from %v", i, m.Addr, m.Truncated, a.LocalAddr())
						}
					}
					sa, sb := a.Stats(), b.Stats()
					if sa.WriteDatagrams != uint64(count) || sa.WriteErrors != 0 {
						t.Errorf("sender stats %+v", sa)
					}
					if sb.ReadDatagrams != uint64(count) || sb.Drops != 0 {
						t.Errorf("receiver stats %+v", sb)
					}
					if batching && !tx.opt.NoBatch && sa.WriteCalls > uint64((count+MaxBatch-1)/MaxBatch) {
						t.Errorf("batch sender used %d calls for %d datagrams", sa.WriteCalls, count)
					}
				})
			}
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 8)] }

func TestTruncated(t *testing.T) {
	if !batching {
		t.Skip("the fallback off Linux does not report truncation")
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, b := listen(t, mode.opt), listen(t, mode.opt)
			out := newMsgs(2, 200)
			fill(out, 200, b.LocalAddr(), 0)
			out[1].N = 50
			if _, err := a.WriteBatch(out); err != nil {
				t.Fatal(err)
			}
			got := readN(t, b, 2, 100)
			if !got[0].Truncated || got[0].N != 100 {
				t.Errorf("long datagram: N=%d truncated=%v, want 100 true", got[0].N, got[0].Truncated)
			}
			if got[1].Truncated || got[1].N != 50 {
				t.Errorf("short datagram: N=%d truncated=%v, want 50 false", got[1].N, got[1].Truncated)
			}
			if s := b.Stats(); s.Truncated != 1 {
				t.Errorf("Stats.Truncated = %d, want 1", s.Truncated)
			}
		})
	}
}

// TestWriteSkipsBadMessages: one refused datagram must not stop the others.
func TestWriteSkipsBadMessages(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, b := listen(t, mode.opt), listen(t, mode.opt)
			dst := b.LocalAddr()
			out := newMsgs(6, 64)
			fill(out, 64, dst, 0)
			out[1].Addr = netip.MustParseAddrPort("[2001:db8::1]:3544")                       // not IPv4: refused by us
			out[2].N = 65                                                                     // longer than Buf: refused by us
			out[3].Addr = netip.AddrPortFrom(dst.Addr(), 0)                                   // port 0: refused by the kernel (EINVAL)
			out[4].Addr = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port()) // IPv4-mapped: fine
			n, err := a.WriteBatch(out)
			if n != 3 || !errors.Is(err, ErrNotIPv4) {
				t.Fatalf("WriteBatch = %d, %v; want 3 and the first error, ErrNotIPv4", n, err)
			}
			got := readN(t, b, 3, 128)
			for i, id := range []int{0, 4, 5} {
				if binary.BigEndian.Uint32(got[i].Buf) != uint32(id) {
					t.Errorf("datagram %d is message %d, want %d", i, binary.BigEndian.Uint32(got[i].Buf), id)
				}
			}
			if s := a.Stats(); s.WriteErrors != 3 || s.WriteDatagrams != 3 {
				t.Errorf("Stats = %+v, want 3 errors and 3 datagrams", s)
			}
		})
	}
}

// TestWriteOne: a batch of one (sent with sendto, see sendCall) goes out
// or fails and is counted as a longer batch's datagrams are.
func TestWriteOne(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, b := listen(t, mode.opt), listen(t, mode.opt)
			out := newMsgs(1, 64)
			fill(out, 64, b.LocalAddr(), 7)
			if n, err := a.WriteBatch(out); n != 1 || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want 1, nil", n, err)
			}
			out[0].Addr = netip.AddrPortFrom(b.LocalAddr().Addr(), 0) // refused by the kernel (EINVAL)
			if n, err := a.WriteBatch(out); n != 0 || !errors.Is(err, syscall.EINVAL) {
				t.Fatalf("WriteBatch to port 0 = %d, %v; want 0 and EINVAL", n, err)
			}
			got := readN(t, b, 1, 128)
			if id := binary.BigEndian.Uint32(got[0].Buf); id != 7 || got[0].N != 64 || got[0].Addr != a.LocalAddr() {
				t.Errorf("got datagram %d of %d bytes from %v, want 7, 64, %v", id, got[0].N, got[0].Addr, a.LocalAddr())
			}
			if s := a.Stats(); s.WriteCalls != 1 || s.WriteDatagrams != 1 || s.WriteErrors != 1 {
				t.Errorf("Stats = %+v, want 1 call, 1 datagram, 1 error", s)
			}
		})
	}
}

func TestListenAddress(t *testing.T) {
	tests := []struct {
		in      string
		want    string // "" means an error
		anyPort bool
	}{
		{"127.0.0.1:0", "127.0.0.1", true},
		{"[::ffff:127.0.0.1]:0", "127.0.0.1", true},
		{"[::1]:0", "", false},
		{"[2001:db8::1]:3544", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Listen(netip.MustParseAddrPort(tt.in), Options{})
			if tt.want == "" {
				if !errors.Is(err, ErrNotIPv4) {
					t.Fatalf("Listen(%s) error = %v, want ErrNotIPv4", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if la := c.LocalAddr(); la.Addr().String() != tt.want || la.Port() == 0 {
				t.Errorf("LocalAddr = %v, want %s with a port", la, tt.want)
			}
		})
	}
	if _, err := Listen(netip.AddrPort{}, Options{}); !errors.Is(err, ErrNotIPv4) {
		t.Errorf("Listen(zero AddrPort) error = %v, want ErrNotIPv4", err)
	}
}

// TestCloseUnblocksRead checks that a ReadBatch parked in the netpoller
// returns net.ErrClosed when the socket is closed, and that every call after
// Close does too.
func TestCloseUnblocksRead(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c, err := Listen(loopback, mode.opt)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.ReadBatch(newMsgs(4, 64))
				done <- err
			}()
			waitParked(t, "udpio.(*Conn).ReadBatch")
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("blocked ReadBatch returned %v, want net.ErrClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ReadBatch still blocked 10 s after Close")
			}
			if _, err := c.ReadBatch(newMsgs(1, 64)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadBatch after Close = %v, want net.ErrClosed", err)
			}
			out := newMsgs(2, 8)
			fill(out, 8, netip.MustParseAddrPort("127.0.0.1:9"), 0)
			if n, err := c.WriteBatch(out); n != 0 || !errors.Is(err, net.ErrClosed) {
				t.Errorf("WriteBatch after Close = %d, %v, want 0, net.ErrClosed", n, err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("second Close = %v, want nil", err)
			}
		})
	}
}

// waitParked polls the goroutine dump until some goroutine is inside fn and
// waiting in the netpoller.
func waitParked(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			// In the netpoller, or in the kernel (BlockingReads).
			if strings.Contains(g, fn) && (strings.Contains(g, "runtime_pollWait") || strings.Contains(g, "[syscall")) {
				return
			}
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no goroutine parked in %s within 10 s", fn)
}

func TestAllocs(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			a, b := listen(t, mode.opt), listen(t, mode.opt)
			watchdog(t, b, 30*time.Second)
			const k = 8
			out, in := newMsgs(k, 1200), newMsgs(MaxBatch, 2048)
			fill(out, 1200, b.LocalAddr(), 0)
			var werr, rerr error
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := a.WriteBatch(out); err != nil {
					werr = err
					return
				}
				for got := 0; got < k; {
					n, err := b.ReadBatch(in)
					if err != nil {
						rerr = err
						return
					}
					got += n
				}
			})
			if werr != nil || rerr != nil {
				t.Fatalf("write: %v, read: %v", werr, rerr)
			}
			if allocs != 0 {
				t.Errorf("WriteBatch+ReadBatch of %d datagrams: %v allocations, want 0", k, allocs)
			}
		})
	}
}

func TestGSORun(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:3544")
	b := netip.MustParseAddrPort("192.0.2.2:3544")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	type dgram struct {
		n  int
		to netip.AddrPort
	}
	// same returns k datagrams of n bytes to a.
	same := func(k, n int) []dgram {
		d := make([]dgram, k)
		for i := range d {
			d[i] = dgram{n, a}
		}
		return d
	}
	tests := []struct {
		name    string
		in      []dgram
		maxSegs int
		maxSize int // 0: maxUDPPayload
		want    int
	}{
		{"alone", []dgram{{1200, a}}, 64, 0, 1},
		{"equal run", same(5, 1200), 64, 0, 5},
		{"last short ends the run", []dgram{{1200, a}, {1200, a}, {700, a}, {700, a}}, 64, 0, 3},
		{"longer one ends the run", []dgram{{700, a}, {1200, a}}, 64, 0, 1},
		{"other destination ends the run", []dgram{{1200, a}, {1200, a}, {1200, b}}, 64, 0, 2},
		{"other port ends the run", []dgram{{1200, a}, {1200, netip.AddrPortFrom(a.Addr(), 1)}}, 64, 0, 1},
		{"mapped destination is the same", []dgram{{1200, a}, {1200, mapped}}, 64, 0, 2},
		{"empty first is alone", []dgram{{0, a}, {0, a}}, 64, 0, 1},
		{"empty ends the run", []dgram{{100, a}, {0, a}}, 64, 0, 1},
		{"segment cap", same(70, 100), 64, 0, 64},
		{"small cap", same(10, 100), 4, 0, 4},
		{"payload cap", same(64, 1200), 64, 0, maxUDPPayload / 1200}, // 54
		{"payload cap exact", same(3, maxUDPPayload/3), 64, 0, 3},
		{"too big to pair", []dgram{{40000, a}, {30000, a}}, 64, 0, 1},
		{"invalid N ends the run", []dgram{{100, a}, {-1, a}, {100, a}}, 64, 0, 1},
		{"segment within the size cap", same(3, 1200), 64, 1200, 3},
		{"segment over the size cap", same(3, 1201), 64, 1200, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := make([]Message, len(tt.in))
			for i, d := range tt.in {
				msgs[i] = Message{Buf: make([]byte, max(d.n, 0)), N: d.n, Addr: d.to}
			}
			maxSize := tt.maxSize
			if maxSize == 0 {
				maxSize = maxUDPPayload
			}
			if got := gsoRun(msgs, tt.maxSegs, maxSize); got != tt.want {
				t.Errorf("gsoRun = %d, want %d", got, tt.want)
			}
		})
	}
	// N beyond the buffer ends the run too.
	msgs := []Message{{Buf: make([]byte, 100), N: 100, Addr: a}, {Buf: make([]byte, 50), N: 100, Addr: a}}
	if got := gsoRun(msgs, 64, maxUDPPayload); got != 1 {
		t.Errorf("gsoRun with N > len(Buf) = %d, want 1", got)
	}
}

// TestReadEach: every datagram reaches handle, in a ping-pong where the
// next one is sent only once the last was handled (a lost wake-up would
// stall it, as the read after a short batch is skipped), handle's error
// ends it, and Close ends it with net.ErrClosed.
func TestReadEach(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			tx, rx := listen(t, mode.opt), listen(t, mode.opt)
			watchdog(t, rx, 30*time.Second)
			out := newMsgs(3, 16)
			fill(out, 16, rx.LocalAddr(), 0)
			const rounds = 300
			got := 0
			stop := errors.New("enough")
			next := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() {
				done <- rx.ReadEach(newMsgs(MaxBatch, 64), func(n int) error {
					got += n
					if got%3 == 0 {
						next <- struct{}{}
					}
					if got == 3*rounds {
						return stop
					}
					return nil
				})
			}()
			for range rounds {
				// Three datagrams, one at a time: some batches are short.
				for i := range out {
					if _, err := tx.WriteBatch(out[i : i+1]); err != nil {
						t.Fatal(err)
					}
				}
				<-next
			}
			if err := <-done; err != stop {
				t.Fatalf("ReadEach returned %v, want handle's error", err)
			}
			reading := make(chan struct{}, 1)
			go func() {
				done <- rx.ReadEach(newMsgs(4, 64), func(int) error {
					select {
					case reading <- struct{}{}:
					default:
					}
					return nil
				})
			}()
			if mode.opt.BlockingReads && mode.opt.RawSyscalls {
				// Its goroutine shows as running (it keeps its P in the
				// wait), stack unavailable: see it handle a datagram,
				// after which it is back in the wait or about to be.
				if _, err := tx.WriteBatch(out[:1]); err != nil {
					t.Fatal(err)
				}
				<-reading
			} else {
				waitParked(t, "udpio.(*Conn).ReadEach")
			}
			rx.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadEach after Close returned %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestReadEachLightLoad: a blocking ReadEach that woke for one datagram
// reads the next ones singly (see lightSingles), and those reads keep
// every property of a batch read: the datagram, its source, truncation and
// the counters; a burst that arrives meanwhile is read in batches again
// within lightSingles+1 reads.
func TestReadEachLightLoad(t *testing.T) {
	if !batching {
		t.Skip("BlockingReads is Linux only")
	}
	for _, mode := range modes {
		if !mode.opt.BlockingReads {
			continue
		}
		t.Run(mode.name, func(t *testing.T) {
			tx, rx := listen(t, mode.opt), listen(t, mode.opt)
			watchdog(t, rx, 30*time.Second)
			type read struct {
				n    int
				msgs []Message
			}
			reads := make(chan read, 2*MaxBatch)
			done := make(chan error, 1)
			// The handler holds the last lone datagram until the burst
			// below is queued whole.
			const lone = 6
			release := make(chan struct{})
			handled := 0
			go func() {
				done <- rx.ReadEach(newMsgs(MaxBatch, 100), func(n int) error {
					r := read{n: n}
					for _, m := range rx.eachMsgs[:n] {
						m.Buf = bytes.Clone(m.Buf[:m.N])
						r.msgs = append(r.msgs, m)
					}
					reads <- r
					if handled += n; handled == lone {
						<-release
					}
					return nil
				})
			}()
			// Ping-pong: each datagram is sent once the last was handled,
			// so every wait finds one. The first wait is a batch wait; the
			// next ones read singly.
			out := newMsgs(1, 200)
			sizes := [lone]int{20, 200, 100, 101, 1, 60}
			for i, size := range sizes {
				fill(out, size, rx.LocalAddr(), i)
				if _, err := tx.WriteBatch(out); err != nil {
					t.Fatal(err)
				}
				r := <-reads
				if r.n != 1 {
					t.Fatalf("datagram %d came in a batch of %d", i, r.n)
				}
				m := r.msgs[0]
				want := min(size, 100)
				if m.N != want || m.Truncated != (size > 100) || m.Addr != tx.LocalAddr() {
					t.Errorf("datagram %d (%d bytes): N=%d truncated=%v from %v; want %d %v %v",
						i, size, m.N, m.Truncated, m.Addr, want, size > 100, tx.LocalAddr())
				}
				wantBuf := make([]byte, size)
				pattern(wantBuf, i)
				if !bytes.Equal(m.Buf, wantBuf[:want]) {
					t.Errorf("datagram %d: got % x, want % x", i, head(m.Buf), head(wantBuf))
				}
			}
			// The first wait was a batch wait, the other lone datagrams
			// were read singly.
			pending := rx.singles
			if want := lightSingles - (lone - 1); pending != want {
				t.Errorf("%d single reads pending after %d lone datagrams, want %d", pending, lone, want)
			}
			s := rx.Stats()
			if s.ReadCalls != lone || s.ReadDatagrams != lone || s.Truncated != 2 {
				t.Errorf("Stats: %d calls, %d datagrams, %d truncated; want %d, %d, 2",
					s.ReadCalls, s.ReadDatagrams, s.Truncated, lone, lone)
			}
			// A burst: read singly until the next batch wait, which takes
			// the rest at once.
			burst := newMsgs(MaxBatch, 40)
			fill(burst, 40, rx.LocalAddr(), 100)
			if n, err := tx.WriteBatch(burst); n != len(burst) {
				t.Fatalf("burst: sent %d of %d: %v", n, len(burst), err)
			}
			close(release)
			got, singles, biggest := 0, 0, 0
			for got < len(burst) {
				r := <-reads
				for _, m := range r.msgs {
					if id := int(binary.BigEndian.Uint32(m.Buf)); id != 100+got {
						t.Fatalf("burst datagram %d is %d", got, id-100)
					}
					got++
				}
				if r.n == 1 {
					singles++
				}
				biggest = max(biggest, r.n)
			}
			if singles != pending || biggest != len(burst)-pending {
				t.Errorf("burst of %d read with %d single reads, largest batch %d; want %d and %d",
					len(burst), singles, biggest, pending, len(burst)-pending)
			}
			// One more lone datagram: the next wait is a single read, and
			// Close ends it.
			if _, err := tx.WriteBatch(out[:1]); err != nil {
				t.Fatal(err)
			}
			if r := <-reads; r.n != 1 {
				t.Fatalf("lone datagram after the burst came in a batch of %d", r.n)
			}
			if rx.singles != lightSingles {
				t.Errorf("%d single reads pending after a lone datagram, want %d", rx.singles, lightSingles)
			}
			rx.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadEach after Close returned %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestNewMessages: each buffer has the size asked for and cannot grow into
// its neighbour.
func TestNewMessages(t *testing.T) {
	for _, tc := range []struct{ n, size int }{{1, 2048}, {MaxBatch, 2048}, {3, 1}} {
		msgs := NewMessages(tc.n, tc.size)
		if len(msgs) != tc.n {
			t.Fatalf("NewMessages(%d, %d): %d messages", tc.n, tc.size, len(msgs))
		}
		for i := range msgs {
			if len(msgs[i].Buf) != tc.size || cap(msgs[i].Buf) != tc.size {
				t.Fatalf("message %d: len %d cap %d, want %d", i, len(msgs[i].Buf), cap(msgs[i].Buf), tc.size)
			}
			msgs[i].Buf[0] = byte(i + 1)
		}
		for i := range msgs {
			if msgs[i].Buf[0] != byte(i+1) {
				t.Fatalf("message %d's buffer overlaps another", i)
			}
		}
	}
}

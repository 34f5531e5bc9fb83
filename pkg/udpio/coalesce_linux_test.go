// SPDX-License-Identifier: MIT

//go:build linux

package udpio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

// step is one event of a coalescer: a blocking wait's return (wait), or a
// read of n datagrams after a sleep (sleep true) or after a full batch.
type step struct {
	wait  bool
	sleep bool
	n     int
}

var (
	waited      = step{wait: true}
	gathered    = func(n int) step { return step{sleep: true, n: n} }
	readAtOnce  = func(n int) step { return step{n: n} }
	repeatSteps = func(k int, s ...step) []step {
		var out []step
		for range k {
			out = append(out, s...)
		}
		return out
	}
)

// TestCoalescer: when a loop starts and stops sleeping, and how long each
// sleep is, for the event sequences a loop meets.
func TestCoalescer(t *testing.T) {
	const longest = time.Millisecond
	minNs := minCoalesce.Nanoseconds()
	for _, tc := range []struct {
		name       string
		steps      []step
		active     bool
		sleepNs    int64
		gap, left  int
		wantPassed bool // the state checks below are about a loop that sleeps
	}{
		{name: "the first wait probes", steps: []step{waited},
			active: true, sleepNs: longest.Nanoseconds(), gap: 1, left: -1},
		{name: "a probe that gathers nothing backs off", steps: []step{waited, gathered(0)},
			active: false, sleepNs: longest.Nanoseconds(), gap: 2, left: 2},
		{name: "a probe that gathers one backs off", steps: []step{waited, gathered(1)},
			active: false, sleepNs: longest.Nanoseconds(), gap: 2, left: 2},
		{name: "no probe until the gap's waits have passed", steps: []step{waited, gathered(0), waited},
			active: false, sleepNs: longest.Nanoseconds(), gap: 2, left: 1},
		{name: "the gap's last wait probes", steps: []step{waited, gathered(0), waited, waited},
			active: true, sleepNs: longest.Nanoseconds(), gap: 2, left: 0},
		{name: "the gap doubles up to its cap", steps: repeatSteps(20, append(repeatSteps(maxCoalesceGap, waited), gathered(1))...),
			active: false, sleepNs: longest.Nanoseconds(), gap: maxCoalesceGap, left: maxCoalesceGap},
		{name: "two gathered keep it sleeping, at the longest", steps: []step{waited, gathered(2)},
			active: true, sleepNs: longest.Nanoseconds(), gap: 1, left: -1},
		{name: "a success halves the gap", steps: []step{waited, gathered(0), waited, waited, gathered(0),
			waited, waited, waited, waited, gathered(5)},
			active: true, sleepNs: longest.Nanoseconds(), gap: 2, left: 0},
		{name: "more than the target shortens the sleep", steps: []step{waited, gathered(32)},
			active: true, sleepNs: longest.Nanoseconds() / 2, gap: 1, left: -1},
		{name: "sleeps shrink with the rate, not below the shortest", steps: []step{waited, gathered(64), gathered(64), gathered(64), gathered(64)},
			active: true, sleepNs: minNs, gap: 1, left: -1},
		{name: "fewer than the target lengthen it again", steps: []step{waited, gathered(64), gathered(8)},
			active: true, sleepNs: longest.Nanoseconds() / 2, gap: 1, left: -1},
		{name: "a short sleep that misses retries at the longest", steps: []step{waited, gathered(64), gathered(1)},
			active: true, sleepNs: longest.Nanoseconds(), gap: 1, left: -1},
		{name: "then a miss at the longest stops it", steps: []step{waited, gathered(64), gathered(1), gathered(0)},
			active: false, sleepNs: longest.Nanoseconds(), gap: 2, left: 2},
		{name: "a read after a full batch, without a sleep, changes nothing", steps: []step{waited, gathered(64), readAtOnce(0), readAtOnce(3)},
			active: true, sleepNs: longest.Nanoseconds() / 4, gap: 1, left: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k coalescer
			k.init(longest)
			for _, s := range tc.steps {
				switch {
				case s.wait:
					k.woke()
				case s.sleep:
					if !k.active {
						t.Fatalf("asked to sleep while not coalescing: %+v", k)
					}
					k.slept = true // what sleep records, without the wait
					k.got(s.n)
				default:
					k.got(s.n)
				}
			}
			if k.active != tc.active || k.sleepNs != tc.sleepNs || k.gap != tc.gap || k.left != tc.left {
				t.Errorf("active %v, sleep %v, gap %d, left %d; want %v, %v, %d, %d",
					k.active, time.Duration(k.sleepNs), k.gap, k.left,
					tc.active, time.Duration(tc.sleepNs), tc.gap, tc.left)
			}
		})
	}
}

// TestCoalescerSleeps: sleep waits (a real nanosleep) at least as long as
// asked, even when a signal (the runtime's preemption request, every 10 ms
// to a loop that holds its P) interrupts it, and marks the next read as one
// that follows a sleep.
func TestCoalescerSleeps(t *testing.T) {
	for _, raw := range []bool{false, true} {
		var k coalescer
		k.init(15 * time.Millisecond)
		k.woke()
		start := time.Now()
		k.sleep(raw)
		// Only a lower bound: how much longer depends on the load.
		if d := time.Since(start); d < 15*time.Millisecond {
			t.Errorf("raw %v: a 15 ms sleep took %v", raw, d)
		}
		if !k.slept {
			t.Errorf("raw %v: sleep did not mark the next read", raw)
		}
		k.got(2)
		if k.slept || !k.active {
			t.Errorf("raw %v: after a read of two that followed a sleep: %+v", raw, k)
		}
	}
}

// TestReadEachCoalesce: with Options.Coalesce, a loop that woke for one
// datagram sleeps after answering it, and reads what came meanwhile as one
// batch; a sleep that gathered nothing sends it back to waiting, and it
// probes again only after more waits. Without Coalesce the same datagrams
// are read one at a time. Datagrams that "come during a sleep" are sent by
// the handler before it returns, so the batches do not depend on timing.
func TestReadEachCoalesce(t *testing.T) {
	// What each datagram's handler sends on: A brings B and C; after a sleep
	// that finds nothing the test sends E, which brings F, which brings G
	// and H.
	const a, e, last = 0, 4, 7
	next := map[int][]int{a: {1, 2}, e: {5}, 5: {6, 7}}
	for _, tc := range []struct {
		name    string
		opt     Options
		batches []int
		sleeps  uint64
	}{
		// A (the first wait probes) | B C gathered | the next sleep finds
		// nothing: back to waiting, next probe two waits on | E (one wait)
		// | F (the second: probe; a single read, which does not say the
		// queue is empty, so no sleep yet) | G H, read at once.
		{"coalesce", Options{BlockingReads: true, Coalesce: 5 * time.Millisecond}, []int{1, 2, 1, 1, 2}, 2},
		{"coalesce+raw", Options{BlockingReads: true, RawSyscalls: true, Coalesce: 5 * time.Millisecond}, []int{1, 2, 1, 1, 2}, 2},
		{"no coalescing", Options{BlockingReads: true, RawSyscalls: true}, []int{1, 1, 1, 1, 1, 1, 1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.RecvBuffer = 1 << 20
			tx, rx := listen(t, tc.opt), listen(t, tc.opt)
			watchdog(t, rx, 30*time.Second)
			send := func(ids ...int) {
				if len(ids) == 0 {
					return
				}
				out := newMsgs(len(ids), 64)
				for i, id := range ids {
					fill(out[i:i+1], 64, rx.LocalAddr(), id)
				}
				if n, err := tx.WriteBatch(out); n != len(out) {
					t.Errorf("sent %d of %d: %v", n, len(out), err)
				}
			}
			var batches, ids []int
			handled := make(chan int, 16)
			done := make(chan error, 1)
			go func() {
				done <- rx.ReadEach(newMsgs(MaxBatch, 100), func(n int) error {
					batches = append(batches, n)
					for _, m := range rx.eachMsgs[:n] {
						id := int(binary.BigEndian.Uint32(m.Buf))
						ids = append(ids, id)
						send(next[id]...)
						if id == last {
							// End here, before any sleep: the
							// count of sleeps is then exact.
							return errStop
						}
					}
					handled <- n
					return nil
				})
			}()
			count := func(want int) {
				t.Helper()
				for got := 0; got < want; {
					select {
					case n := <-handled:
						got += n
					case err := <-done:
						t.Fatalf("ReadEach returned %v", err)
					}
				}
			}
			send(a)
			count(3) // A, B, C
			if tc.opt.Coalesce > 0 {
				// The sleep after B and C has found nothing once its read
				// is counted: the loop then waits, and reads E in a wait.
				deadline := time.Now().Add(10 * time.Second)
				for rx.Stats().Sleeps < 2 {
					if time.Now().After(deadline) {
						t.Fatalf("after A, B and C: %d sleeps, want 2", rx.Stats().Sleeps)
					}
					time.Sleep(time.Millisecond)
				}
			}
			send(e)
			if err := <-done; !errors.Is(err, errStop) {
				t.Errorf("ReadEach returned %v, want the handler's error", err)
			}
			if want := []int{0, 1, 2, 4, 5, 6, 7}; !slices.Equal(ids, want) {
				t.Errorf("datagrams read in the order %v, want %v", ids, want)
			}
			if !slices.Equal(batches, tc.batches) {
				t.Errorf("batches %v, want %v", batches, tc.batches)
			}
			// A: B C | B C: nothing. A loop that did not back off after
			// B C's miss would read F without a wait after E, and sleep
			// after it.
			if s := rx.Stats(); s.Sleeps != tc.sleeps {
				t.Errorf("%d sleeps, want %d", s.Sleeps, tc.sleeps)
			}
		})
	}
}

var errStop = errors.New("stop")

// TestReadEachCoalesceFull: a batch that comes full after a sleep says the
// queue is not empty: the loop reads on without sleeping, and it sleeps
// again only after a batch that emptied the queue. A coalescing loop that
// finds the queue empty waits for a batch, not a single datagram, and
// sleeps after it. A handler's error ends ReadEach at once, and a later
// ReadEach carries on.
func TestReadEachCoalesceFull(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			opt := Options{BlockingReads: true, RawSyscalls: raw, Coalesce: 5 * time.Millisecond, RecvBuffer: 1 << 20}
			tx, rx := listen(t, opt), listen(t, opt)
			watchdog(t, rx, 30*time.Second)
			send := func(ids ...int) {
				out := newMsgs(len(ids), 64)
				for i, id := range ids {
					fill(out[i:i+1], 64, rx.LocalAddr(), id)
				}
				if n, err := tx.WriteBatch(out); n != len(out) {
					t.Errorf("sent %d of %d: %v", n, len(out), err)
				}
			}
			var batches []int
			handle := func(n int) error {
				batches = append(batches, n)
				for _, m := range rx.eachMsgs[:n] {
					switch binary.BigEndian.Uint32(m.Buf) {
					case 0:
						send(1, 2, 3, 4) // two full batches of two
					case 6, 7:
						return errStop
					}
				}
				return nil
			}
			msgs := newMsgs(2, 100)
			// 0 (a wait: the probe) | sleep: 1 2 (full) | 3 4 (full, no
			// sleep before) | no sleep before the read that finds
			// nothing | 5 (a batch wait, then a sleep that finds nothing)
			// | 6 ends it.
			done := make(chan error, 1)
			go func() { done <- rx.ReadEach(msgs, handle) }()
			send(0)
			deadline := time.Now().Add(10 * time.Second)
			for rx.Stats().ReadDatagrams < 5 {
				if time.Now().After(deadline) {
					t.Fatalf("read %d of 5 datagrams", rx.Stats().ReadDatagrams)
				}
				time.Sleep(time.Millisecond)
			}
			if s := rx.Stats(); s.Sleeps != 1 {
				t.Errorf("%d sleeps, want 1 (none after a full batch)", s.Sleeps)
			}
			send(5)
			for rx.Stats().Sleeps < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("%d sleeps after 5, want 2: a single read, not a batch wait?", rx.Stats().Sleeps)
				}
				time.Sleep(time.Millisecond)
			}
			send(6)
			if err := <-done; !errors.Is(err, errStop) {
				t.Fatalf("ReadEach returned %v, want the handler's error", err)
			}
			if want := []int{1, 2, 2, 1, 1}; !slices.Equal(batches, want) {
				t.Errorf("batches %v, want %v", batches, want)
			}
			if s := rx.Stats(); s.Sleeps != 2 {
				t.Errorf("%d sleeps, want 2", s.Sleeps)
			}
			send(7)
			if err := rx.ReadEach(msgs, handle); !errors.Is(err, errStop) {
				t.Errorf("a second ReadEach returned %v, want the handler's error", err)
			}
		})
	}
}

// TestReadEachCoalesceClose: Close from the handler of a loop that
// coalesces ends ReadEach with net.ErrClosed without a sleep first, and
// the datagram that came meanwhile is not handed over. Without RawSyscalls
// no preemption signal cuts the sleep short, so one would last the whole
// minute.
func TestReadEachCoalesceClose(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			opt := Options{BlockingReads: true, RawSyscalls: raw, Coalesce: time.Minute, RecvBuffer: 1 << 20}
			tx, rx := listen(t, opt), listen(t, opt)
			out := newMsgs(1, 64)
			fill(out, 64, rx.LocalAddr(), 0)
			if _, err := tx.WriteBatch(out); err != nil {
				t.Fatal(err)
			}
			handed := 0
			done := make(chan error, 1)
			go func() {
				done <- rx.ReadEach(newMsgs(MaxBatch, 100), func(n int) error {
					if handed += n; handed > 1 {
						return errStop // handed over after Close
					}
					fill(out, 64, rx.LocalAddr(), 1)
					if _, err := tx.WriteBatch(out); err != nil {
						t.Error(err)
					}
					rx.Close()
					return nil
				})
			}()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("ReadEach returned %v, want net.ErrClosed", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("ReadEach still sleeping 30 s after Close")
			}
			if handed != 1 {
				t.Errorf("%d datagrams handed over, want 1 (none after Close)", handed)
			}
		})
	}
}

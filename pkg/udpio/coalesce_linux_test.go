// SPDX-License-Identifier: MIT

//go:build linux

package udpio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
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
		{name: "a success resets the gap", steps: []step{waited, gathered(0), waited, waited, gathered(0),
			waited, waited, waited, waited, gathered(5)},
			active: true, sleepNs: longest.Nanoseconds(), gap: 1, left: 0},
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

// TestCoalescerSleeps: sleep waits (a real nanosleep) and marks the next
// read as one that follows a sleep.
func TestCoalescerSleeps(t *testing.T) {
	var k coalescer
	k.init(2 * time.Millisecond)
	k.woke()
	start := time.Now()
	k.sleep(true)
	// The Go runtime's preemption signal may end the sleep early, so only
	// check that it is not much longer than asked (timer slack aside).
	if d := time.Since(start); d > time.Second {
		t.Errorf("a 2 ms sleep took %v", d)
	}
	if !k.slept {
		t.Error("sleep did not mark the next read")
	}
	k.got(2)
	if k.slept || !k.active {
		t.Errorf("after a read of two that followed a sleep: %+v", k)
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
	const a, e = 0, 4
	next := map[int][]int{a: {1, 2}, e: {5}, 5: {6, 7}}
	for _, tc := range []struct {
		name    string
		opt     Options
		batches []int
	}{
		// A (the first wait probes) | B C gathered | the next sleep finds
		// nothing: back to waiting, next probe two waits on | E (one wait)
		// | F (the second: probe) | G H gathered.
		{"coalesce", Options{BlockingReads: true, Coalesce: 5 * time.Millisecond}, []int{1, 2, 1, 1, 2}},
		{"coalesce+raw", Options{BlockingReads: true, RawSyscalls: true, Coalesce: 5 * time.Millisecond}, []int{1, 2, 1, 1, 2}},
		{"no coalescing", Options{BlockingReads: true, RawSyscalls: true}, []int{1, 1, 1, 1, 1, 1, 1}},
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
			count(4) // E, F, G, H
			rx.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadEach after Close returned %v, want net.ErrClosed", err)
			}
			if want := []int{0, 1, 2, 4, 5, 6, 7}; !bytes.Equal(intBytes(ids), intBytes(want)) {
				t.Errorf("datagrams read in the order %v, want %v", ids, want)
			}
			if !bytes.Equal(intBytes(batches), intBytes(tc.batches)) {
				t.Errorf("batches %v, want %v", batches, tc.batches)
			}
			s := rx.Stats()
			if tc.opt.Coalesce == 0 && s.Sleeps != 0 || tc.opt.Coalesce > 0 && s.Sleeps < 3 {
				t.Errorf("%d sleeps", s.Sleeps)
			}
		})
	}
}

func intBytes(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

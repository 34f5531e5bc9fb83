// SPDX-License-Identifier: MIT

package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRead drives a read loop through scripted reads: each step is a read
// result; the loop must pause before retrying a failure, give up after
// MaxErrorRun failures in a row (not in all), and end quietly on a closed
// descriptor.
func TestRead(t *testing.T) {
	broken := errors.New("read: bad file descriptor")
	fails := func(k int, err error) []step {
		s := make([]step, k)
		for i := range s {
			s[i].err = err
		}
		return s
	}
	concat := func(parts ...[]step) []step {
		var s []step
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	closed := []step{{err: fmt.Errorf("read: %w", net.ErrClosed)}}
	cases := []struct {
		name      string
		steps     []step
		handleErr error // returned by handle for batches of size 99
		wantErr   error // nil: the loop ends quietly
		wantFail  int   // reads passed to failed
		wantPause time.Duration
		handled   int
	}{
		{"closed at once", closed, nil, nil, 0, 0, 0},
		{"batches then closed", concat([]step{{n: 3}, {n: 5}}, closed), nil, nil, 0, 0, 8},
		{"broken for good", fails(MaxErrorRun+1, broken), nil, broken, MaxErrorRun + 1, pauses(MaxErrorRun), 0},
		{"ENOBUFS bursts between reads", concat(fails(MaxErrorRun, syscall.ENOBUFS), []step{{n: 1}}, fails(MaxErrorRun, syscall.ENOBUFS), closed),
			nil, nil, 2 * MaxErrorRun, 2 * pauses(MaxErrorRun), 1},
		{"handle fails", []step{{n: 2}, {n: 99}}, errors.New("boom"), errors.New("boom"), 0, 0, 101},
		{"handle sees the descriptor closed", []step{{n: 99}}, net.ErrClosed, nil, 0, 0, 99},
	}
	for _, variant := range []string{"Read", "ReadEach"} {
		for _, tc := range cases {
			t.Run(variant+"/"+tc.name, func(t *testing.T) {
				handled, failed, paused, err := runScript(t, variant, tc.steps, tc.handleErr)
				switch {
				case tc.wantErr == nil && err != nil:
					t.Errorf("ended with %v, want nil", err)
				case tc.wantErr != nil && (err == nil || !errors.Is(err, tc.wantErr) && err.Error() != tc.wantErr.Error()):
					t.Errorf("ended with %v, want %v", err, tc.wantErr)
				}
				if failed != tc.wantFail || paused != tc.wantPause || handled != tc.handled {
					t.Errorf("failed %d, paused %v, handled %d; want %d, %v, %d", failed, paused, handled, tc.wantFail, tc.wantPause, tc.handled)
				}
			})
		}
	}
}

// step is one scripted read result.
type step struct {
	n   int
	err error
}

// runScript runs a read loop (variant Read or ReadEach) over steps, handle
// failing with handleErr on batches of 99, and returns the datagrams
// handled, the reads passed to failed, the total pause and how it ended.
func runScript(t *testing.T, variant string, steps []step, handleErr error) (handled, failed int, paused time.Duration, err error) {
	i := 0
	run := &ErrorRun{sleep: func(d time.Duration) { paused += d }}
	read := func() (int, error) {
		if i == len(steps) {
			t.Fatal("read after the last step")
		}
		s := steps[i]
		i++
		return s.n, s.err
	}
	handle := func(n int) error {
		handled += n
		if n == 99 {
			return handleErr
		}
		return nil
	}
	if variant == "Read" {
		err = readWith(run, nil, "socket read", read, handle, func(error) { failed++ })
		return
	}
	// ReadEach's each hands over batches until a read or handle fails.
	each := func(handle func(int) error) error {
		for {
			n, err := read()
			if err != nil {
				return err
			}
			if err := handle(n); err != nil {
				return err
			}
		}
	}
	err = readEachWith(run, nil, "socket read", each, handle, func(error) { failed++ })
	return
}

// pauses is the total pause of k failures in a row.
func pauses(k int) time.Duration {
	var d time.Duration
	for i := 1; i <= k; i++ {
		d += min(time.Duration(i)*ErrorPause, MaxErrorPause)
	}
	return d
}

// TestReadSurvivesTransientBurst: with real pauses, failures for 50 ms in
// a row are a short run (each pause is at least a millisecond), so the loop
// carries on; without pauses it would have given up in microseconds.
func TestReadSurvivesTransientBurst(t *testing.T) {
	start := time.Now()
	reads := 0
	err := Read(t.Context(), "socket read", func() (int, error) {
		reads++
		if time.Since(start) < 50*time.Millisecond {
			return 0, syscall.ENOBUFS
		}
		if reads > MaxErrorRun+10 {
			return 0, net.ErrClosed
		}
		return 1, nil
	}, func(int) error { return net.ErrClosed }, nil)
	if err != nil {
		t.Fatalf("gave up on a 50 ms burst after %d reads: %v", reads, err)
	}
}

// TestGroup: the first loop to fail stops the others through stop, and
// its error is the group's; a context that ends stops them without error.
func TestGroup(t *testing.T) {
	for _, fail := range []bool{true, false} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			g := NewGroup(ctx)
			stopped := make(chan struct{})
			var ended atomic.Int32
			for range 3 {
				g.Go(func(context.Context) error {
					<-stopped // blocked in a read until stop closes it
					ended.Add(1)
					return nil
				})
			}
			boom := errors.New("boom")
			g.Go(func(ctx context.Context) error {
				if fail {
					return boom
				}
				<-ctx.Done()
				return nil
			})
			if !fail {
				cancel()
			}
			stops := 0
			err := g.Wait(func() { stops++; close(stopped) })
			if fail && !errors.Is(err, boom) || !fail && err != nil {
				t.Errorf("Wait: %v", err)
			}
			if stops != 1 || ended.Load() != 3 {
				t.Errorf("stop called %d times, %d loops ended; want 1 and 3", stops, ended.Load())
			}
		})
	}
}

// TestEvery: the ticker stops on a closed descriptor without error, and
// passes on other errors.
func TestEvery(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		ret, want error
	}{{net.ErrClosed, nil}, {boom, boom}} {
		n := 0
		err := Every(t.Context(), time.Millisecond, func() error {
			if n++; n == 3 {
				return tc.ret
			}
			return nil
		})
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) || n != 3 {
			t.Errorf("Every returned %v after %d calls, want %v after 3", err, n, tc.want)
		}
	}
}

// TestHealthy: a loop waiting for input is healthy however long it waits;
// one stuck in a batch longer than the bound is not.
func TestHealthy(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g := NewGroup(ctx)
	input, release := make(chan int), make(chan struct{})
	inBatch := make(chan struct{})
	g.Go(func(ctx context.Context) error {
		return Read(ctx, "read", func() (int, error) {
			n, ok := <-input
			if !ok {
				return 0, net.ErrClosed
			}
			return n, nil
		}, func(int) error {
			close(inBatch)
			<-release // a hung batch
			return nil
		}, nil)
	})
	time.Sleep(20 * time.Millisecond)
	if !g.Healthy(10 * time.Millisecond) {
		t.Error("a loop waiting for input counted as hung")
	}
	input <- 1
	<-inBatch
	deadline := time.Now().Add(5 * time.Second)
	for g.Healthy(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a loop stuck in its batch still counts as healthy")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for !g.Healthy(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("healthy again never")
		}
		time.Sleep(time.Millisecond)
	}
	close(input)
	cancel()
	if err := g.Wait(func() {}); err != nil {
		t.Fatal(err)
	}
}

// TestHealthyBusy: a loop that is always working, but on batch after
// batch, is healthy whenever Healthy looks, even though every look finds
// it busy.
func TestHealthyBusy(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g := NewGroup(ctx)
	inBatch, next := make(chan struct{}), make(chan struct{})
	g.Go(func(ctx context.Context) error {
		return Read(ctx, "read", func() (int, error) { return 1, nil }, func(int) error {
			select {
			case inBatch <- struct{}{}:
			case <-ctx.Done():
				return net.ErrClosed
			}
			<-next // the batch lasts until the test has looked
			return nil
		}, nil)
	})
	for i := range 50 {
		<-inBatch
		if !g.Healthy(time.Nanosecond) {
			t.Fatalf("check %d: a loop moving from batch to batch counted as hung", i)
		}
		next <- struct{}{}
	}
	<-inBatch
	cancel()
	close(next)
	if err := g.Wait(func() {}); err != nil {
		t.Fatal(err)
	}
}

// SPDX-License-Identifier: MIT

// Package loop is the skeleton every daemon's data path runs on: read loops
// that ride out a transient error and give up on a descriptor that fails
// for good, a ticker, and a group that starts them, stops them together and
// reports the first failure. The client, the relay and the server each had
// their own copy of this, and the copies drifted (one gave up after a burst
// of ENOBUFS lasting microseconds); written once, they cannot.
package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// How a read loop treats failed reads in a row: each pauses a little longer
// than the last (ErrorPause more, up to MaxErrorPause), so a transient
// error (ENOBUFS, ENOMEM) costs a millisecond and a run of MaxErrorRun
// about a second, after which the loop gives up with the error and the
// daemon exits for its service manager to restart it, rather than spin on
// a descriptor that fails for good.
const (
	MaxErrorRun   = 100
	ErrorPause    = time.Millisecond
	MaxErrorPause = 10 * time.Millisecond
)

// ErrorRun counts a loop's consecutive failures.
type ErrorRun struct {
	n     int
	sleep func(time.Duration) // time.Sleep; tests count the pauses
}

// Failed records one more failure of what: it pauses, and returns the error
// the loop must end with once the run is longer than MaxErrorRun.
func (r *ErrorRun) Failed(what string, err error) error {
	r.n++
	if r.n > MaxErrorRun {
		return fmt.Errorf("%s: %d failures in a row: %w", what, r.n, err)
	}
	sleep := r.sleep
	if sleep == nil {
		sleep = time.Sleep
	}
	sleep(min(time.Duration(r.n)*ErrorPause, MaxErrorPause))
	return nil
}

// Reset ends the run: an operation worked.
func (r *ErrorRun) Reset() { r.n = 0 }

// Read runs a read loop until its descriptor is closed: read fills a batch
// and returns how many it read; handle processes them. A read that fails
// is passed to failed (to be counted; it may be nil) and retried as
// ErrorRun says. Read returns nil once read or handle returns an error
// wrapping net.ErrClosed (closing the descriptor is how a loop is
// stopped), and otherwise the error that ended it. ctx carries the loop's
// heartbeat when a Group started it: the time spent in handle is what
// Group.Healthy watches.
func Read(ctx context.Context, what string, read func() (int, error), handle func(n int) error, failed func(error)) error {
	return readWith(&ErrorRun{}, beatOf(ctx), what, read, handle, failed)
}

func readWith(run *ErrorRun, b *beat, what string, read func() (int, error), handle func(n int) error, failed func(error)) error {
	for {
		n, err := read()
		if err != nil {
			if done, err := readFailed(run, what, err, failed); done {
				return err
			}
			continue
		}
		run.Reset()
		b.busy()
		err = handle(n)
		b.idle()
		if err != nil {
			return handleFailed(err)
		}
	}
}

// readFailed deals with a failed read: done and nil once the descriptor is
// closed, done and the error that ends the loop after too long a run of
// failures, else not done (retry) after counting it and pausing.
func readFailed(run *ErrorRun, what string, err error, failed func(error)) (done bool, _ error) {
	if errors.Is(err, net.ErrClosed) {
		return true, nil
	}
	if failed != nil {
		failed(err)
	}
	if err := run.Failed(what, err); err != nil {
		return true, err
	}
	return false, nil
}

// handleFailed is what a loop returns when handle fails: nil when that was
// the descriptor being closed.
func handleFailed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ReadEach is Read for a descriptor that hands over batch after batch in
// one call (udpio.Conn.ReadEach): each runs until handle fails (each
// returns handle's error) or a read does. A failed read is passed to
// failed and retried as ErrorRun says, the run of failures ending with each
// batch handled; an error wrapping net.ErrClosed ends ReadEach with nil,
// and any other error from handle ends it with that error. ctx carries the
// heartbeat as for Read.
func ReadEach(ctx context.Context, what string, each func(handle func(n int) error) error, handle func(n int) error, failed func(error)) error {
	return readEachWith(&ErrorRun{}, beatOf(ctx), what, each, handle, failed)
}

func readEachWith(run *ErrorRun, b *beat, what string, each func(handle func(n int) error) error, handle func(n int) error, failed func(error)) error {
	for {
		var herr error
		err := each(func(n int) error {
			run.Reset()
			b.busy()
			herr = handle(n)
			b.idle()
			return herr
		})
		if herr != nil {
			return handleFailed(herr)
		}
		if done, err := readFailed(run, what, err, failed); done {
			return err
		}
	}
}

// Every calls fn every d until ctx ends (it then returns nil) or fn
// returns an error (returned as it is, unless it wraps net.ErrClosed).
func Every(ctx context.Context, d time.Duration, fn func() error) error {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		b := beatOf(ctx)
		b.busy()
		err := fn()
		b.idle()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// Group runs a daemon's loops until its context ends or one of them fails.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // err, beats, seen
	err    error
	beats  []*beat
	seen   []sighting // by beat, for Healthy
}

// beat is one loop's heartbeat: a count of the batches (or ticks) it has
// begun, and whether it is working on the last one or waiting for input
// (waiting is healthy, however long: a quiet network is not a hang). A
// loop marks each edge with one atomic store, where reading the clock at
// each batch cost a loop that wakes for every datagram more than some of
// its answers did (issue 14); Healthy times the batches instead, from its
// own checks.
//
// One beat belongs to one loop goroutine (Group.Go gives each its own):
// busy and idle are not safe for two loops at once.
type beat struct {
	n     uint64        // batches begun; only the loop touches it
	state atomic.Uint64 // n<<1|1 while the loop works on batch n, n<<1 while it waits
}

func (b *beat) busy() {
	if b != nil {
		b.n++
		b.state.Store(b.n<<1 | 1)
	}
}

func (b *beat) idle() {
	if b != nil {
		b.state.Store(b.n << 1)
	}
}

// sighting is when Healthy first saw a loop working on its current batch.
type sighting struct {
	state uint64
	at    time.Time
}

type beatKey struct{}

// beatOf is the heartbeat Group.Go put in ctx, or nil.
func beatOf(ctx context.Context) *beat {
	b, _ := ctx.Value(beatKey{}).(*beat)
	return b
}

// Healthy reports whether every loop of the group has been working on its
// current batch (or tick) for less than max: a loop stuck longer is hung,
// which is what the service manager's watchdog is told. A batch is timed
// from the first call that saw it, so a hang shows at the first call at
// least max after that one: callers call it every max or more often.
func (g *Group) Healthy(max time.Duration) bool {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	healthy := true
	for i, b := range g.beats {
		s := b.state.Load()
		seen := &g.seen[i]
		if s&1 == 0 || s != seen.state {
			*seen = sighting{state: s, at: now}
			continue
		}
		if now.Sub(seen.at) >= max {
			healthy = false
		}
	}
	return healthy
}

// NewGroup returns a group whose loops run until ctx ends.
func NewGroup(ctx context.Context) *Group {
	ctx, cancel := context.WithCancel(ctx)
	return &Group{ctx: ctx, cancel: cancel}
}

// Context is the group's context: it ends when the parent's does or a loop
// fails.
func (g *Group) Context() context.Context { return g.ctx }

// Fail ends the group with err, as a failing loop would: for work that runs
// beside the loops (and is not watched as they are) but whose failure must
// stop them.
func (g *Group) Fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.cancel()
}

// Go starts fn on its own goroutine with the group's context, which ends
// when the parent's does or when any loop of the group fails.
func (g *Group) Go(fn func(ctx context.Context) error) {
	b := new(beat)
	g.mu.Lock()
	g.beats = append(g.beats, b)
	g.seen = append(g.seen, sighting{})
	g.mu.Unlock()
	ctx := context.WithValue(g.ctx, beatKey{}, b)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(ctx); err != nil {
			g.Fail(err)
		}
	}()
}

// Wait waits until the context ends or a loop fails, then calls stop,
// which must make every loop return (by closing the descriptors they block
// on), waits for all of them, and returns the first failure, or nil.
// Descriptors the loops write to after a read returns must stay open until
// Wait returns: close them afterwards, never in stop.
func (g *Group) Wait(stop func()) error {
	<-g.ctx.Done()
	stop()
	g.wg.Wait()
	g.cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// SPDX-License-Identifier: MIT

package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/fakeio"
	"github.com/miredo-go/miredo/pkg/daemon"
)

// drainRelay is a relay around fakes, announcing through a fake device
// when announce is set.
func drainRelay(t *testing.T, announce bool, drain time.Duration) (*Relay, *fakeio.Dev) {
	t.Helper()
	r, _, _ := newTestRelay(t)
	r.cfg.DrainTime = drain
	r.drainAsked = make(chan struct{})
	r.notify = daemon.NewNotifier(slog.New(slog.DiscardHandler))
	var dev *fakeio.Dev
	if announce {
		dev = fakeio.NewDev()
		r.announce = &announcer{name: "teredo-bgp", dev: dev}
	}
	return r, dev
}

func closed(d *fakeio.Dev) bool {
	_, err := d.Write([][]byte{{0}}, 0)
	return errors.Is(err, net.ErrClosed)
}

// TestDrainWithdrawsFirst: on SIGTERM (ctx ends) or the drain command, an
// announcing relay closes its announce interface at once and serves on for
// its drain time; the drain command answers what it did.
func TestDrainWithdrawsFirst(t *testing.T) {
	for _, how := range []string{"sigterm", "command"} {
		t.Run(how, func(t *testing.T) {
			const drain = 300 * time.Millisecond
			r, dev := drainRelay(t, true, drain)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			serve, stop := r.serveContext(ctx)
			defer stop()
			if closed(dev) {
				t.Fatal("withdrawn before any stop")
			}
			start := time.Now()
			if how == "sigterm" {
				cancel()
			} else {
				rep, err := r.drain()
				if err != nil || rep.(DrainReply) != (DrainReply{Withdrawn: true, ExitIn: "300ms"}) {
					t.Fatalf("drain: %+v, %v", rep, err)
				}
				if _, err := r.drain(); err == nil {
					t.Error("a second drain was accepted")
				}
			}
			for !closed(dev) {
				select {
				case <-serve.Done():
					t.Fatal("stopped serving before withdrawing")
				case <-time.After(time.Millisecond):
				}
			}
			<-serve.Done()
			if el := time.Since(start); el < drain {
				t.Errorf("served %v after the stop, want the drain time %v", el, drain)
			}
			if !r.draining.Load() {
				t.Error("not marked draining")
			}
		})
	}
}

// TestStopWithoutAnnounce: a relay that announces nothing stops at once,
// whatever its drain time.
func TestStopWithoutAnnounce(t *testing.T) {
	r, _ := drainRelay(t, false, time.Hour)
	serve, stop := r.serveContext(t.Context())
	defer stop()
	rep, err := r.drain()
	if err != nil || rep.(DrainReply).Withdrawn {
		t.Fatalf("drain: %+v, %v", rep, err)
	}
	select {
	case <-serve.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("still serving 10 s after the drain command")
	}
}

// SPDX-License-Identifier: MIT

//go:build e2e

package failover_test

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/failover"
	"github.com/miredo-go/miredo/internal/lab"
)

func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

// startFleet builds a fleet lab with one client behind nat1
// (port-restricted), pinging both ways with the native host through the
// relay that carries it.
func startFleet(t *testing.T) (context.Context, *failover.Fleet, *failover.Client, *failover.Relay) {
	t.Helper()
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	for _, tool := range []string{"bird", "birdc", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install bird2 dnsmasq-base)", tool)
		}
	}
	l := lab.New(t, lab.Options{Fleet: true, NAT1: lab.PortRestricted})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	start := time.Now()
	f, err := failover.Start(ctx, l, func(name string) string { return lab.Binary(t, name) }, lab.Client1)
	if f != nil {
		t.Cleanup(f.Close)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := f.Clients[0]
	carrier, err := f.Carrier(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet up in %v: %s is %s (server %s), carried by %s", time.Since(start).Round(time.Millisecond),
		c.Host.Name, c.Addr, c.Server(), carrier.Host.Name)
	return ctx, f, c, carrier
}

// recovered waits until both pingers have had a reply after t.
func recovered(ctx context.Context, t *testing.T, b *failover.Both, after time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for b.Down.LastReply().Before(after) || b.Up.LastReply().Before(after) {
		select {
		case <-ctx.Done():
			t.Fatalf("no replies since %v: native→client last at %v, client→native at %v", after.Format(time.StampMilli),
				b.Down.LastReply().Format(time.StampMilli), b.Up.LastReply().Format(time.StampMilli))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func logSeries(t *testing.T, what string, event time.Time, down, up failover.Series) {
	t.Helper()
	for _, s := range []struct {
		dir string
		s   failover.Series
	}{{"native→client", down}, {"client→native", up}} {
		gap, from := s.s.Gap()
		t.Logf("%s, %s: longest gap %v (from %+v after the event), %d of %d pings lost", what, s.dir,
			gap.Round(time.Millisecond), from.Sub(event).Round(time.Millisecond), s.s.Lost(), len(s.s.Arrived))
	}
}

// event is a signal sent to the relay carrying a client's traffic while
// it pings the native host both ways, and what the router did.
type event struct {
	ctx            context.Context
	f              *failover.Fleet
	carrier, other *failover.Relay
	pings          *failover.Both
	// otherBefore is the other relay's packet count before the signal.
	otherBefore   uint64
	at, withdrawn time.Time
}

// signalCarrier starts a fleet, pings both ways, sends sig to the relay
// carrying the pings and waits until the router routes through the other
// relay only.
func signalCarrier(t *testing.T, sig syscall.Signal) event {
	t.Helper()
	ctx, f, c, carrier := startFleet(t)
	e := event{ctx: ctx, f: f, carrier: carrier, other: f.Other(carrier)}
	var err error
	if e.pings, err = f.PingBoth(c, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	recovered(ctx, t, e.pings, time.Now())
	e.otherBefore = e.other.Packets(ctx)
	e.at = time.Now()
	if err := syscall.Kill(carrier.Proc.Pid(), sig); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitRelays(ctx, e.other); err != nil {
		t.Fatal(err)
	}
	e.withdrawn = time.Now()
	t.Logf("route withdrawn %v after %v", e.withdrawn.Sub(e.at).Round(time.Millisecond), sig)
	return e
}

// moved checks that the other relay handled packets after the event.
func (e event) moved(t *testing.T) {
	t.Helper()
	if got := e.other.Packets(e.ctx); got <= e.otherBefore {
		t.Errorf("%s handled %d packets before the event and %d after: the traffic did not move there", e.other.Host.Name, e.otherBefore, got)
	}
}

// TestFailoverKill: the relay carrying a client's traffic is killed
// (SIGKILL); its announce interface goes with it, the router withdraws its
// path, and the traffic both ways flows through the other relay.
func TestFailoverKill(t *testing.T) {
	e := signalCarrier(t, syscall.SIGKILL)
	recovered(e.ctx, t, e.pings, time.Now())
	time.Sleep(200 * time.Millisecond) // a few pings through the new path
	down, up := e.pings.Stop()
	logSeries(t, "relay killed", e.at, down, up)
	e.moved(t)
}

// TestFailoverDrain: the relay carrying a client's traffic is asked to
// stop (SIGTERM): it withdraws its announcement while it still runs, goes
// on forwarding for its drain time, then exits cleanly, and the traffic
// both ways flows through the other relay.
func TestFailoverDrain(t *testing.T) {
	e := signalCarrier(t, syscall.SIGTERM)
	select {
	case <-e.carrier.Proc.Done():
		t.Fatalf("the relay had exited when its route went: %v", e.carrier.Proc.Err())
	default:
	}
	select {
	case <-e.carrier.Proc.Done():
	case <-time.After(failover.DrainTime + 10*time.Second):
		t.Fatalf("the relay still runs %v after SIGTERM", time.Since(e.at))
	}
	exited := time.Now()
	if err := e.carrier.Proc.Err(); err != nil {
		t.Errorf("the relay exited with %v, want status 0", err)
	}
	if d := exited.Sub(e.at); d < failover.DrainTime {
		t.Errorf("the relay exited %v after SIGTERM, before its drain time %v", d, failover.DrainTime)
	}
	recovered(e.ctx, t, e.pings, exited)
	down, up := e.pings.Stop()
	logSeries(t, "relay drained", e.at, down, up)
	e.moved(t)
}

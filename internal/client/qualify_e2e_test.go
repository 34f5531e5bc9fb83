// SPDX-License-Identifier: MIT

//go:build e2e

package client_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
)

// qualifyRuns is how many times each client qualifies per placement: the
// race that used to cost 4 s was lost about every other start, so a few
// runs catch it.
const qualifyRuns = 5

// qualifyBound is one solicitation exchange plus margin: it passes only
// when no exchange on the way was lost and retried (RFC 4380's retry is
// 4 s later).
const qualifyBound = 1500 * time.Millisecond

// TestQualificationTime starts our client and Debian's Miredo client behind
// every NAT behaviour of the lab, several times each, against our server,
// and times each from its start to a Teredo address on its interface. Ours
// must qualify within qualifyBound every time; Miredo's times are the
// baseline, reported next to ours.
func TestQualificationTime(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	server := l.Host(lab.Server)
	if _, err := l.Start(ctx, server, "our-server", binary(t, "miredo-server"), "--primary", server.IPv4().String()); err != nil {
		t.Fatal(err)
	}
	if err := server.WaitUDP(ctx, refmiredo.TeredoPort); err != nil {
		t.Fatal(err)
	}
	var table []string
	for _, pl := range lab.Placements() {
		t.Run(pl.Name, func(t *testing.T) {
			h, _, err := l.Place(ctx, pl)
			if err != nil {
				t.Fatal(err)
			}
			var ours, theirs []time.Duration
			for i := range qualifyRuns {
				name := fmt.Sprintf("q-%s-%d", pl.Name, i)
				c := startClient(ctx, t, l, h, name, server.IPv4())
				c.qualified(ctx, t)
				took := time.Since(c.start)
				ours = append(ours, took)
				if took > qualifyBound {
					t.Errorf("run %d: qualified in %v, want at most %v:\n%s", i, took.Round(time.Millisecond), qualifyBound, c.p.Tail(15))
				}
				c.p.Stop()
				waitLinkGone(ctx, t, h, ifname)

				start := time.Now()
				p, err := refmiredo.StartClient(ctx, l, h, "miredo-"+name, server.IPv4())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := refmiredo.Qualified(ctx, h); err != nil {
					t.Fatalf("Miredo client: %v\n%s", err, p.Tail(15))
				}
				theirs = append(theirs, time.Since(start))
				p.Stop()
				waitLinkGone(ctx, t, h, refmiredo.DefaultIfname)
			}
			row := fmt.Sprintf("%-18s ours %s   Miredo %s", pl.Name, spread(ours), spread(theirs))
			t.Log(row)
			table = append(table, row)
		})
	}
	t.Logf("qualification, start to Teredo address, %d runs each (median, min-max):\n%s", qualifyRuns, strings.Join(table, "\n"))
}

// spread is the median and the range of ds.
func spread(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%7v (%v-%v)", r(s[len(s)/2]), r(s[0]), r(s[len(s)-1]))
}

// waitLinkGone waits until a stopped client's tunnel interface is gone, so
// that the next client's address cannot be confused with the last one's.
func waitLinkGone(ctx context.Context, t *testing.T, h *lab.Host, ifname string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := h.Addrs(ifname); err != nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: interface %s still there after its client stopped", h.Name, ifname)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// natTimeout is the NAT's UDP mapping lifetime in this fault, and silence
// how long the client then sends nothing of its own.
const (
	natTimeout = 20 * time.Second
	silence    = 2 * time.Minute
)

var localRE = regexp.MustCompile(`msg="Teredo client started".* local=[0-9.]+:(\d+)`)

// TestFaultShortNATTimeout puts the client behind a NAT that forgets UDP
// mappings after 20 s (conntrack's timeouts in the NAT namespace), shorter
// than the 30 s refresh RFC 4380 starts from. The client must find that out
// (its refresh interval drops below 20 s) and keep its mapping with the
// server alive: conntrack's entry for it never lapses during two minutes in
// which the client sends nothing of its own, and after them the native
// host's ping reaches it, with its Teredo address unchanged.
func TestFaultShortNATTimeout(t *testing.T) {
	for _, mode := range []lab.NATMode{lab.PortRestricted, lab.Symmetric} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			h, _, err := w.l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			nat := w.l.Host(lab.NAT1)
			secs := fmt.Sprint(int(natTimeout.Seconds()))
			if out, err := nat.Run(ctx, "sysctl", "-w", "net.netfilter.nf_conntrack_udp_timeout="+secs,
				"net.netfilter.nf_conntrack_udp_timeout_stream="+secs); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			sock := filepath.Join(w.l.LogDir, "client.sock")
			c := w.startClient(t, ctx, "ours", h, "client", "--control-socket", sock)
			defer c.stop(t)
			m := localRE.FindStringSubmatch(c.p.Tail(50))
			if m == nil {
				t.Fatalf("no local port logged:\n%s", c.p.Tail(10))
			}
			port := m[1]
			// The refresh interval comes down below the NAT's timeout.
			type status struct {
				Address netip.Addr
				Refresh float64 `json:"refresh_interval_seconds"`
			}
			get := func() status {
				var st status
				out, err := exec.CommandContext(ctx, lab.Binary(t, "miredo-client"), "status", "--json", "--control-socket", sock).Output()
				if err == nil {
					err = json.Unmarshal(out, &st)
				}
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			var st status
			deadline := time.Now().Add(90 * time.Second)
			for {
				if st = get(); st.Refresh > 0 && st.Refresh < natTimeout.Seconds() && st.Address.IsValid() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("refresh interval %v s 90 s after start, want below %v\n%s", st.Refresh, natTimeout, c.p.Tail(20))
				}
				time.Sleep(time.Second)
			}
			found := time.Now()
			t.Logf("refresh interval %v s after %v", st.Refresh, found.Sub(c.p.Started()).Round(time.Second))
			// Two minutes of the client's own silence: its mapping with the
			// server must never lapse.
			var lapses int
			for end := time.Now().Add(silence); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
				out, _ := nat.Run(ctx, "conntrack", "-L", "-p", "udp", "--dport", "3544", "--sport", port)
				if !strings.Contains(string(out), "dport=3544") {
					lapses++
				}
			}
			if lapses > 0 {
				t.Errorf("the NAT's mapping to the server lapsed in %d of the samples taken every 0.5 s", lapses)
			}
			// Before the interval came down, the NAT may have forgotten the
			// first mapping (a symmetric one then gives a new address);
			// from then on the address holds.
			if now := get(); now.Address != st.Address {
				t.Errorf("address changed during the silence, from %v to %v", st.Address, now.Address)
			}
			p, err := w.native.StartPinger(ctx, st.Address, 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			start := time.Now()
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			defer pcancel()
			if _, err := p.WaitReplyAfter(pctx, start); err != nil {
				t.Errorf("native -> client after %v of silence: %v", silence, err)
			}
		})
	}
}

// SPDX-License-Identifier: MIT

//go:build e2e

package probe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/client/probe"
	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

// probeRun is one `miredo-client probe` run, as nobody.
type probeRun struct {
	report probe.Report
	stdout []byte
	stderr string
	code   int
	took   time.Duration
}

func runProbe(ctx context.Context, t *testing.T, h *lab.Host, args ...string) probeRun {
	t.Helper()
	argv := append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		lab.Binary(t, "miredo-client"), "probe", "--json"}, args...)
	cmd := h.Command(ctx, argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := probeRun{stdout: out.Bytes(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(r.stdout, &r.report); err != nil {
		t.Fatalf("probe output is not its JSON: %v\n%s\n%s", err, r.stdout, r.stderr)
	}
	return r
}

// want is what a probe must report behind one NAT behaviour.
type want struct {
	nat            string
	portPreserving bool
}

var wants = map[string]want{
	"none":                      {probe.NATNone, true},
	"full-cone":                 {probe.NATCone, true},
	"address-restricted":        {probe.NATRestricted, true},
	"port-restricted":           {probe.NATRestricted, true},
	"symmetric":                 {probe.NATSymmetric, false},
	"symmetric-port-preserving": {probe.NATSymmetric, true},
	"symmetric-sequential":      {probe.NATSymmetric, false},
	"symmetric-upnp":            {probe.NATSymmetric, false},
}

// TestProbeBehindEveryNAT runs `miredo-client probe --json` as nobody
// behind every NAT behaviour of the lab against our server, Debian's
// Miredo server and an address where no server answers, all three at once.
// Both servers must work, with the NAT behaviour and the mapping the lab
// set up; the silent one must not, after three solicitations, within its
// timeout; the exit status is 0. The behaviours run two at a time, one
// behind each NAT box, with the host without NAT beside them.
func TestProbeBehindEveryNAT(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	server, inet2 := l.Host(lab.Server), l.Host(lab.Inet2)
	// No control socket: its default path is shared by every namespace, and
	// other tests' daemons run at the same time.
	p, err := l.Start(ctx, server, "our-server", lab.Binary(t, "miredo-server"), "-c", "/dev/null", "--control-socket", "", server.IPv4().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := server.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatalf("our server: %v\n%s", err, p.Tail(10))
	}
	if _, err := refmiredo.StartServer(ctx, l, inet2); err != nil {
		t.Fatal(err)
	}
	silent := l.Host(lab.Inet1).IPv4() // nothing listens on its port 3544
	servers := []struct {
		name          string
		addr          netip.Addr
		works         bool
		secondaryAddr netip.Addr
	}{
		{"our server", server.IPv4(), true, server.IPv4().Next()},
		{"Miredo's server", inet2.IPv4(), true, inet2.IPv4().Next()},
		{"no server", silent, false, silent.Next()},
	}
	const timeout = time.Second
	args := []string{"--timeout", timeout.String()}
	for _, s := range servers {
		args = append(args, s.addr.String())
	}

	var nat1, nat2 []lab.Placement
	for i, m := range []lab.NATMode{lab.FullCone, lab.AddressRestricted, lab.PortRestricted, lab.Symmetric,
		lab.SymmetricPortPreserving, lab.SymmetricSequential, lab.SymmetricUPnP} {
		if i%2 == 0 {
			nat1 = append(nat1, lab.Placement{Name: m.String(), Client: lab.Client1, NAT: lab.NAT1, Mode: m})
		} else {
			nat2 = append(nat2, lab.Placement{Name: m.String(), Client: lab.Client2, NAT: lab.NAT2, Mode: m})
		}
	}
	groups := map[string][]lab.Placement{"pub": {{Name: "none", Client: lab.Pub}}, lab.NAT1: nat1, lab.NAT2: nat2}
	t.Run("placements", func(t *testing.T) {
		for g, pls := range groups {
			t.Run(g, func(t *testing.T) {
				t.Parallel()
				for _, pl := range pls {
					t.Run(pl.Name, func(t *testing.T) {
						h, public, err := l.Place(ctx, pl)
						if err != nil {
							t.Fatal(err)
						}
						r := runProbe(ctx, t, h, args...)
						t.Logf("probe --json behind %s (%s):\n%s", pl.Name, h.Name, r.stdout)
						if r.code != 0 || r.report.Working != 2 {
							t.Errorf("exit status %d, %d servers working; want 0 and 2\n%s", r.code, r.report.Working, r.stderr)
						}
						if max := 3*timeout + 2*time.Second; r.took > max {
							t.Errorf("took %v, more than %v with --timeout %v", r.took, max, timeout)
						}
						w := wants[pl.Name]
						for i, s := range servers {
							if i >= len(r.report.Servers) {
								t.Fatalf("%d results for %d servers", len(r.report.Servers), len(servers))
							}
							got := r.report.Servers[i]
							if got.Primary != s.addr || got.Secondary != s.secondaryAddr || got.Works != s.works {
								t.Errorf("%s: primary %v secondary %v works %v (%s)", s.name, got.Primary, got.Secondary, got.Works, got.Error)
								continue
							}
							if !s.works {
								if len(got.Exchanges) != 1 || got.Exchanges[0].Sent != 3 || got.Exchanges[0].Answered || got.NAT != nil {
									t.Errorf("%s: %+v", s.name, got)
								}
								continue
							}
							checkWorking(t, s.name, got, s.addr, public, w)
						}
					})
				}
			})
		}
	})

	// A server that never answers, alone: exit status 1, within the
	// timeout (three solicitations, a third of it apart).
	h := l.Host(lab.Pub)
	r := runProbe(ctx, t, h, "--timeout", "600ms", silent.String(), silent.Next().Next().String())
	if r.code != 1 || r.report.Working != 0 || !strings.Contains(r.stderr, "no server works") {
		t.Errorf("silent servers: exit %d, %d working, stderr %q; want 1, 0", r.code, r.report.Working, r.stderr)
	}
	if r.took > 600*time.Millisecond+2*time.Second {
		t.Errorf("silent servers probed at once took %v with --timeout 600ms", r.took)
	}
	t.Logf("two silent servers, --timeout 600ms: exit %d after %v", r.code, r.took.Round(time.Millisecond))
}

// checkWorking checks the result for a server that works from behind a
// NAT of the expected behaviour, whose public address is public.
func checkWorking(t *testing.T, name string, got probe.Result, primary, public netip.Addr, w want) {
	t.Helper()
	if len(got.Exchanges) != 3 {
		t.Errorf("%s: %d exchanges", name, len(got.Exchanges))
		return
	}
	x := got.Exchanges[0]
	if !x.Answered || x.RTT <= 0 || x.Mapping.Addr() != public || got.Mapping != x.Mapping {
		t.Errorf("%s: primary exchange %+v, want a mapping on %v", name, x, public)
	}
	if a, _ := proto.ParseAddress(got.Address); a.Server != primary || a.Mapping() != got.Mapping || got.MTU != 1280 {
		t.Errorf("%s: Teredo address %v, MTU %d", name, got.Address, got.MTU)
	}
	if !got.Exchanges[2].Answered {
		t.Errorf("%s: the secondary address did not answer: %+v", name, got.Exchanges[2])
	}
	n := got.NAT
	if n == nil || n.Type != w.nat || n.PortPreserving == nil || *n.PortPreserving != w.portPreserving {
		t.Errorf("%s: NAT %+v, want %s, port-preserving %v", name, n, w.nat, w.portPreserving)
		return
	}
	if len(n.Evidence) < 3 {
		t.Errorf("%s: evidence %q", name, n.Evidence)
	}
	if n.Type == probe.NATRestricted && len(n.CannotTell) == 0 {
		t.Errorf("%s: a restricted NAT without saying which kinds it cannot tell apart", name)
	}
}

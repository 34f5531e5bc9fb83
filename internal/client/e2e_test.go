//go:build e2e

package client_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

var (
	buildOnce sync.Once
	bins      map[string]string
	buildErr  error
)

// binary builds our client and server once per test run, statically, as
// `make build` does, and returns the path of the one named.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "miredo-client-e2e")
		if err != nil {
			buildErr = err
			return
		}
		bins = map[string]string{}
		for _, b := range []string{"miredo-client", "miredo-server"} {
			bins[b] = filepath.Join(dir, b)
			cmd := exec.Command("go", "build", "-o", bins[b], "github.com/miredo-go/miredo/cmd/"+b)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins[name]
}

const ifname = "teredo"

// ourClient is one run of our client in a lab host.
type ourClient struct {
	p     *lab.Process
	h     *lab.Host
	start time.Time
}

// startClient runs our client on h against server, with a hook that
// records its environment in hookLog and then runs Debian's client hook.
func startClient(ctx context.Context, t *testing.T, l *lab.Lab, h *lab.Host, name string, server netip.Addr, extra ...string) *ourClient {
	t.Helper()
	conf := filepath.Join(l.LogDir, name+".conf")
	if err := os.WriteFile(conf, []byte("# our client\nRelayType client\nInterfaceName "+ifname+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := binary(t, "miredo-client")
	args := append([]string{"-c", conf, "--server", server.String(), "-p", filepath.Join(l.LogDir, name+".pid"),
		"--log-level", "debug"}, extra...)
	start := time.Now()
	p, err := l.Start(ctx, h, name, append([]string{bin}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return &ourClient{p: p, h: h, start: start}
}

// qualified waits for the Teredo address and the default route.
func (c *ourClient) qualified(ctx context.Context, t *testing.T) netip.Addr {
	t.Helper()
	addr, err := c.h.WaitAddr(ctx, ifname, refmiredo.TeredoPrefix())
	if err == nil {
		err = c.h.WaitDefaultRoute(ctx, ifname)
	}
	if err != nil {
		t.Fatalf("not qualified: %v\n%s", err, c.p.Tail(30))
	}
	return addr
}

var natRE = regexp.MustCompile(`msg="NAT behaviour" .*?nat=(\w+)`)

// nat waits for the client to report its NAT type.
func (c *ourClient) nat(ctx context.Context, t *testing.T) string {
	t.Helper()
	for {
		if m := natRE.FindAllStringSubmatch(c.p.Tail(400), -1); m != nil {
			return m[len(m)-1][1]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no NAT behaviour reported:\n%s", c.p.Tail(30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wantNAT is the type our client must report for each placement.
var wantNAT = map[string]string{
	"none": "cone", "full-cone": "cone", "address-restricted": "restricted",
	"port-restricted": "restricted", "symmetric": "symmetric",
}

// TestClient runs our client in the lab against Debian's Miredo server and
// relay, behind every NAT behaviour.
func TestClient(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	server := l.Host(lab.Server)
	if _, err := refmiredo.StartServer(ctx, l, server); err != nil {
		t.Fatal(err)
	}
	if _, err := refmiredo.StartRelay(ctx, l, l.Host(lab.Relay)); err != nil {
		t.Fatal(err)
	}
	native := l.Host(lab.Native)

	for _, pl := range lab.Placements() {
		t.Run(pl.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			h, public, err := l.Place(ctx, pl)
			if err != nil {
				t.Fatal(err)
			}
			c := startClient(ctx, t, l, h, "our-client-"+pl.Name, server.IPv4())
			addr := c.qualified(ctx, t)
			t.Logf("qualified in %v: %s", time.Since(c.start).Round(time.Millisecond), refmiredo.Summary(addr))
			a, _ := proto.ParseAddress(addr)
			if a.Server != server.IPv4() || a.MappedAddr != public {
				t.Errorf("address %v: server %v mapped %v; want server %v mapped %v", addr, a.Server, a.MappedAddr, server.IPv4(), public)
			}
			if got := c.nat(ctx, t); got != wantNAT[pl.Name] {
				t.Errorf("NAT reported as %s, want %s", got, wantNAT[pl.Name])
			}
			if err := h.Ping(ctx, native.IPv6()); err != nil {
				t.Errorf("client -> native: %v", err)
			}
			if err := native.Ping(ctx, addr); err != nil {
				t.Errorf("native -> client: %v", err)
			}
			if t.Failed() {
				for _, cmd := range [][]string{{"ip", "-6", "addr"}, {"ip", "-6", "route"}, {"ip", "-s", "link", "show", ifname}} {
					out, _ := h.Run(ctx, cmd...)
					t.Logf("%s:\n%s", strings.Join(cmd, " "), out)
				}
			}
			c.p.Stop()
			if !strings.Contains(c.p.Tail(5), "Teredo client stopped") {
				t.Errorf("no clean stop:\n%s", c.p.Tail(10))
			}
		})
	}
}

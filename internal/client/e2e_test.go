// SPDX-License-Identifier: MIT

//go:build e2e

package client_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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

// binary returns one of our daemons, built once per run.
func binary(t *testing.T, name string) string { return lab.Binary(t, name) }

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

// hookDir holds hook scripts that record their environment and then run
// Debian's client hook, in a directory the helper's unprivileged user can
// reach (a test's TempDir is private to root).
type hookDir struct{ dir string }

func newHookDir(t *testing.T) *hookDir {
	dir, err := os.MkdirTemp("", "miredo-client-hooks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &hookDir{dir: dir}
}

// hook writes a hook for one client run; it returns the script and the
// file it records each call in.
func (d *hookDir) hook(t *testing.T, name string) (script, record string) {
	script, record = filepath.Join(d.dir, name+".sh"), filepath.Join(d.dir, name+".calls")
	if err := os.WriteFile(record, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(record, 0o666) // past the umask
	body := "#!/bin/sh\n" +
		`echo "STATE=$STATE ADDRESS=${ADDRESS:-} MTU=${MTU:-} LLADDRESS=${LLADDRESS:-} OLD_STATE=$OLD_STATE OLD_ADDRESS=${OLD_ADDRESS:-} IFACE=$IFACE IFINDEX=$IFINDEX uid=$(id -u)" >> ` + record + "\n" +
		"[ -x /etc/miredo/client-hook ] && exec /etc/miredo/client-hook\nexit 0\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, record
}

// waitHook polls record until a line contains every one of want.
func waitHook(ctx context.Context, t *testing.T, record string, want ...string) string {
	t.Helper()
	for {
		b, _ := os.ReadFile(record)
	lines:
		for _, line := range strings.Split(string(b), "\n") {
			for _, w := range want {
				if !strings.Contains(line+" ", w) {
					continue lines
				}
			}
			return line
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no hook call with %q; calls:\n%s", want, b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pingBoth pings b from a and back, within ctx.
func pingBoth(ctx context.Context, a *lab.Host, aAddr netip.Addr, b *lab.Host, bAddr netip.Addr) error {
	if err := a.Ping(ctx, bAddr); err != nil {
		return fmt.Errorf("%s -> %s: %w", a.Name, b.Name, err)
	}
	if err := b.Ping(ctx, aAddr); err != nil {
		return fmt.Errorf("%s -> %s: %w", b.Name, a.Name, err)
	}
	return nil
}

// world is what every subtest uses: the lab, its server and relay, and a
// Debian Miredo client behind nat2 to reach Teredo to Teredo.
type world struct {
	l        *lab.Lab
	server   *lab.Host
	native   *lab.Host
	peer     *lab.Host
	peerAddr netip.Addr
	hooks    *hookDir
}

// startPeer (re)starts the Debian client on client2 and waits for it.
func (w *world) startPeer(ctx context.Context, t *testing.T, name string) *lab.Process {
	t.Helper()
	p, err := refmiredo.StartClient(ctx, w.l, w.peer, name, w.server.IPv4())
	if err != nil {
		t.Fatal(err)
	}
	if w.peerAddr, err = refmiredo.Qualified(ctx, w.peer); err != nil {
		t.Fatalf("Miredo peer: %v\n%s", err, p.Tail(20))
	}
	return p
}

// placements qualifies our client behind every NAT behaviour and checks
// the address, the NAT type, the hook, native IPv6 both ways and a Teredo
// peer both ways; kill ends the "none" run with SIGKILL to check that the
// helper still runs the last hooks.
func (w *world) placements(ctx context.Context, t *testing.T, tag string, kill bool) {
	for _, pl := range lab.Placements() {
		t.Run(pl.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			h, public, err := w.l.Place(ctx, pl)
			if err != nil {
				t.Fatal(err)
			}
			name := tag + "-" + pl.Name
			script, record := w.hooks.hook(t, name)
			args := []string{"--hook", script}
			if pl.Name == "full-cone" { // the packet process needs no file after start
				args = append(args, "--chroot", w.hooks.dir)
			}
			c := startClient(ctx, t, w.l, h, name, w.server.IPv4(), args...)
			addr := c.qualified(ctx, t)
			qualified := time.Since(c.start)
			a, _ := proto.ParseAddress(addr)
			if a.Server != w.server.IPv4() || a.MappedAddr != public {
				t.Errorf("address %v: server %v mapped %v; want server %v mapped %v", addr, a.Server, a.MappedAddr, w.server.IPv4(), public)
			}
			nat := c.nat(ctx, t)
			t.Logf("qualified in %v, NAT %s reported in %v: %s", qualified.Round(time.Millisecond), nat,
				time.Since(c.start).Round(time.Millisecond), refmiredo.Summary(addr))
			if nat != wantNAT[pl.Name] {
				t.Errorf("NAT reported as %s, want %s", nat, wantNAT[pl.Name])
			}
			// The same in the state SIGUSR1 prints.
			syscall.Kill(c.p.Pid(), syscall.SIGUSR1)
			c.waitLog(ctx, t, "status.address="+addr.String()+" ")
			c.waitLog(ctx, t, "status.nat="+wantNAT[pl.Name]+" ")
			line := waitHook(ctx, t, record, "STATE=up ", "ADDRESS="+addr.String()+" ", "MTU=1280 ", "OLD_STATE=down ", "IFACE="+ifname+" ")
			if !strings.Contains(line, "uid=65534") {
				t.Errorf("hook ran as %q, want nobody", line)
			}
			if err := c.h.WaitDefaultRoute(ctx, ifname); err != nil { // the Debian hook re-adds it
				t.Error(err)
			}
			if err := pingBoth(ctx, h, addr, w.native, w.native.IPv6()); err != nil {
				t.Errorf("native IPv6: %v", err)
			}
			start := time.Now()
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			if pl.Mode == lab.Symmetric && pl.NAT != "" {
				pctx, pcancel = context.WithTimeout(ctx, 4*time.Second)
			}
			defer pcancel()
			if err := pingBoth(pctx, h, addr, w.peer, w.peerAddr); err != nil {
				if pl.Mode == lab.Symmetric && pl.NAT != "" {
					t.Logf("Teredo peer behind %s unreachable from a symmetric NAT, as with Miredo: %v", lab.NAT2, err)
				} else {
					t.Errorf("Teredo peer: %v", err)
				}
			} else {
				t.Logf("Teredo peer both ways in %v", time.Since(start).Round(time.Millisecond))
			}
			if t.Failed() {
				for _, cmd := range [][]string{{"ip", "-6", "addr"}, {"ip", "-6", "route"}, {"ip", "-s", "link", "show", ifname}} {
					out, _ := h.Run(ctx, cmd...)
					t.Logf("%s:\n%s", strings.Join(cmd, " "), out)
				}
			}
			if kill && pl.Name == "none" {
				// The packet process dies; the helper must still say down
				// and destroy.
				syscall.Kill(c.p.Pid(), syscall.SIGKILL)
			} else {
				c.p.Stop()
				if !strings.Contains(c.p.Tail(5), "Teredo client stopped") {
					t.Errorf("no clean stop:\n%s", c.p.Tail(10))
				}
			}
			waitHook(ctx, t, record, "STATE=down ", "OLD_STATE=up ", "OLD_ADDRESS="+addr.String()+" ")
			waitHook(ctx, t, record, "STATE=destroy ")
		})
	}
}

// TestClient runs our client in the lab: behind every NAT behaviour
// against Debian's Miredo server and relay and a Debian Miredo client, then
// a NAT rebind and a server outage, then every NAT behaviour again against
// our own server.
func TestClient(t *testing.T) {
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	binary(t, "miredo-client")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	w := &world{l: l, server: l.Host(lab.Server), native: l.Host(lab.Native), peer: l.Host(lab.Client2), hooks: newHookDir(t)}
	srv, err := refmiredo.StartServer(ctx, l, w.server)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refmiredo.StartRelay(ctx, l, l.Host(lab.Relay)); err != nil {
		t.Fatal(err)
	}
	peer := w.startPeer(ctx, t, "miredo-peer")

	t.Run("miredo-server", func(t *testing.T) { w.placements(ctx, t, "ms", true) })

	t.Run("rebind", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		h, _, err := l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
		if err != nil {
			t.Fatal(err)
		}
		c := startClient(ctx, t, l, h, "rebind", w.server.IPv4())
		old := c.qualified(ctx, t)
		if nat := c.nat(ctx, t); nat != "restricted" {
			t.Errorf("NAT %s before the rebind, want restricted", nat)
		}
		if err := pingBoth(ctx, h, old, w.native, w.native.IPv6()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := l.Rebind(ctx, lab.NAT1); err != nil {
			t.Fatal(err)
		}
		// Traffic that goes unanswered makes the client ask its server
		// early; the ping succeeds once the new address is in place.
		if err := h.Ping(ctx, w.native.IPv6()); err != nil {
			t.Fatalf("no connectivity after the rebind: %v\n%s", err, c.p.Tail(20))
		}
		back := time.Since(start)
		addr := c.newAddr(ctx, t, old)
		a, _ := proto.ParseAddress(addr)
		if a.MappedAddr != l.WAN(lab.NAT1) {
			t.Errorf("new address maps to %v, want the new WAN %v", a.MappedAddr, l.WAN(lab.NAT1))
		}
		if err := w.native.Ping(ctx, addr); err != nil {
			t.Errorf("native -> new address: %v", err)
		}
		t.Logf("rebind noticed, connectivity back in %v: %s -> %s", back.Round(time.Millisecond), old, addr)
		if nat := c.nat(ctx, t); nat != "restricted" {
			t.Errorf("NAT %s after the rebind, want restricted", nat)
		}
		if back > 10*time.Second {
			t.Errorf("connectivity back after %v, want within 10 s", back)
		}
	})

	t.Run("SIGHUP", func(t *testing.T) {
		// Debian's if-up hook and a reload send SIGHUP when the network
		// changed: the client must resolve and qualify again at once,
		// keeping the interface up, and not die.
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		h, _, err := l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
		if err != nil {
			t.Fatal(err)
		}
		script, record := w.hooks.hook(t, "sighup")
		c := startClient(ctx, t, l, h, "sighup", w.server.IPv4(), "--hook", script)
		old := c.qualified(ctx, t)
		c.nat(ctx, t)
		hup := func(n int) {
			t.Helper()
			if err := syscall.Kill(c.p.Pid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			for strings.Count(c.p.Tail(400), "SIGHUP: resolving the Teredo server") < n {
				select {
				case <-c.p.Done():
					t.Fatalf("the client exited on SIGHUP: %v\n%s", c.p.Err(), c.p.Tail(10))
				case <-ctx.Done():
					t.Fatalf("no SIGHUP message:\n%s", c.p.Tail(20))
				case <-time.After(20 * time.Millisecond):
				}
			}
		}

		// Same network: a solicitation now, the same address.
		hup(1)
		c.waitLog(ctx, t, "msg=\"Teredo mapping refreshed\"")
		if addrs, _ := h.Addrs(ifname); !slices.Contains(addrs, old) {
			t.Errorf("address %v gone after SIGHUP on the same network: %v", old, addrs)
		}

		// New mapping, no host traffic: the refresh is 20 s or more away,
		// so only SIGHUP brings the new address this soon.
		if err := l.Rebind(ctx, lab.NAT1); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		hup(2)
		addr := c.newAddr(ctx, t, old)
		took := time.Since(start)
		a, _ := proto.ParseAddress(addr)
		if a.MappedAddr != l.WAN(lab.NAT1) {
			t.Errorf("new address maps to %v, want the new WAN %v", a.MappedAddr, l.WAN(lab.NAT1))
		}
		if took > 5*time.Second {
			t.Errorf("new address %v after SIGHUP, want within 5 s", took)
		}
		// The interface went from the old address to the new one without
		// going down in between.
		waitHook(ctx, t, record, "STATE=up ", "ADDRESS="+addr.String()+" ", "OLD_STATE=up ", "OLD_ADDRESS="+old.String()+" ")
		if b, _ := os.ReadFile(record); strings.Contains("\n"+string(b), "\nSTATE=down ") {
			t.Errorf("the interface went down on SIGHUP:\n%s", b)
		}
		if err := pingBoth(ctx, h, addr, w.native, w.native.IPv6()); err != nil {
			t.Error(err)
		}
		t.Logf("SIGHUP after a NAT rebind: new address in %v: %s -> %s", took.Round(time.Millisecond), old, addr)
	})

	t.Run("server outage", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		h, _, err := l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
		if err != nil {
			t.Fatal(err)
		}
		c := startClient(ctx, t, l, h, "outage", w.server.IPv4(), "--refresh-interval", "2s")
		addr := c.qualified(ctx, t)
		srv.Stop()
		stopped := time.Now()
		c.waitLog(ctx, t, "Lost Teredo connectivity")
		lost := time.Since(stopped)
		for addrs, _ := h.Addrs(ifname); slices.Contains(addrs, addr); addrs, _ = h.Addrs(ifname) {
			select {
			case <-ctx.Done():
				t.Fatalf("address %v kept while the server is gone", addr)
			case <-time.After(20 * time.Millisecond):
			}
		}
		if srv, err = refmiredo.StartServer(ctx, l, w.server); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		again := c.qualified(ctx, t)
		t.Logf("server stopped: loss noticed in %v; restarted: qualified again in %v", lost.Round(time.Millisecond),
			time.Since(restarted).Round(time.Millisecond))
		if again != addr {
			t.Errorf("same mapping, new address %v (was %v)", again, addr)
		}
		if d := time.Since(restarted); d > 10*time.Second {
			t.Errorf("qualified again %v after the server came back", d)
		}
		if err := pingBoth(ctx, h, again, w.native, w.native.IPv6()); err != nil {
			t.Error(err)
		}
	})

	t.Run("our server", func(t *testing.T) {
		srv.Stop()
		peer.Stop()
		// Miredo's worker process may outlive its supervisor briefly.
		for {
			out, err := w.server.Run(ctx, "ss", "-Hlun", "sport = :3544")
			if err != nil {
				t.Fatal(err)
			}
			if len(strings.TrimSpace(string(out))) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("Miredo's server still listens: %s", out)
			case <-time.After(20 * time.Millisecond):
			}
		}
		if _, err := l.Start(ctx, w.server, "our-server", binary(t, "miredo-server"), "-c", "/dev/null",
			"--primary", w.server.IPv4().String(), "-p", filepath.Join(l.LogDir, "our-server.pid")); err != nil {
			t.Fatal(err)
		}
		if err := w.server.WaitUDP(ctx, proto.Port); err != nil {
			t.Fatal(err)
		}
		w.startPeer(ctx, t, "miredo-peer-ours")
		w.placements(ctx, t, "os", false)
	})
}

// waitLog polls the client's log for msg.
func (c *ourClient) waitLog(ctx context.Context, t *testing.T, msg string) {
	t.Helper()
	for !strings.Contains(c.p.Tail(200), msg) {
		select {
		case <-ctx.Done():
			t.Fatalf("no %q in the log:\n%s", msg, c.p.Tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// newAddr waits until the tunnel carries a Teredo address other than old,
// and old is gone.
func (c *ourClient) newAddr(ctx context.Context, t *testing.T, old netip.Addr) netip.Addr {
	t.Helper()
	for {
		addrs, _ := c.h.Addrs(ifname)
		var got netip.Addr
		for _, a := range addrs {
			if a == old {
				got = netip.Addr{}
				break
			}
			if refmiredo.TeredoPrefix().Contains(a) {
				got = a
			}
		}
		if got.IsValid() {
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no new address (old %v, now %v):\n%s", old, addrs, c.p.Tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

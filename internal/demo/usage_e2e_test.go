// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/pkg/proto"
)

// debianFiles are the configuration files Debian's miredo and miredo-server
// packages install, which our daemons find at their default paths.
var debianFiles = []string{"/etc/miredo/miredo.conf", "/etc/miredo/miredo-server.conf"}

var usageRE = regexp.MustCompile("\\| `(miredo-(client|relay|server) [^`]*)` \\|")

// TestREADMEUsageLines starts each binary with the usage line the README's
// role table gives it, on a host where Debian's Miredo configuration files
// are installed at the default paths, and checks that the three together
// carry IPv6 to a client behind a NAT. The relay must not read Miredo's
// client configuration; the client and the server read Debian's files and
// let the command line win over them. The lab has no DNS, so the client's
// server name is replaced by the lab server's address; every other word of
// each line is the README's.
func TestREADMEUsageLines(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	for _, f := range debianFiles {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("Debian's miredo is not installed (make check installs it): %v", err)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string][]string{}
	for _, m := range usageRE.FindAllStringSubmatch(string(readme), -1) {
		lines[m[2]] = strings.Fields(m[1])
	}
	if len(lines) != 3 {
		t.Fatalf("README role table: found usage lines for %v, want client, relay and server", lines)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	server, relay, native := l.Host(lab.Server), l.Host(lab.Relay), l.Host(lab.Native)
	client, _, err := l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
	if err != nil {
		t.Fatal(err)
	}
	start := func(h *lab.Host, role string) *lab.Process {
		argv := append([]string{lab.Binary(t, lines[role][0])}, lines[role][1:]...)
		for i, a := range argv {
			if a == "teredo.example.net" {
				argv[i] = server.IPv4().String()
			}
		}
		t.Logf("%s: %s", h.Name, strings.Join(argv[1:], " "))
		p, err := l.Start(ctx, h, lines[role][0], argv...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// running is ctx, ended early when p exits: a daemon that refused
	// to start fails the test at once.
	running := func(p *lab.Process) context.Context {
		rctx, rcancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-p.Done():
			case <-rctx.Done():
			}
			rcancel()
		}()
		t.Cleanup(rcancel)
		return rctx
	}
	alive := func(p *lab.Process, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v (exit: %v)\n%s", p.Name, err, p.Err(), p.Tail(20))
		}
	}
	sp := start(server, "server")
	if !strings.Contains(strings.Join(lines["server"], " "), server.IPv4().String()) {
		t.Fatalf("the README's server line %q does not bind the lab's server address %v", lines["server"], server.IPv4())
	}
	alive(sp, server.WaitUDP(running(sp), proto.Port))
	rp := start(relay, "relay")
	alive(rp, relay.WaitLink(running(rp), "teredo"))
	cp := start(client, "client")
	cctx := running(cp)
	addr, err := client.WaitAddr(cctx, "teredo", netip.MustParsePrefix("2001::/32"))
	alive(cp, err)
	alive(cp, client.WaitDefaultRoute(cctx, "teredo"))
	alive(cp, client.Ping(cctx, native.IPv6()))
	alive(cp, native.Ping(cctx, addr))
	for _, p := range []*lab.Process{sp, rp, cp} {
		if logged := p.Tail(50); strings.Contains(logged, "overridden by the command line") {
			for _, line := range strings.Split(logged, "\n") {
				if strings.Contains(line, "overridden") {
					t.Logf("%s: %s", p.Name, line)
				}
			}
		}
	}
}

// TestCheckConfigUnprivileged: each binary checks a configuration as an
// unprivileged user, with no capability, DNS or interface; a host name is
// not looked up (this machine has no resolver).
func TestCheckConfigUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to nobody")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // nobody must reach the files
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for role, conf := range map[string]string{
		"client": "ServerAddress teredo.example.invalid\nInterfaceName teredo\n",
		"relay":  "RelayType cone\nBindAddress relay.example.invalid\n",
		"server": "ServerBindAddress server.example.invalid\n",
	} {
		path := filepath.Join(dir, role+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		bin := lab.Binary(t, "miredo-"+role)
		out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
			bin, "--check-config", "-c", path).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Errorf("miredo-%s --check-config as nobody: %v\n%s", role, err, out)
		}
	}
}

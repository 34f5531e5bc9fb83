// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestShutdown stops each of our daemons with SIGTERM to its main process
// alone (as `kill` or a service manager does) and checks that it leaves
// nothing behind: no process of its group (the client's privileged helper
// included), no tunnel interface, no route, no bound port; the client's
// hook ran down and destroy.
func TestShutdown(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	server, relay, native := l.Host(lab.Server), l.Host(lab.Relay), l.Host(lab.Native)
	client, _, err := l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
	if err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(l.LogDir, "hook.calls")
	hook := filepath.Join(l.LogDir, "hook")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$STATE\" >> "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(l.LogDir), l.LogDir} { // the hook runs as nobody
		os.Chmod(d, 0o777)
	}
	start := func(h *lab.Host, role string, args ...string) *lab.Process {
		p, err := l.Start(ctx, h, role, append([]string{lab.Binary(t, "miredo-"+role), "--control-socket", ""}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	sp := start(server, "server", "--primary", server.IPv4().String())
	if err := server.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatal(err)
	}
	rp := start(relay, "relay", "--cone", "-c", "/dev/null")
	if err := relay.WaitLink(ctx, "teredo"); err != nil {
		t.Fatal(err)
	}
	cp := start(client, "client", "-c", "/dev/null", "--server", server.IPv4().String(), "--hook", hook)
	addr, err := client.WaitAddr(ctx, "teredo", netip.MustParsePrefix("2001::/32"))
	if err == nil {
		err = client.WaitDefaultRoute(ctx, "teredo")
	}
	if err == nil {
		err = native.Ping(ctx, addr)
	}
	if err != nil {
		t.Fatal(err)
	}

	term := func(p *lab.Process) {
		t.Helper()
		pgid := p.Pid()
		if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not exit on SIGTERM", p.Name)
		}
		if !strings.Contains(p.Tail(5), "stopped") {
			t.Errorf("%s: no clean stop:\n%s", p.Name, p.Tail(5))
		}
		if left := group(pgid); len(left) > 0 {
			t.Errorf("%s left processes behind: %v", p.Name, left)
		}
	}
	gone := func(h *lab.Host, what string, argv ...string) {
		t.Helper()
		out, _ := h.Run(ctx, argv...)
		if strings.Contains(string(out), what) {
			t.Errorf("%s: %q still there after the stop:\n%s", h.Name, what, out)
		}
	}

	term(cp)
	gone(client, "teredo", "ip", "link")
	gone(client, "teredo", "ip", "-6", "route")
	if b, _ := os.ReadFile(record); !strings.HasSuffix(string(b), "down\ndestroy\n") {
		t.Errorf("client hook calls %q, want down then destroy last", b)
	}
	term(rp)
	gone(relay, "teredo", "ip", "link")
	gone(relay, "2001::/32", "ip", "-6", "route")
	term(sp)
	gone(server, ":0DD8", "cat", "/proc/net/udp")
}

// group lists the processes still in process group pgid.
func group(pgid int) []string {
	ents, _ := os.ReadDir("/proc")
	var left []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			left = append(left, fmt.Sprintf("%d %s", pid, strings.TrimSpace(string(comm))))
		}
	}
	return left
}

// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/internal/lab/refmiredo"
	"github.com/miredo-go/miredo/pkg/proto"
)

var full = flag.Bool("full", false, "time Debian's Miredo under each fault too (make faults)")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

const ifname = "teredo"

// world is a lab with our server and relay running.
type world struct {
	ctx                   context.Context // the whole test's: daemons outlive subtests
	l                     *lab.Lab
	server, relay, native *lab.Host
	relayProc             *lab.Process
}

func newWorld(t *testing.T) *world {
	t.Helper()
	if reason := refmiredo.Missing(); reason != "" {
		t.Skip("refmiredo: " + reason)
	}
	l := lab.New(t, lab.Options{})
	w := &world{ctx: t.Context(), l: l, server: l.Host(lab.Server), relay: l.Host(lab.Relay), native: l.Host(lab.Native)}
	ctx := w.ctx
	if _, err := l.Start(ctx, w.server, "server", lab.Binary(t, "miredo-server"), "--primary", w.server.IPv4().String(),
		"--control-socket", "", "--rate-limit", "0"); err != nil {
		t.Fatal(err)
	}
	if err := w.server.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatal(err)
	}
	w.startRelay(t, "relay")
	return w
}

// startRelay (re)starts our relay and waits for its tunnel.
func (w *world) startRelay(t *testing.T, name string) {
	t.Helper()
	p, err := w.l.Start(w.ctx, w.relay, name, lab.Binary(t, "miredo-relay"), "--cone", "-c", "/dev/null", "--control-socket", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.relay.WaitLink(w.ctx, ifname); err != nil {
		t.Fatalf("%v\n%s", err, p.Tail(10))
	}
	w.relayProc = p
}

// client is one run of a Teredo client, ours or Miredo's.
type client struct {
	p      *lab.Process
	h      *lab.Host
	ifname string
	addr   netip.Addr
}

// startClient runs ours ("ours") or Debian's ("miredo") client on h and
// waits for its address; extra goes to ours.
func (w *world) startClient(t *testing.T, ctx context.Context, who string, h *lab.Host, name string, extra ...string) *client {
	t.Helper()
	c := &client{h: h}
	var err error
	if who == "ours" {
		conf := filepath.Join(w.l.LogDir, name+".conf")
		os.WriteFile(conf, []byte("InterfaceName "+ifname+"\n"), 0o644)
		argv := append([]string{lab.Binary(t, "miredo-client"), "-c", conf, "--server", w.server.IPv4().String(),
			"--control-socket", "", "--log-level", "debug"}, extra...)
		c.p, err = w.l.Start(ctx, h, name, argv...)
		c.ifname = ifname
	} else {
		c.p, err = refmiredo.StartClient(ctx, w.l, h, name, w.server.IPv4())
		c.ifname = refmiredo.DefaultIfname
	}
	if err != nil {
		t.Fatal(err)
	}
	c.addr, err = h.WaitAddr(ctx, c.ifname, refmiredo.TeredoPrefix())
	if err == nil {
		err = h.WaitDefaultRoute(ctx, c.ifname)
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, c.p.Tail(20))
	}
	return c
}

// stop ends the client and waits for its interface to go.
func (c *client) stop(t *testing.T) {
	t.Helper()
	c.p.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.h.Addrs(c.ifname); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: interface %s still there", c.h.Name, c.ifname)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// whos is who a fault test runs: our client, and with -full (make faults)
// Debian's Miredo too, whose figures the CI run does not wait for.
func whos() []string {
	if *full {
		return []string{"ours", "miredo"}
	}
	return []string{"ours"}
}

// table collects one line per measurement (from parallel subtests too),
// printed at the end of a test.
type table struct {
	mu   sync.Mutex
	rows []string
}

func (tb *table) add(format string, args ...any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.rows = append(tb.rows, fmt.Sprintf(format, args...))
}

func (tb *table) log(t *testing.T, title string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	sort.Strings(tb.rows)
	t.Logf("%s:\n%s", title, strings.Join(tb.rows, "\n"))
}

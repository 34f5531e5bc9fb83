// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// notifySocket is a service manager's notification socket, owned by the
// test: it collects what a daemon sends.
type notifySocket struct {
	path string
	c    *net.UnixConn
}

func newNotifySocket(t *testing.T, dir, name string) *notifySocket {
	t.Helper()
	path := filepath.Join(dir, name)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The daemons send after dropping to nobody, as to systemd's socket,
	// which anyone may write to.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	return &notifySocket{path: path, c: c}
}

// env is what the daemon needs to talk to the socket, with a watchdog.
func (n *notifySocket) env() []string {
	return []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=400000"}
}

// next returns the next message, or fails after timeout.
func (n *notifySocket) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	n.c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	k, err := n.c.Read(buf)
	if err != nil {
		t.Fatalf("%s: no notification: %v", n.path, err)
	}
	return string(buf[:k])
}

// waitFor reads messages until one contains want, and returns it.
func (n *notifySocket) waitFor(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := n.next(t, time.Until(deadline))
		if strings.Contains(m, want) {
			return m
		}
		t.Logf("%s: %q", filepath.Base(n.path), m)
	}
}

// TestNotify starts the three daemons under a notification socket the test
// owns, as systemd runs Type=notify units: each says READY=1 once its role
// is up (the client only once qualified with its interface configured),
// sends STATUS= lines, pings the watchdog, and says STOPPING=1 on SIGTERM.
func TestNotify(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	server, relay := l.Host(lab.Server), l.Host(lab.Relay)
	client, _, err := l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
	if err != nil {
		t.Fatal(err)
	}
	start := func(h *lab.Host, role string, args ...string) (*notifySocket, *lab.Process) {
		n := newNotifySocket(t, dir, role)
		p, err := l.StartEnv(ctx, h, role, n.env(), append([]string{lab.Binary(t, "miredo-"+role), "--control-socket", ""}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return n, p
	}

	ns, _ := start(server, "server", "--primary", server.IPv4().String())
	if m := ns.waitFor(t, "READY=1", 10*time.Second); !strings.Contains(m, "STATUS=serving on 192.0.2.10 and 192.0.2.11") {
		t.Errorf("server ready: %q", m)
	}
	ns.waitFor(t, "WATCHDOG=1", 2*time.Second)

	nr, _ := start(relay, "relay", "--cone", "-c", "/dev/null")
	if m := nr.waitFor(t, "READY=1", 10*time.Second); !strings.Contains(m, "STATUS=cone relay for 2001::/32 on teredo") {
		t.Errorf("relay ready: %q", m)
	}
	nr.waitFor(t, "WATCHDOG=1", 2*time.Second)

	nc, cp := start(client, "client", "-c", "/dev/null", "--server", server.IPv4().String())
	if m := nc.next(t, 10*time.Second); !strings.HasPrefix(m, "STATUS=") || strings.Contains(m, "READY=1") {
		t.Errorf("client's first notification %q, want a status before it is ready", m)
	}
	m := nc.waitFor(t, "READY=1", 10*time.Second)
	// Ready means the interface is configured: the address is there now.
	addrs, err := client.Addrs("teredo")
	if err != nil || len(addrs) == 0 || !strings.Contains(m, "STATUS=Teredo address "+addrs[0].String()) {
		t.Errorf("client ready with %q; interface has %v, %v", m, addrs, err)
	}
	if !netip.MustParsePrefix("2001::/32").Contains(addrs[0]) {
		t.Errorf("interface address %v", addrs[0])
	}
	nc.waitFor(t, "WATCHDOG=1", 2*time.Second)
	cp.Stop()
	nc.waitFor(t, "STOPPING=1", 5*time.Second)
}

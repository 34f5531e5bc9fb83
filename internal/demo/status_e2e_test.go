// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestStatus runs our three daemons in the lab with control sockets, and
// asks each with its status command, readable and as JSON, after the
// client has pinged the native host; a malformed request in between must
// leave the daemons answering.
func TestStatus(t *testing.T) {
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
	sock := func(role string) string { return filepath.Join(l.LogDir, "run", role+".sock") }
	for _, d := range []struct {
		h    *lab.Host
		role string
		args []string
	}{
		{server, "server", []string{"--primary", server.IPv4().String(), "--metrics-listen", "127.0.0.1:9102"}},
		{relay, "relay", []string{"--cone", "-c", "/dev/null", "--metrics-listen", "127.0.0.1:9101"}},
		{client, "client", []string{"-c", "/dev/null", "--server", server.IPv4().String()}},
	} {
		argv := append([]string{lab.Binary(t, "miredo-"+d.role)}, d.args...)
		if _, err := l.Start(ctx, d.h, d.role, append(argv, "--control-socket", sock(d.role))...); err != nil {
			t.Fatal(err)
		}
		if d.role == "server" {
			if err := server.WaitUDP(ctx, proto.Port); err != nil {
				t.Fatal(err)
			}
		}
	}
	addr, err := client.WaitAddr(ctx, "teredo", netip.MustParsePrefix("2001::/32"))
	if err == nil {
		err = client.WaitDefaultRoute(ctx, "teredo")
	}
	if err == nil {
		err = client.Ping(ctx, native.IPv6())
	}
	if err != nil {
		t.Fatal(err)
	}

	status := func(role string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, lab.Binary(t, "miredo-"+role), append([]string{"status", "--control-socket", sock(role)}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("miredo-%s status %v: %v\n%s", role, args, err, out)
		}
		return out
	}
	// A malformed request: an error answer, and the daemon goes on.
	c, err := net.Dial("unix", sock("client"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("{\"command\": 42}\n"))
	var bad struct{ Error string }
	if err := json.NewDecoder(c).Decode(&bad); err != nil || !strings.Contains(bad.Error, "malformed") {
		t.Errorf("malformed request answered %+v, %v", bad, err)
	}
	c.Close()

	var cl struct {
		State       string
		NATType     string `json:"nat_type"`
		Address     string
		MappedPort  int  `json:"mapped_port"`
		Configured  bool `json:"interface_configured"`
		PeerCount   int  `json:"peer_count"`
		Peers       []struct{ Address string }
		Counters    map[string]map[string]float64
		LastRefresh string `json:"last_refresh"`
	}
	// The NAT probe ends a few hundred milliseconds after qualifying.
	var out []byte
	for deadline := time.Now().Add(10 * time.Second); cl.NATType != "restricted" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out = status("client", "--json", "--peers")
		if err := json.Unmarshal(out, &cl); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("miredo-client status --json --peers:\n%s", out)
	if cl.State != "qualified" || cl.Address != addr.String() || !cl.Configured || cl.NATType != "restricted" ||
		cl.MappedPort == 0 || cl.PeerCount == 0 || len(cl.Peers) != cl.PeerCount || cl.Counters["engine"]["delivered"] == 0 || cl.LastRefresh == "" {
		t.Errorf("client status %+v", cl)
	}
	if text := string(status("client")); !strings.Contains(text, "state:         qualified (interface configured)") || !strings.Contains(text, addr.String()) {
		t.Errorf("client summary:\n%s", text)
	}

	var rl struct {
		RelayType string `json:"relay_type"`
		Prefix    string
		PeerCount int `json:"peer_count"`
		Counters  map[string]map[string]float64
	}
	out = status("relay", "--json")
	t.Logf("miredo-relay status --json:\n%s", out)
	if err := json.Unmarshal(out, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.RelayType != "cone" || rl.Prefix != "2001::/32" || rl.PeerCount == 0 || rl.Counters["engine"]["delivered"] == 0 {
		t.Errorf("relay status %+v", rl)
	}
	t.Logf("miredo-relay status:\n%s", status("relay", "--peers"))

	var sv struct {
		Primary, Secondary string
		SocketsInUse       int `json:"sockets_in_use"`
		Counters           map[string]map[string]float64
	}
	out = status("server", "--json")
	t.Logf("miredo-server status --json:\n%s", out)
	if err := json.Unmarshal(out, &sv); err != nil {
		t.Fatal(err)
	}
	if sv.Primary != server.IPv4().String() || sv.Secondary != server.IPv4s()[1].String() || sv.Counters["server"]["answered"] == 0 ||
		sv.Counters["sockets"]["read_datagrams"] == 0 || sv.Counters["sockets"]["write_datagrams"] == 0 ||
		runtime.NumCPU() > 1 && sv.SocketsInUse == 0 { // one core: one socket, nothing to steer
		t.Errorf("server status %+v", sv)
	}
	t.Logf("miredo-server status:\n%s", status("server"))

	// Metrics, scraped inside each daemon's namespace.
	for _, m := range []struct {
		h    *lab.Host
		addr string
		want []string
	}{
		{relay, "127.0.0.1:9101", []string{`miredo_engine_delivered_total{role="relay"} `, `miredo_engine_peers{role="relay"} 1`,
			`miredo_engine_dropped_total{reason="multicast_dst",role="relay"}`, "go_goroutines "}},
		{server, "127.0.0.1:9102", []string{`miredo_server_answered_total{role="server"} `, `miredo_sockets_read_datagrams_total{role="server"} `,
			`miredo_sockets_coalesce_sleeps_total{role="server"} `, `miredo_sockets_spread_widened_total{role="server"} `,
			"process_resident_memory_bytes "}},
	} {
		// The connection is made in the namespace (http.Client would
		// dial from another thread, outside it).
		var c net.Conn
		if err := m.h.Do(func() (err error) { c, err = net.Dial("tcp", m.addr); return err }); err != nil {
			t.Fatalf("%s metrics: %v", m.h.Name, err)
		}
		fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", m.addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s metrics: %v", m.h.Name, err)
		}
		body, err := io.ReadAll(resp.Body)
		c.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s metrics: %v %v", m.h.Name, resp.Status, err)
		}
		for _, w := range m.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s metrics lack %q", m.h.Name, w)
			}
		}
	}
}

// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestReload changes the configuration files of running daemons and sends
// SIGHUP: the client keeps its address when nothing it uses changed, names
// what needs a restart, and follows its server to a new address; the
// server moves to new addresses and takes a new rate limit; the relay
// names what needs a restart and keeps forwarding.
func TestReload(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	server, relay, native := l.Host(lab.Server), l.Host(lab.Relay), l.Host(lab.Native)
	client, _, err := l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
	if err != nil {
		t.Fatal(err)
	}
	// A second address pair on the server host, for the server to move to.
	moved := [2]netip.Addr{netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("192.0.2.13")}
	for _, a := range moved {
		if out, err := server.Run(ctx, "ip", "addr", "add", a.String()+"/24", "dev", server.Ifname); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	// The daemons read their files again after dropping to nobody, as
	// from /etc/miredo.
	for _, d := range []string{filepath.Dir(l.LogDir), l.LogDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := func(name, text string) string {
		p := filepath.Join(l.LogDir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sock := func(role string) string { return filepath.Join(l.LogDir, role+".sock") }
	serverConf := conf("server.conf", "ServerBindAddress 192.0.2.10\nRateLimit 5000\n")
	relayConf := conf("relay.conf", "RelayType cone\nInterfaceName teredo\n")
	clientConf := conf("client.conf", "RelayType client\nServerAddress 192.0.2.10\nInterfaceName teredo\n")
	start := func(h *lab.Host, role, file string) *lab.Process {
		p, err := l.Start(ctx, h, role, lab.Binary(t, "miredo-"+role), "-c", file, "--control-socket", sock(role))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	sp := start(server, "server", serverConf)
	if err := server.WaitUDP(ctx, proto.Port); err != nil {
		t.Fatal(err)
	}
	rp := start(relay, "relay", relayConf)
	if err := relay.WaitLink(ctx, "teredo"); err != nil {
		t.Fatal(err)
	}
	cp := start(client, "client", clientConf)
	addr, err := client.WaitAddr(ctx, "teredo", netip.MustParsePrefix("2001::/32"))
	if err == nil {
		err = client.Ping(ctx, native.IPv6())
	}
	if err != nil {
		t.Fatal(err)
	}
	hup := func(p *lab.Process, wantLog string) {
		t.Helper()
		before := strings.Count(p.Tail(1000), wantLog)
		syscall.Kill(p.Pid(), syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(p.Tail(1000), wantLog) <= before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no %q after SIGHUP:\n%s", p.Name, wantLog, p.Tail(10))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	status := func(role string, v any) {
		t.Helper()
		out, err := exec.CommandContext(ctx, lab.Binary(t, "miredo-"+role), "status", "--json", "--control-socket", sock(role)).Output()
		if err == nil {
			err = json.Unmarshal(out, v)
		}
		if err != nil {
			t.Fatalf("%s status: %v", role, err)
		}
	}
	var cs struct {
		State   string
		Address netip.Addr
		Server  netip.Addr
	}
	clientIs := func(want netip.Addr) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			status("client", &cs)
			if cs.State == "qualified" && (cs.Address == want || !want.IsValid() && cs.Address != addr) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("client status %+v, want qualified with %v:\n%s", cs, want, cp.Tail(15))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The client, nothing changed: it asks the server again and keeps its
	// address.
	hup(cp, "SIGHUP: resolving the Teredo server and qualifying again")
	clientIs(addr)
	if strings.Contains(cp.Tail(20), "restart to apply") {
		t.Errorf("a reload with nothing changed asked for a restart:\n%s", cp.Tail(10))
	}
	// Something it cannot apply: named, and the address stays.
	conf("client.conf", "RelayType client\nServerAddress 192.0.2.10\nInterfaceName teredo2\nLogLevel debug\n")
	hup(cp, "SIGHUP: restart to apply: InterfaceName")
	clientIs(addr)

	// The relay: a new MTU needs a restart; it goes on forwarding.
	conf("relay.conf", "RelayType cone\nInterfaceName teredo\nInterfaceMTU 1400\n")
	hup(rp, "SIGHUP: restart to apply: InterfaceMTU")
	if err := native.Ping(ctx, addr); err != nil {
		t.Errorf("relay after its reload: %v", err)
	}

	// The server moves to 192.0.2.12 and .13 with a new limit.
	conf("server.conf", "ServerBindAddress 192.0.2.12\nRateLimit 77\nLogLevel debug\n")
	hup(sp, "serving on new addresses")
	var ss struct {
		Primary, Secondary netip.Addr
		RateLimit          uint32 `json:"rate_limit"`
	}
	status("server", &ss)
	if ss.Primary != moved[0] || ss.Secondary != moved[1] || ss.RateLimit != 77 {
		t.Errorf("server status after the reload: %+v", ss)
	}
	udp, _ := server.Run(ctx, "cat", "/proc/net/udp")
	if strings.Contains(string(udp), ":0DD8") && strings.Contains(string(udp), "0A0200C0:0DD8") {
		t.Errorf("the server still listens on 192.0.2.10:3544:\n%s", udp)
	}
	// The client follows: the new server in its file, and a reload.
	conf("client.conf", "RelayType client\nServerAddress 192.0.2.12\nInterfaceName teredo\n")
	hup(cp, "SIGHUP: new Teredo server")
	clientIs(netip.Addr{})
	if cs.Server != moved[0] {
		t.Errorf("client's server %v after the reload, want %v", cs.Server, moved[0])
	}
	a, _ := proto.ParseAddress(cs.Address)
	if a.Server != moved[0] {
		t.Errorf("new address %v names server %v", cs.Address, a.Server)
	}
	if err := client.Ping(ctx, native.IPv6()); err != nil {
		t.Errorf("client after moving to the new server: %v", err)
	}
	t.Logf("client: %v -> %v (server %v -> %v)", addr, cs.Address, "192.0.2.10", cs.Server)
}

// SPDX-License-Identifier: MIT

package client

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/proto"
)

// hookKeys is Miredo's client-hook environment (teredo.md §1.8), and the
// PATH we add.
var hookKeys = map[string]bool{
	"PATH": true, "IFACE": true, "IFINDEX": true, "STATE": true,
	"ADDRESS": true, "LLADDRESS": true, "MTU": true,
	"OLD_STATE": true, "OLD_ADDRESS": true, "OLD_LLADDRESS": true, "OLD_MTU": true,
}

// FuzzHookEnv: for any interface name the configuration accepts (the
// file's InterfaceName and --interface pass conf.CheckInterfaceName), any
// interface index, and any pair of requests the helper accepts (the
// current one and the one before, as parseRequest reads them off the
// socket), the hook's environment is one KEY=VALUE per key of Miredo's
// set, each key once, with no NUL (exec would refuse it) and no newline;
// ADDRESS, LLADDRESS and MTU are there exactly when the request is up, the
// OLD_ ones exactly when the previous one was; and every value reads back
// to what went in.
func FuzzHookEnv(f *testing.F) {
	a1 := netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd")
	cone := netip.MustParseAddr("2001:0:c000:20a:8000:63bf:3c9b:fffd")
	up1, up2 := request{up: true, addr: a1, mtu: 1280}.marshal(1), request{up: true, addr: cone, mtu: 65535}.marshal(2)
	down := request{}.marshal(3)
	for _, s := range []struct {
		iface    string
		ifindex  int
		req, old []byte
		state    uint8
	}{
		{"teredo", 7, up1, down, 0},
		{"teredo", 7, up2, up1, 0},
		{"teredo0", 1 << 30, down, up2, 1},
		{"te=redo", 2, down, down, 2},
		{"t%d", -1, up1, up1, 0},
		{"..x", 0, nil, up1, 1},
	} {
		f.Add(s.iface, s.ifindex, s.req, s.old, s.state)
	}
	f.Fuzz(func(t *testing.T, iface string, ifindex int, reqb, oldb []byte, sel uint8) {
		if conf.CheckInterfaceName(iface) != nil {
			return // refused at start
		}
		_, req, err := parseRequest(reqb)
		if err != nil {
			return // the helper exits
		}
		_, old, err := parseRequest(oldb)
		if err != nil {
			return
		}
		state := [...]string{"up", "down", "destroy"}[sel%3]
		env := hookEnv(iface, ifindex, state, req, old)
		got := map[string]string{}
		for _, kv := range env {
			if strings.ContainsAny(kv, "\x00\n") {
				t.Fatalf("entry %q holds a NUL or a newline", kv)
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !hookKeys[k] {
				t.Fatalf("entry %q: not KEY=VALUE with a key of Miredo's hook environment", kv)
			}
			if _, dup := got[k]; dup {
				t.Fatalf("key %s twice in %q", k, env)
			}
			got[k] = v
		}
		want := map[string]string{"IFACE": iface, "IFINDEX": strconv.Itoa(ifindex), "STATE": state, "OLD_STATE": "down"}
		if v := got["PATH"]; v == "" {
			t.Errorf("no PATH in %q", env)
		}
		checkRequestEnv(t, got, "", req)
		if old.up {
			want["OLD_STATE"] = "up"
		}
		checkRequestEnv(t, got, "OLD_", old)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s=%q, want %q (env %q)", k, got[k], v, env)
			}
		}
		if n, err := strconv.Atoi(got["IFINDEX"]); err != nil || n != ifindex {
			t.Errorf("IFINDEX=%q reads back as %d, %v; want %d", got["IFINDEX"], n, err, ifindex)
		}
	})
}

// checkRequestEnv checks the ADDRESS, LLADDRESS and MTU variables (with
// prefix) against req: present and reading back to it when up, absent
// when down.
func checkRequestEnv(t *testing.T, env map[string]string, prefix string, req request) {
	t.Helper()
	keys := []string{prefix + "ADDRESS", prefix + "LLADDRESS", prefix + "MTU"}
	if !req.up {
		for _, k := range keys {
			if v, ok := env[k]; ok {
				t.Errorf("%s=%q for a down request", k, v)
			}
		}
		return
	}
	addr, err := netip.ParseAddr(env[keys[0]])
	if err != nil || addr != req.addr || !proto.HasPrefix(addr, proto.DefaultPrefix) {
		t.Errorf("%s=%q reads back as %v, %v; want %v", keys[0], env[keys[0]], addr, err, req.addr)
	}
	ll, err := netip.ParseAddr(env[keys[1]])
	wantLL := proto.LinkLocalClient()
	if a, _ := proto.ParseAddress(req.addr); a.Cone() {
		wantLL = proto.LinkLocalClientCone()
	}
	if err != nil || ll != wantLL || !ll.IsLinkLocalUnicast() {
		t.Errorf("%s=%q for %v, want %v", keys[1], env[keys[1]], req.addr, wantLL)
	}
	if mtu, err := strconv.Atoi(env[keys[2]]); err != nil || mtu != req.mtu || mtu < proto.MinMTU || mtu > 65535 {
		t.Errorf("%s=%q, want %d", keys[2], env[keys[2]], req.mtu)
	}
}

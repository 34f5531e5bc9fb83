// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/clitest"
	"github.com/miredo-go/miredo/pkg/daemon"
)

// TestUsageErrors: configuration and flag mistakes stop the relay before it
// touches anything, with "file:line: reason" and exit status 2.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cone := file("cone.conf", "RelayType cone\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"client file", []string{"-c", file("client.conf", "# a client\nRelayType client\nServerAddress 192.0.2.10\n")},
			"client.conf:2: RelayType \"client\": this binary is the Teredo relay"},
		{"file without RelayType", []string{"-c", file("none.conf", "InterfaceName teredo\n")},
			"none.conf: RelayType not set, which means client (set it, or give --cone or --restricted): this binary is the Teredo relay"},
		{"unknown directive", []string{"-c", file("typo.conf", "RelayType cone\nPrefx 2001::\n")}, "typo.conf:2:"},
		{"bad MTU in file", []string{"-c", file("mtu.conf", "RelayType cone\nInterfaceMTU 100\n")}, "mtu.conf:2:"},
		{"named file missing", []string{"-c", filepath.Join(dir, "missing.conf")}, "missing.conf"},
		{"cone and restricted", []string{"-c", cone, "--cone", "--restricted"}, "exclude each other"},
		{"bad MTU flag", []string{"-c", cone, "--mtu", "1000"}, "MTU 1000"},
		{"bad prefix", []string{"-c", cone, "--prefix", "ff02::"}, "prefix ff02::"},
		{"IPv6 bind address", []string{"-c", cone, "--bind-address", "2001:db8::1"}, "must be IPv4"},
		{"bind port", []string{"-c", cone, "--bind-port", "70000"}, "out of range"},
		{"argument", []string{"-c", cone, "extra"}, "unexpected argument"},
		{"log level", []string{"-c", cone, "--log-level", "loud"}, "--log-level"},
		{"tun backend", []string{"-c", cone, "--tun-backend", "fast"}, "unknown tunnel backend \"fast\" (have offload, batch, water)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := daemon.Main(newApp(), append([]string{"miredo-relay"}, tc.args...), &stderr)
			if code != daemon.ExitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, daemon.ExitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestVersion: -V prints the version and exits 0.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	app := newApp()
	app.Writer = &stdout
	if code := daemon.Main(app, []string{"miredo-relay", "-V"}, &stderr); code != 0 || !strings.Contains(stdout.String(), "miredo-relay") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestFlagsWinOverFile: a flag given on the command line replaces the
// file's directive, with one warning naming what was ignored; the file wins
// over a flag's default; a flag that agrees with the file warns of nothing.
func TestFlagsWinOverFile(t *testing.T) {
	dir := t.TempDir()
	file := func(text string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".conf")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type want struct {
		restricted bool
		iface      string
		mtu        int
		prefix     string
		bind       string
		overrides  []string // Override.String without the file name
	}
	cases := []struct {
		name string
		conf string
		args []string
		want want
	}{
		{"client file, --cone", "RelayType client\nInterfaceName teredo\n", []string{"--cone"},
			want{false, "teredo", 1280, "2001::", "0.0.0.0:0", []string{":1: RelayType client ignored: --cone given"}}},
		{"restricted file, --cone", "RelayType restricted\n", []string{"--cone"},
			want{false, "teredo", 1280, "2001::", "0.0.0.0:0", []string{":1: RelayType restricted ignored: --cone given"}}},
		{"cone file, --restricted", "RelayType relay\n", []string{"--restricted"},
			want{true, "teredo", 1280, "2001::", "0.0.0.0:0", []string{":1: RelayType relay ignored: --restricted given"}}},
		{"no RelayType, --cone", "InterfaceName tx\n", []string{"--cone"},
			want{false, "tx", 1280, "2001::", "0.0.0.0:0", nil}},
		{"cone file, --cone", "RelayType cone\n", []string{"--cone"},
			want{false, "teredo", 1280, "2001::", "0.0.0.0:0", nil}},
		{"file values kept", "RelayType restricted\nInterfaceName t1\nInterfaceMTU 1400\nPrefix 3ffe:831f::\nBindAddress 192.0.2.20\nBindPort 3545\n", nil,
			want{true, "t1", 1400, "3ffe:831f::", "192.0.2.20:3545", nil}},
		{"every flag over the file", "RelayType restricted\nInterfaceName t1\nInterfaceMTU 1400\nPrefix 3ffe:831f::\nBindAddress 192.0.2.20\nBindPort 3545\n",
			[]string{"--cone", "--interface", "t2", "--mtu", "1500", "--prefix", "2001:0::", "--bind-address", "192.0.2.21", "--bind-port", "3546"},
			want{false, "t2", 1500, "2001::", "192.0.2.21:3546", []string{
				":1: RelayType restricted ignored: --cone given",
				":4: Prefix 3ffe:831f:: ignored: --prefix 2001:: given",
				":2: InterfaceName t1 ignored: --interface t2 given",
				":3: InterfaceMTU 1400 ignored: --mtu 1500 given",
				":5: BindAddress 192.0.2.20 ignored: --bind-address 192.0.2.21 given",
				":6: BindPort 3545 ignored: --bind-port 3546 given",
			}}},
		{"flags equal to the file", "RelayType cone\nInterfaceMTU 1400\nPrefix 2001::\n", []string{"--mtu", "1400", "--prefix", "2001:0::"},
			want{false, "teredo", 1400, "2001::", "0.0.0.0:0", nil}},
		{"flag defaults under the file", "RelayType cone\nInterfaceMTU 1300\n", []string{"--interface", "teredo"},
			want{false, "teredo", 1300, "2001::", "0.0.0.0:0", nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := file(tc.conf)
			s := configured(t, append([]string{"-c", path}, tc.args...))
			got := want{s.cfg.Restricted, s.cfg.Interface, s.cfg.MTU, s.cfg.Prefix.String(),
				netip.AddrPortFrom(s.cfg.BindAddress, s.cfg.BindPort).String(), nil}
			got.overrides = s.Strings()
			for i := range tc.want.overrides {
				tc.want.overrides[i] = path + tc.want.overrides[i]
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestDefaultConfigFile: without -c the relay reads its own file, never
// Miredo's miredo.conf, which on a Debian host configures Miredo's client.
func TestDefaultConfigFile(t *testing.T) {
	s := configured(t, []string{"--cone"})
	if s.File.Name != DefaultConfig || DefaultConfig == "/etc/miredo/miredo.conf" {
		t.Errorf("read %q by default, want %q", s.File.Name, DefaultConfig)
	}
}

// configured runs the relay's command line with args up to the merged
// configuration.
func configured(t *testing.T, args []string) settings {
	t.Helper()
	var s settings
	app := appWith(func(c *cli.Context) error {
		var err error
		s, err = configure(c)
		return err
	})
	var stderr bytes.Buffer
	if code := daemon.Main(app, append([]string{"miredo-relay"}, args...), &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	return s
}

// TestCheckConfig: --check-config reports every problem at once, one per
// line with its place, and "ok" for a valid configuration.
func TestCheckConfig(t *testing.T) {
	clitest.CheckConfig(t, newApp, "miredo-relay", []clitest.CheckCase{
		{Name: "valid", Conf: "RelayType cone\nInterfaceMTU 1400\n"},
		{Name: "client file overridden", Conf: "RelayType client\n", Args: []string{"--cone"}},
		{Name: "host name not looked up", Conf: "RelayType cone\nBindAddress relay.example.invalid\n"},
		{Name: "every file problem", Conf: "RelayType cone\nPrefx 2001::\nInterfaceMTU 100\nBindPort 99999\n", Problems: []string{
			"FILE:2: ", "FILE:3: InterfaceMTU \"100\"", "FILE:4: BindPort \"99999\"",
		}},
		{Name: "file and flags", Conf: "RelayType client\n", Args: []string{"--prefix", "x", "--bind-port", "70000"}, Problems: []string{
			"FILE:1: RelayType \"client\"", "--prefix \"x\"", "--bind-port 70000: out of range",
		}},
	})
}

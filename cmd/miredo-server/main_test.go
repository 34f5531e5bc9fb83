// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/clitest"
	"github.com/miredo-go/miredo/pkg/daemon"
)

// TestFlagsWinOverFile: a flag (or the address argument) given on the
// command line replaces the file's directive, with one warning naming what
// was ignored; the file wins over a flag's default; a flag that agrees with
// the file warns of nothing.
func TestFlagsWinOverFile(t *testing.T) {
	dir := t.TempDir()
	type want struct {
		primary, secondary string
		prefix             string
		mtu                int
		overrides          []string // Override.String without the file name
	}
	full := "ServerBindAddress 192.0.2.221\nServerBindAddress2 192.0.2.223\nPrefix 3ffe:831f::\nInterfaceMTU 1400\n"
	cases := []struct {
		name string
		conf string
		args []string
		want want
	}{
		{"file values kept", full, nil, want{"192.0.2.221", "192.0.2.223", "3ffe:831f::", 1400, nil}},
		{"--primary", full, []string{"--primary", "192.0.2.10"}, want{"192.0.2.10", "192.0.2.11", "3ffe:831f::", 1400, []string{
			":1: ServerBindAddress 192.0.2.221 ignored: --primary 192.0.2.10 given",
			":2: ServerBindAddress2 192.0.2.223 ignored: --primary 192.0.2.10 given",
		}}},
		{"address argument", full, []string{"192.0.2.10"}, want{"192.0.2.10", "192.0.2.11", "3ffe:831f::", 1400, []string{
			":1: ServerBindAddress 192.0.2.221 ignored: the address argument 192.0.2.10 given",
			":2: ServerBindAddress2 192.0.2.223 ignored: the address argument 192.0.2.10 given",
		}}},
		{"every flag", full, []string{"--primary", "192.0.2.10", "--secondary", "192.0.2.20", "--prefix", "2001:0::", "--mtu", "1500"},
			want{"192.0.2.10", "192.0.2.20", "2001::", 1500, []string{
				":1: ServerBindAddress 192.0.2.221 ignored: --primary 192.0.2.10 given",
				":2: ServerBindAddress2 192.0.2.223 ignored: --primary 192.0.2.10 given",
				":2: ServerBindAddress2 192.0.2.223 ignored: --secondary 192.0.2.20 given",
				":3: Prefix 3ffe:831f:: ignored: --prefix 2001:: given",
				":4: InterfaceMTU 1400 ignored: --mtu 1500 given",
			}}},
		{"flags equal to the file", "ServerBindAddress 192.0.2.10\nInterfaceMTU 1400\n", []string{"--primary", "192.0.2.10", "--mtu", "1400"},
			want{"192.0.2.10", "192.0.2.11", "2001::", 1400, nil}},
		{"flag defaults under the file", "ServerBindAddress 192.0.2.10\nInterfaceMTU 1300\n", nil,
			want{"192.0.2.10", "192.0.2.11", "2001::", 1300, nil}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("%d.conf", i))
			if err := os.WriteFile(path, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			var s settings
			app := appWith(func(c *cli.Context) error {
				var err error
				s, err = configure(c)
				return err
			})
			var stderr bytes.Buffer
			if code := daemon.Main(app, append([]string{"miredo-server", "-c", path}, tc.args...), &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			got := want{s.cfg.Primary.String(), s.cfg.Secondary.String(), s.cfg.Prefix.String(), s.cfg.MTU, nil}
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

// TestUsageErrors: bad command lines and files stop the server before it
// binds anything, with exit status 2 and a message naming the mistake.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := file("ok.conf", "ServerBindAddress 192.0.2.10\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"private address in file", []string{"-c", file("private.conf", "ServerBindAddress 10.0.0.1\n")}, "private.conf:1:"},
		{"unknown directive", []string{"-c", file("typo.conf", "ServerBindAdress 192.0.2.10\n")}, "typo.conf:1:"},
		{"argument and --primary", []string{"-c", ok, "--primary", "192.0.2.10", "192.0.2.10"}, "either as an argument or with --primary"},
		{"two arguments", []string{"-c", ok, "192.0.2.10", "192.0.2.12"}, "at most one server address"},
		{"bad primary", []string{"-c", ok, "--primary", "nine"}, "primary address \"nine\""},
		{"bad prefix", []string{"-c", ok, "--prefix", "x"}, "--prefix \"x\""},
		{"coalescing too long", []string{"-c", ok, "--coalesce", "20ms"}, "coalescing delay 20ms: coalescing delay must be within 0-10ms"},
		{"negative coalescing", []string{"-c", ok, "--coalesce", "-1us"}, "coalescing delay -1µs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := daemon.Main(appWith(run), append([]string{"miredo-server"}, tc.args...), &stderr)
			if code != daemon.ExitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, daemon.ExitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestCheckConfig: --check-config reports every problem at once, one per
// line with its place, and "ok" for a valid configuration.
func TestCheckConfig(t *testing.T) {
	clitest.CheckConfig(t, func() *cli.App { return appWith(run) }, "miredo-server", []clitest.CheckCase{
		{Name: "valid", Conf: "ServerBindAddress 192.0.2.10\n"},
		{Name: "host names not looked up", Conf: "ServerBindAddress a.example.invalid\nServerBindAddress2 b.example.invalid\n"},
		{Name: "every file problem", Conf: "ServerBindAddress 10.0.0.1\nServerBindAdress 192.0.2.10\nInterfaceMTU 99\n", Problems: []string{
			"FILE:1: ServerBindAddress \"10.0.0.1\"", "FILE:2: ", "FILE:3: InterfaceMTU \"99\"",
		}},
		{Name: "flags", Conf: "ServerBindAddress 192.0.2.10\n", Args: []string{"--secondary", "x", "--prefix", "y"}, Problems: []string{
			"--secondary \"x\"", "--prefix \"y\"",
		}},
	})
}

// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"fmt"
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

// TestUsageErrors checks that bad command lines and configuration files
// stop the client before it touches anything, with exit status 2 and a
// message naming the file and line. Every case must fail: a valid one
// would start a client here.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	relay := file("relay.conf", "# a relay\nRelayType cone\nInterfaceName teredo\n")
	autorelay := file("relay2.conf", "RelayType relay\n")
	typo := file("typo.conf", "RelayType client\nServerAdress teredo.example.net\n")
	private := file("private.conf", "InterfaceName teredo\nServerAddress 10.1.2.3\n")
	private2 := file("private2.conf", "ServerAddress 192.0.2.1\nServerAddress2 192.168.1.1\n")
	noServer := file("noserver.conf", "RelayType client\nInterfaceName teredo\n")
	badName := file("badname.conf", "ServerAddress bad_name!\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"relay configuration", []string{"-c", relay}, relay + ":2: RelayType \"cone\": this is a relay configuration: run miredo-relay"},
		{"relay alias", []string{"-c", autorelay}, relay[:len(relay)-len("relay.conf")] + "relay2.conf:1: RelayType \"relay\""},
		{"unknown directive", []string{"-c", typo}, typo + ":2:"},
		{"private server in file", []string{"-c", private}, private + ":2: ServerAddress \"10.1.2.3\": server addresses must be global unicast"},
		{"private secondary in file", []string{"-c", private2}, private2 + ":2: ServerAddress2 \"192.168.1.1\""},
		{"no server", []string{"-c", noServer}, noServer + ": ServerAddress not set"},
		{"bad server name", []string{"-c", badName}, badName + ":1: ServerAddress \"bad_name!\""},
		{"missing named file", []string{"-c", filepath.Join(dir, "absent.conf"), "teredo.example.net"}, "absent.conf"},
		{"two servers", []string{"-c", noServer, "--server", "192.0.2.1", "teredo.example.net"}, "either as an argument or with --server"},
		{"two arguments", []string{"-c", noServer, "a.example", "b.example"}, "at most one server name"},
		{"private server flag", []string{"-c", noServer, "--server", "172.16.0.1"}, "global unicast"},
		{"bad secondary flag", []string{"-c", noServer, "--server", "192.0.2.1", "--server2", "1.2.3"}, "not an IPv4 address or host name"},
		{"bad bind address", []string{"-c", noServer, "--bind-address", "x", "192.0.2.1"}, "--bind-address"},
		{"IPv6 bind address", []string{"-c", noServer, "--bind-address", "::1", "192.0.2.1"}, "bind address must be IPv4"},
		{"bind port", []string{"-c", noServer, "--bind-port", "70000", "192.0.2.1"}, "--bind-port 70000"},
		{"refresh", []string{"-c", noServer, "--refresh-interval", "100ms", "192.0.2.1"}, "refresh interval"},
		{"log level", []string{"-c", noServer, "--log-level", "loud", "192.0.2.1"}, "loud"},
		// The name goes into the hook's environment: the file's
		// InterfaceName is checked with its line (TestCheckConfig), the
		// flag with the same rules.
		{"newline in --interface", []string{"-c", noServer, "--interface", "te\nredo", "192.0.2.1"}, "--interface \"te\\nredo\": invalid interface name: interface names cannot contain '\\n'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := daemon.Main(newApp(), append([]string{"miredo-client"}, tc.args...), &stderr)
			if code != daemon.ExitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, daemon.ExitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestFlagsWinOverFile: a flag (or the server argument) given on the
// command line replaces the file's directive, with one warning naming what
// was ignored; the file wins over a flag's default; a flag that agrees with
// the file warns of nothing.
func TestFlagsWinOverFile(t *testing.T) {
	dir := t.TempDir()
	type want struct {
		server, server2 string
		iface           string
		bind            string
		overrides       []string // each the end of one Override.String
	}
	full := "ServerAddress teredo.example.net\nServerAddress2 192.0.2.77\nInterfaceName t1\nBindAddress 10.0.0.2\nBindPort 3545\n"
	cases := []struct {
		name string
		conf string
		args []string
		want want
	}{
		{"file values kept", full, nil, want{"teredo.example.net", "192.0.2.77", "t1", "10.0.0.2:3545", nil}},
		{"--server", full, []string{"--server", "192.0.2.10"}, want{"192.0.2.10", "", "t1", "10.0.0.2:3545", []string{
			":1: ServerAddress teredo.example.net ignored: --server 192.0.2.10 given",
			":2: ServerAddress2 192.0.2.77 ignored: --server 192.0.2.10 given",
		}}},
		{"server argument", full, []string{"192.0.2.10"}, want{"192.0.2.10", "", "t1", "10.0.0.2:3545", []string{
			":1: ServerAddress teredo.example.net ignored: the server argument 192.0.2.10 given",
			":2: ServerAddress2 192.0.2.77 ignored: the server argument 192.0.2.10 given",
		}}},
		{"every flag", full, []string{"--server", "192.0.2.10", "--server2", "192.0.2.12", "--interface", "t2", "--bind-address", "10.0.0.3", "--bind-port", "3546"},
			want{"192.0.2.10", "192.0.2.12", "t2", "10.0.0.3:3546", []string{
				":3: InterfaceName t1 ignored: --interface t2 given",
				":1: ServerAddress teredo.example.net ignored: --server 192.0.2.10 given",
				":2: ServerAddress2 192.0.2.77 ignored: --server 192.0.2.10 given",
				":2: ServerAddress2 192.0.2.77 ignored: --server2 192.0.2.12 given",
				":4: BindAddress 10.0.0.2 ignored: --bind-address 10.0.0.3 given",
				":5: BindPort 3545 ignored: --bind-port 3546 given",
			}}},
		{"flags equal to the file", "ServerAddress 192.0.2.10\nInterfaceName teredo\n", []string{"--server", "192.0.2.10", "--interface", "teredo"},
			want{"192.0.2.10", "", "teredo", "0.0.0.0:0", nil}},
		{"no file directives", "", []string{"--server", "192.0.2.10"}, want{"192.0.2.10", "", "teredo", "0.0.0.0:0", nil}},
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
			if code := daemon.Main(app, append([]string{"miredo-client", "-c", path}, tc.args...), &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			got := want{s.cfg.Server, s.cfg.Server2, s.cfg.Interface,
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

// TestCheckConfig: --check-config reports every problem at once, one per
// line with its place, and "ok" for a valid configuration.
func TestCheckConfig(t *testing.T) {
	clitest.CheckConfig(t, newApp, "miredo-client", []clitest.CheckCase{
		{Name: "valid", Conf: "ServerAddress teredo.example.invalid\nInterfaceName teredo\n"},
		{Name: "server from the command line", Conf: "InterfaceName teredo\n", Args: []string{"192.0.2.10"}},
		{Name: "every file problem", Conf: "RelayType client\nServerAdress teredo.example.net\nBindPort 99999\nInterfaceName bad/name\n", Problems: []string{
			"FILE:2: ", "FILE:3: BindPort \"99999\"", "FILE:4: InterfaceName \"bad/name\"",
		}},
		{Name: "relay file, bad flags", Conf: "RelayType cone\nServerAddress 10.1.2.3\n", Args: []string{"--bind-port", "70000", "a", "b"}, Problems: []string{
			"at most one server name", "FILE:1: RelayType \"cone\"", "FILE:2: ServerAddress \"10.1.2.3\"", "--bind-port 70000",
		}},
		{Name: "flags only", Conf: "RelayType relay\n", Args: []string{"--bind-address", "x", "--server", "192.0.2.1", "teredo.example.net"}, Problems: []string{
			"FILE:1: RelayType \"relay\"", "give the server either", "--bind-address",
		}},
		{Name: "no server", Conf: "InterfaceName teredo\n", Problems: []string{"FILE: ServerAddress not set"}},
	})
}

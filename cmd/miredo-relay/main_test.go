package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
			"none.conf: RelayType not set, which means client: this binary is the Teredo relay"},
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

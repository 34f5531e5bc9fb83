// SPDX-License-Identifier: MIT

// Package archtest holds tests of the repository's shape: which binary may
// link which role, and that every binary answers --help and --version.
package archtest

import (
	"bytes"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/miredo-go/miredo"

// roles maps each binary to its own role package. A role package may be
// linked only into its own binary: a server host never carries client
// qualification code, and vice versa.
var roles = map[string]string{
	"miredo-client": module + "/internal/client",
	"miredo-relay":  module + "/internal/relay",
	"miredo-server": module + "/internal/server",
}

// shared lists packages that only some roles may link.
var restricted = map[string][]string{
	// The Teredo data path (peer table, bubbles, queues) is for the client and
	// the relay; the stateless server has no use for it.
	module + "/internal/tunnel": {"miredo-client", "miredo-relay"},
	// The Teredo test responder (`miredo-server mire`) needs what a server
	// host has, a public IPv4 address, and runs instead of the server.
	module + "/internal/mire": {"miredo-server"},
}

// standalone lists packages that carry a role of their own inside another
// role's binary and must link no role package, so that the binary that
// hosts them can change without dragging one role into another.
var standalone = []string{module + "/internal/mire"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	return strings.Fields(string(out))
}

func TestRoleSeparation(t *testing.T) {
	for bin, own := range roles {
		t.Run(bin, func(t *testing.T) {
			deps := map[string]bool{}
			for _, p := range goList(t, "-deps", module+"/cmd/"+bin) {
				deps[p] = true
			}
			if !deps[own] {
				t.Errorf("%s does not link its own role %s", bin, own)
			}
			for other, pkg := range roles {
				if other == bin {
					continue
				}
				for p := range deps {
					if p == pkg || strings.HasPrefix(p, pkg+"/") {
						t.Errorf("%s links %s, which belongs to %s", bin, p, other)
					}
				}
			}
			for pkg, allowed := range restricted {
				ok := false
				for _, a := range allowed {
					ok = ok || a == bin
				}
				if !ok && deps[pkg] {
					t.Errorf("%s links %s, which only %v may", bin, pkg, allowed)
				}
			}
		})
	}
}

// TestStandaloneRolesLinkNoRole: the responder links none of the client,
// relay, server or tunnel packages.
func TestStandaloneRolesLinkNoRole(t *testing.T) {
	for _, p := range standalone {
		deps := goList(t, "-deps", p)
		if len(deps) == 0 {
			t.Fatalf("%s: no packages listed", p)
		}
		for _, d := range deps {
			for _, role := range append(slices.Collect(maps.Values(roles)), module+"/internal/tunnel") {
				if d == role || strings.HasPrefix(d, role+"/") {
					t.Errorf("%s links %s", p, d)
				}
			}
		}
	}
}

// TestSharedPackagesImportNoRole checks the arrows point down: nothing under
// pkg/ may import a role or internal package.
func TestSharedPackagesImportNoRole(t *testing.T) {
	pkgs := goList(t, module+"/pkg/...")
	for _, p := range pkgs {
		for _, d := range goList(t, "-deps", p) {
			if strings.HasPrefix(d, module+"/internal/") {
				t.Errorf("%s imports %s: shared packages must not depend on internal ones", p, d)
			}
		}
	}
}

func TestBinariesAnswerHelpAndVersion(t *testing.T) {
	dir := t.TempDir()
	for bin := range roles {
		t.Run(bin, func(t *testing.T) {
			exe := filepath.Join(dir, bin)
			build := exec.Command("go", "build", "-o", exe, module+"/cmd/"+bin)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, out)
			}
			cases := []struct {
				args     []string
				wantCode int
				wantOut  string
			}{
				{[]string{"--version"}, 0, bin + " "},
				{[]string{"-V"}, 0, bin + " "},
				{[]string{"--help"}, 0, "--log-level"},
				{[]string{"-h"}, 0, "USAGE"},
				{[]string{"--no-such-flag"}, 2, "flag provided but not defined"},
				{[]string{"--log-level", "loud"}, 2, "--log-level"},
			}
			for _, tc := range cases {
				cmd := exec.Command(exe, tc.args...)
				out, _ := cmd.CombinedOutput()
				if code := cmd.ProcessState.ExitCode(); code != tc.wantCode {
					t.Errorf("%s %v: exit %d, want %d\n%s", bin, tc.args, code, tc.wantCode, out)
				}
				if !strings.Contains(string(out), tc.wantOut) {
					t.Errorf("%s %v: output lacks %q:\n%s", bin, tc.args, tc.wantOut, out)
				}
			}
		})
	}
}

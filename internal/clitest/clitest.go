// SPDX-License-Identifier: MIT

// Package clitest runs a daemon's command line in tests: the exit status
// and what it printed, for the tables of each cmd package.
package clitest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/pkg/daemon"
)

// Result is what one run printed and how it ended.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs app with args (the program name first) as daemon.Main would.
func Run(app *cli.App, args ...string) Result {
	var stdout, stderr bytes.Buffer
	app.Writer = &stdout
	code := daemon.Main(app, args, &stderr)
	return Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

// File writes text to a new file in dir and returns its path.
func File(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// CheckCase is one --check-config run: a configuration file's text, extra
// arguments, and what must come out.
type CheckCase struct {
	Name string
	Conf string
	Args []string
	// Problems are the lines (after the program name) that must be
	// printed, in order, for a configuration with problems; none means
	// the configuration is valid and "ok" is printed.
	Problems []string
}

// CheckConfig runs each case with --check-config and checks the exit
// status, "ok", and that every problem is reported, one per line, each as
// "prog: file:line: reason" (the file name is written as FILE in Problems).
func CheckConfig(t *testing.T, app func() *cli.App, prog string, cases []CheckCase) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			path := File(t, t.TempDir(), "test.conf", tc.Conf)
			r := Run(app(), append([]string{prog, "--check-config", "-c", path}, tc.Args...)...)
			if len(tc.Problems) == 0 {
				if r.Code != 0 || r.Stdout != "ok\n" {
					t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and ok", r.Code, r.Stdout, r.Stderr)
				}
				return
			}
			if r.Code != daemon.ExitUsage || r.Stdout != "" {
				t.Fatalf("exit %d, stdout %q; want %d and nothing", r.Code, r.Stdout, daemon.ExitUsage)
			}
			lines := strings.Split(strings.TrimSuffix(r.Stderr, "\n"), "\n")
			if len(lines) != len(tc.Problems) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tc.Problems), r.Stderr)
			}
			for i, want := range tc.Problems {
				want = prog + ": " + strings.ReplaceAll(want, "FILE", path)
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("line %d: %q, want it to start with %q", i+1, lines[i], want)
				}
			}
		})
	}
}

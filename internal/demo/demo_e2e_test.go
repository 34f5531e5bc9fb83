//go:build e2e

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/internal/lab"
)

// TestDemo keeps the README's demo command true: it builds the three
// binaries and runs the demo end to end behind a symmetric NAT.
func TestDemo(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	dir := t.TempDir()
	for _, b := range []string{"miredo-server", "miredo-relay", "miredo-client"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "github.com/miredo-go/miredo/cmd/"+b)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	var out bytes.Buffer
	err := run(t.Context(), &out, dir, lab.Symmetric.String(), false)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAT type        symmetric", "3 received", "==> done", "==> removing the lab"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// SPDX-License-Identifier: MIT

//go:build e2e

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/internal/lab"
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBinaries()
	os.Exit(code)
}

// TestDemo keeps the README's demo command true: it builds the three
// binaries and runs the demo end to end behind a symmetric NAT.
func TestDemo(t *testing.T) {
	if reason := lab.Missing(); reason != "" {
		t.Skip("lab: " + reason)
	}
	dir := filepath.Dir(lab.Binary(t, "miredo-server"))
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

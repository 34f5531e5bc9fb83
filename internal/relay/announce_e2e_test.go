// SPDX-License-Identifier: MIT

//go:build e2e

package relay_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// TestAnnounceInterface: with --announce-interface the relay holds that
// interface while it serves; `miredo-relay drain` removes it at once while
// the relay goes on running for its drain time, then the relay exits with
// status 0; a killed relay loses it with its file descriptors.
func TestAnnounceInterface(t *testing.T) {
	l := lab.New(t, lab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h := l.Host(lab.Relay)
	sock := filepath.Join(t.TempDir(), "relay.sock")
	const drain = 1500 * time.Millisecond
	start := func(name string, flags ...string) *lab.Process {
		t.Helper()
		p, err := l.Start(ctx, h, name, append([]string{binary(t, "miredo-relay"), "-c", "/dev/null", "--cone",
			"--announce-interface", "teredo-bgp"}, flags...)...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := start("announcing-relay", "--drain-time", drain.String(), "--control-socket", sock)
	if err := h.WaitLink(ctx, "teredo-bgp"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, binary(t, "miredo-relay"), "status", "--control-socket", sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "announced while teredo-bgp exists") {
		t.Errorf("status: %v\n%s", err, out)
	}
	asked := time.Now()
	out, err = exec.CommandContext(ctx, binary(t, "miredo-relay"), "drain", "--control-socket", sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "announcement withdrawn; the relay exits in 1.5s") {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	if err := h.WaitNoLink(ctx, "teredo-bgp"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		t.Fatalf("the relay exited as soon as it withdrew: %v", p.Err())
	default:
	}
	if err := h.WaitLink(ctx, "teredo"); err != nil {
		t.Errorf("the tunnel went with the announcement: %v", err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("the relay did not exit after draining")
	}
	if d := time.Since(asked); d < drain {
		t.Errorf("the relay exited %v after drain, before its drain time", d)
	}
	if err := p.Err(); err != nil {
		t.Errorf("the relay exited with %v, want status 0", err)
	}

	p = start("killed-relay", "--control-socket", "")
	if err := h.WaitLink(ctx, "teredo-bgp"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitNoLink(ctx, "teredo-bgp"); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miredo-go/miredo/internal/bench/proccpu"
)

// perfRecording is a perf-record process attached to a daemon's tree.
type perfRecording struct {
	cmd  *exec.Cmd
	done chan error
}

// startPerf records call graphs (user and kernel) of every thread of the
// process tree under pid into dir/name.perf.data until stopPerf. Read it
// with perf report -i FILE --no-children.
func startPerf(ctx context.Context, dir, name string, pid int) (*perfRecording, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, fmt.Errorf("-perf: %w (apt-get install linux-perf)", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tree, err := proccpu.ReadTree(pid)
	if err != nil {
		return nil, err
	}
	var pids []string
	for p := range tree {
		pids = append(pids, strconv.Itoa(p))
	}
	slices.Sort(pids)
	out := filepath.Join(dir, name+".perf.data")
	cmd := exec.CommandContext(ctx, "perf", "record", "-q", "-g", "-F", "999", "-o", out, "-p", strings.Join(pids, ","))
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	r := &perfRecording{cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	return r, nil
}

// stop ends the recording the way perf expects (SIGINT) and waits for it to
// write its file, at most 10 s.
func (r *perfRecording) stop() error {
	_ = r.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-r.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil // perf exits non-zero on SIGINT
		}
		return err
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		return errors.New("perf record did not stop")
	}
}

func stopPerf(log *slog.Logger, recs []*perfRecording) {
	for _, r := range recs {
		if err := r.stop(); err != nil {
			log.Warn("perf", "err", err)
		}
	}
}

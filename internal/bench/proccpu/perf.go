// SPDX-License-Identifier: MIT

package proccpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PerfRecording is a perf-record process attached to a daemon's process
// tree, for the benchmarks' -perf option.
type PerfRecording struct {
	cmd  *exec.Cmd
	done chan error
}

// StartPerf records call graphs (user and kernel) of every thread of the
// process tree under pid into dir/name.perf.data until Stop. Read it with
// perf report -i FILE --no-children.
func StartPerf(ctx context.Context, dir, name string, pid int) (*PerfRecording, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, fmt.Errorf("-perf: %w (apt-get install linux-perf)", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tree, err := ReadTree(pid)
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
	r := &PerfRecording{cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	return r, nil
}

// Stop ends the recording the way perf expects (SIGINT) and waits for it to
// write its file, at most 10 s.
func (r *PerfRecording) Stop() error {
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

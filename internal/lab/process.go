// SPDX-License-Identifier: MIT

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 3 * time.Second

// Process is a daemon the lab started in a host's namespace. Its stdout and
// stderr go to a log file that outlives it.
type Process struct {
	// Name identifies the process in logs and names its log file.
	Name string
	Host *Host
	// LogPath is the file holding the process's stdout and stderr.
	LogPath string

	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	err      error         // Wait's result, set before done closes
	stopOnce sync.Once
	stopErr  error
	started  time.Time
}

// Started is when the process was started.
func (p *Process) Started() time.Time { return p.started }

// Start runs argv in host h's namespace as a daemon named name, with output
// to <LogDir>/<name>.log. It is stopped (SIGTERM to its process group, then
// SIGKILL after 3 s) when ctx ends, when Stop is called or at Close.
func (l *Lab) Start(ctx context.Context, h *Host, name string, argv ...string) (*Process, error) {
	return l.StartEnv(ctx, h, name, nil, argv...)
}

// StartEnv is Start with env added to the daemon's environment (such as a
// NOTIFY_SOCKET the test listens on).
func (l *Lab) StartEnv(ctx context.Context, h *Host, name string, env []string, argv ...string) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("lab: start: empty command")
	}
	logPath := filepath.Join(l.LogDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", name, err)
	}
	fmt.Fprintf(logf, "### %s in %s: %s\n", time.Now().Format(time.RFC3339Nano), h.Netns, strings.Join(argv, " "))
	// Not CommandContext: the lab decides how the process ends.
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Netns}, argv...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so that stopping it reaches its children.
		Setpgid: true,
		// Killed with us if we die without cleaning up (a test timeout).
		// The signal follows the forking thread, not the process, so the
		// goroutine below keeps that thread until the daemon has exited.
		// A daemon that changes its credentials loses the signal (Miredo
		// does); the next lab with the same prefix kills what is left.
		Pdeathsig: syscall.SIGKILL,
	}
	p := &Process{Name: name, Host: h, LogPath: logPath, cmd: cmd, done: make(chan struct{}), started: time.Now()}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("lab: start %s in %s: %w", name, h.Name, err)
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Stop()
		case <-p.done:
		}
	}()
	l.addProcess(p)
	l.log.Info("lab: started", "name", name, "host", h.Name, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// Pid is the process id (ip netns exec execs the command in place).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// RSS is the resident memory of the process and everything it started
// (its process group: Miredo forks its worker), in bytes (VmRSS).
func (p *Process) RSS() (uint64, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("lab: %s: %w", p.Name, err)
	}
	var total uint64
	found := false
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err != nil || pgid != p.Pid() {
			continue
		}
		rss, err := vmRSS(pid)
		if err != nil {
			continue // gone meanwhile
		}
		total += rss
		found = true
	}
	if !found {
		return 0, fmt.Errorf("lab: %s: no process in group %d", p.Name, p.Pid())
	}
	return total, nil
}

// vmRSS reads one process's VmRSS in bytes.
func vmRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended; nil while it runs.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL if it is still there
// after a grace period. Safe to call more than once; it returns an error only
// if the process had to be killed.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		select {
		case <-p.done:
			// It ended by itself; its children may not have.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		default:
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-p.done:
			_ = syscall.Kill(-pgid, syscall.SIGKILL) // stragglers in the group
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
			p.stopErr = fmt.Errorf("lab: %s ignored SIGTERM for %s and was killed", p.Name, stopGrace)
		}
	})
	return p.stopErr
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

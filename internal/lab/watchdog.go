// SPDX-License-Identifier: MIT

package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"context"
)

// Watchdog does for a lab daemon what systemd does for a Type=notify unit
// with WatchdogSec= (no unit ever runs in the lab): it owns the daemon's
// NOTIFY_SOCKET, hears READY=1 and the WATCHDOG=1 pings, and once the
// pings have stopped for the interval it sends SIGABRT (systemd's
// WatchdogSignal; a Go program dumps its goroutines and exits), then
// SIGKILL to the process group if the daemon is still there AbortGrace
// later (systemd's TimeoutAbortSec), as it is when stopped (SIGSTOP)
// rather than stuck. A watchdog fires once.
type Watchdog struct {
	// Interval is the unit's WatchdogSec; the daemon pings every quarter.
	Interval time.Duration
	// AbortGrace is how long SIGABRT has before SIGKILL.
	AbortGrace time.Duration

	sock  *net.UnixConn
	dir   string
	ready chan struct{}
	fired chan struct{}

	mu      sync.Mutex
	firedAt time.Time
	pings   int
	status  string
}

// StartWatched is Start under a watchdog: the daemon gets NOTIFY_SOCKET and
// WATCHDOG_USEC, and the watchdog is armed by its READY=1.
func (l *Lab) StartWatched(ctx context.Context, h *Host, name string, interval, abortGrace time.Duration, argv ...string) (*Process, *Watchdog, error) {
	// The daemon pings after dropping its privileges: the socket and its
	// directory must be open to anyone, as systemd's is.
	dir, err := os.MkdirTemp("", "lab-notify-")
	if err != nil {
		return nil, nil, fmt.Errorf("lab: watchdog: %w", err)
	}
	w := &Watchdog{Interval: interval, AbortGrace: abortGrace, dir: dir, ready: make(chan struct{}), fired: make(chan struct{})}
	path := filepath.Join(dir, "notify")
	w.sock, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		err = errors.Join(os.Chmod(dir, 0o755), os.Chmod(path, 0o666))
	}
	if err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("lab: watchdog: %w", err)
	}
	l.track(w)
	env := []string{"NOTIFY_SOCKET=" + path, fmt.Sprintf("WATCHDOG_USEC=%d", interval.Microseconds())}
	p, err := l.StartEnv(ctx, h, name, env, argv...)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	go w.run(p)
	return p, w, nil
}

// run reads notifications until the socket closes, and fires.
func (w *Watchdog) run(p *Process) {
	msgs := make(chan string, 16)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, err := w.sock.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	var deadline <-chan time.Time
	var timer *time.Timer
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			w.note(m)
			if strings.Contains(m, "READY=1") || strings.Contains(m, "WATCHDOG=1") {
				if timer != nil {
					timer.Stop()
				}
				timer = time.NewTimer(w.Interval)
				deadline = timer.C
				select {
				case <-w.ready:
				default:
					close(w.ready)
				}
			}
		case <-deadline:
			w.fire(p)
			return
		case <-p.Done():
			return
		}
	}
}

func (w *Watchdog) note(m string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(m, "\n") {
		switch {
		case line == "WATCHDOG=1":
			w.pings++
		case strings.HasPrefix(line, "STATUS="):
			w.status = strings.TrimPrefix(line, "STATUS=")
		}
	}
}

// fire is systemd's watchdog timeout: SIGABRT, then SIGKILL to the group.
func (w *Watchdog) fire(p *Process) {
	w.mu.Lock()
	w.firedAt = time.Now()
	w.mu.Unlock()
	close(w.fired)
	_ = syscall.Kill(p.Pid(), syscall.SIGABRT)
	select {
	case <-p.Done():
	case <-time.After(w.AbortGrace):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
}

// Ready is closed once the daemon said READY=1.
func (w *Watchdog) Ready() <-chan struct{} { return w.ready }

// Fired is closed when the watchdog gave up on the daemon.
func (w *Watchdog) Fired() <-chan struct{} { return w.fired }

// FiredAt is when it did (zero if it has not).
func (w *Watchdog) FiredAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.firedAt
}

// Pings counts the WATCHDOG=1 heard; Status is the last STATUS= line.
func (w *Watchdog) Pings() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pings
}

// Status is the daemon's last STATUS= line.
func (w *Watchdog) Status() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// Close stops listening and removes the socket.
func (w *Watchdog) Close() error {
	if w.sock != nil {
		w.sock.Close()
	}
	return os.RemoveAll(w.dir)
}

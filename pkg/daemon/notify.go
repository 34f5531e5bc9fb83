// SPDX-License-Identifier: MIT

package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells the service manager how the daemon is doing, for
// Type=notify units: READY=1 once the role is really up (not merely
// started), STATUS= lines saying what it is doing or why it is not up, and
// WATCHDOG=1 while its data path is healthy, when the unit sets
// WatchdogSec=. Without $NOTIFY_SOCKET every call does nothing.
//
// The notification socket is named by a path: after --chroot it is out
// of reach, which is why the units use RootDirectory= instead.
type Notifier struct {
	log   *slog.Logger
	mu    sync.Mutex
	ready bool
	last  string
}

// NewNotifier returns a notifier logging its failures to log.
func NewNotifier(log *slog.Logger) *Notifier { return &Notifier{log: log} }

func (n *Notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.log.Debug("service manager notification failed", "err", err)
	}
}

// Status says what the daemon is doing, in one line; repeats are not
// sent again.
func (n *Notifier) Status(status string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if status == n.last {
		return
	}
	n.last = status
	n.send("STATUS=" + status)
}

// Ready says the role is up, with a status line; only the first call
// sends READY=1.
func (n *Notifier) Ready(status string) {
	n.mu.Lock()
	first := !n.ready
	n.ready = true
	n.last = status
	n.mu.Unlock()
	if first {
		n.send(sd.SdNotifyReady + "\nSTATUS=" + status)
		return
	}
	n.send("STATUS=" + status)
}

// Stopping says the daemon is shutting down.
func (n *Notifier) Stopping() { n.send(sd.SdNotifyStopping) }

// Watchdog sends WATCHDOG=1 every quarter of the interval the unit asked for, as
// long as healthy says the data path is; it returns at once when no
// watchdog is asked for, and when ctx ends. A hung loop stops the pings,
// and the service manager restarts the daemon.
func (n *Notifier) Watchdog(ctx context.Context, healthy func(max time.Duration) bool) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	// Checks every quarter interval, for batches longer than half of it:
	// Healthy times a batch from the first check that saw it, so a loop
	// that hangs is reported within three quarters of an interval, and
	// the manager's timer, restarted by the last ping, runs out within
	// 1.75 intervals of the hang.
	t := time.NewTicker(interval / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if healthy(interval / 2) {
			n.send(sd.SdNotifyWatchdog)
		} else {
			n.log.Error("data path hung: not telling the watchdog")
		}
	}
}

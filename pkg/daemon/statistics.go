// SPDX-License-Identifier: MIT

package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// LogStatistics logs a "statistics" record with the key-value pairs attrs
// returns at each SIGUSR1 (Miredo 1.2.6 dies on it instead), until ctx ends
// or stop is called; call stop when the daemon returns. The signal is
// caught from the moment it returns.
func LogStatistics(ctx context.Context, log *slog.Logger, attrs func() []any) (stop func()) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-usr1:
				log.Info("statistics", attrs()...)
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(usr1)
		close(done)
	}
}

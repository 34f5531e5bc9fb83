// SPDX-License-Identifier: MIT

package daemon

import (
	"fmt"
	"log/slog"

	"github.com/miredo-go/miredo/pkg/dropprivs"
)

// Settle does what every daemon does once its sockets (and tunnel) are
// open: it writes the pid file, if one is asked for, then drops privileges
// to drop (user, chroot, capabilities kept) and logs the result. The
// returned function removes the pid file; call it at exit.
func Settle(pidFile string, drop dropprivs.Config, log *slog.Logger) (release func(), err error) {
	pid, err := createPID(pidFile)
	if err != nil {
		return nil, err
	}
	res, err := dropprivs.Drop(drop)
	if err != nil {
		pid.Close()
		return nil, fmt.Errorf("dropping privileges: %w", err)
	}
	log.Info("privileges dropped", "result", res)
	return func() { pid.Close() }, nil
}

func createPID(path string) (*PIDFile, error) {
	if path == "" {
		return nil, nil
	}
	return CreatePIDFile(path)
}

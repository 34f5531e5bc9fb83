// Package client is the Teredo client role (RFC 4380 §5.2): qualification with a
// Teredo server, address maintenance, the NAT probe and the privileged helper.
// Only cmd/miredo-client imports it.
package client

import (
	"context"
	"errors"
	"log/slog"
)

// ErrNotWritten is returned by Run until the role is implemented; the binary
// then says so instead of pretending to run.
var ErrNotWritten = errors.New("the client role is not written yet")

// Run runs the role until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	_ = ctx
	_ = cfg
	_ = log
	return ErrNotWritten
}

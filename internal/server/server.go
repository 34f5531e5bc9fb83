// Package server is the Teredo server role (RFC 4380 §5.3): router solicitations
// answered on two addresses, bubbles and connectivity tests forwarded. Only
// cmd/miredo-server imports it.
package server

import (
	"context"
	"errors"
	"log/slog"
)

// ErrNotWritten is returned by Run until the role is implemented; the binary
// then says so instead of pretending to run.
var ErrNotWritten = errors.New("the server role is not written yet")

// Run runs the role until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	_ = ctx
	_ = cfg
	_ = log
	return ErrNotWritten
}

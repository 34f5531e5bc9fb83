// Package relay is the Teredo relay role (RFC 4380 §5.4): the static tunnel, the
// route for the Teredo prefix and the relay policy. Only cmd/miredo-relay
// imports it.
package relay

import (
	"context"
	"errors"
	"log/slog"
)

// ErrNotWritten is returned by Run until the role is implemented; the binary
// then says so instead of pretending to run.
var ErrNotWritten = errors.New("the relay role is not written yet")

// Run runs the role until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	_ = ctx
	_ = cfg
	_ = log
	return ErrNotWritten
}

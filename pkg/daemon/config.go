// SPDX-License-Identifier: MIT

package daemon

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"log/syslog"
	"strings"

	"github.com/miredo-go/miredo/pkg/conf"
)

// LoadConfig reads a Miredo configuration file for a role. A missing file is
// fine when the operator did not name it (the default path is used when
// present, as the daemons are meant to run from flags alone too); a named
// file must exist. Errors are UsageErrors carrying "file:line: reason".
func LoadConfig(path string, named bool, schema conf.Schema, opts conf.Options) (*conf.File, []conf.Warning, error) {
	f, warns, err := conf.ParseFile(path, schema, opts)
	switch {
	case err == nil:
		return f, warns, nil
	case errors.Is(err, fs.ErrNotExist) && !named:
		f, warns, err = conf.Parse(strings.NewReader(""), path, schema, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("empty configuration: %w", err)
		}
		return f, warns, nil
	default:
		var ce conf.Errors
		if errors.As(err, &ce) {
			return nil, warns, &UsageError{Err: err}
		}
		return nil, warns, &UsageError{Err: fmt.Errorf("configuration file: %w", err)}
	}
}

// LogOptions say where a daemon logs.
type LogOptions struct {
	Program string
	Level   slog.Leveler // a *slog.LevelVar lets a reload change it
	Stderr  io.Writer
	// Syslog, when true, also sends records to syslog with Facility, as
	// Miredo does (its SyslogFacility directive).
	Syslog   bool
	Facility conf.Facility
}

// NewDaemonLogger builds the daemon's logger and returns a function that
// closes what it opened.
func NewDaemonLogger(o LogOptions) (*slog.Logger, func(), error) {
	h := slog.Handler(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: o.Level}))
	closer := func() {}
	if o.Syslog {
		sh, err := NewSyslogHandler(syslog.Priority(o.Facility), o.Program, o.Level)
		if err != nil {
			return nil, nil, err
		}
		h = TeeHandler{h, sh}
		closer = func() { sh.Close() }
	}
	return slog.New(h).With("prog", o.Program), closer, nil
}

// LogWarnings logs configuration warnings, one record each.
func LogWarnings(log *slog.Logger, warns []conf.Warning) {
	for _, w := range warns {
		log.Warn("configuration", "warning", w.String())
	}
}

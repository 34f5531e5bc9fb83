// SPDX-License-Identifier: MIT

// Package daemon holds the plumbing the three daemons share: the command-line
// frame (help, version, exit codes) and logging setup. It carries no role logic.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/pkg/buildinfo"
)

// Exit statuses, as Miredo uses them: operators' scripts test for them.
const (
	ExitOK    = 0
	ExitError = 1 // I/O or setup failure
	ExitUsage = 2 // command-line or configuration error
)

// UsageError marks an error caused by the operator's input (flags or
// configuration file); Main exits with ExitUsage for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef builds a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// LogLevelFlag is the --log-level flag every daemon takes.
var LogLevelFlag = &cli.StringFlag{
	Name:  "log-level",
	Value: "info",
	Usage: "least severe messages to log: debug, info, warn or error",
}

// ParseLogLevel maps a --log-level value to a slog level.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, Usagef("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns a text logger on w at the given level, tagged with the
// program name so mixed lab logs stay readable.
func NewLogger(w io.Writer, program string, level slog.Level) *slog.Logger {
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("prog", program)
}

// NewApp builds the command-line frame of one daemon. Version and help flags
// behave the same in all three binaries: -V/--version and -h/--help, as in
// Miredo.
// allowArgs says whether positional arguments are accepted (Miredo takes one
// server name).
func NewApp(name, usage, description string, allowArgs bool, flags []cli.Flag, action cli.ActionFunc) *cli.App {
	// The version flag is ours rather than urfave/cli's, whose flag and
	// printer are package globals.
	versionFlag := &cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version and exit"}
	return &cli.App{
		Name:        name,
		Usage:       usage,
		Description: description,
		Flags:       append(append([]cli.Flag{}, flags...), versionFlag),
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				fmt.Fprintln(c.App.Writer, buildinfo.String(c.App.Name))
				return nil
			}
			if c.NArg() > 0 && !allowArgs {
				return Usagef("unexpected argument %q", c.Args().First())
			}
			return action(c)
		},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // Main decides the exit code.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &UsageError{Err: err}
		},
	}
}

// Main runs app with args and returns the process exit status. It prints
// errors to stderr once, prefixed with the program name.
func Main(app *cli.App, args []string, stderr io.Writer) int {
	app.ErrWriter = stderr
	err := app.Run(args)
	if err == nil {
		return ExitOK
	}
	// One line per problem, each with the program's name, so that every
	// line of a configuration's faults reads "prog: file:line: reason".
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(stderr, "%s: %s\n", app.Name, line)
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitError
}

// Exit is os.Exit, named so mains read as one line.
func Exit(code int) { os.Exit(code) }

// CatchHangup starts catching SIGHUP, so a reload request (Debian's
// ExecReload and if-up hook send one to Miredo) does not kill a daemon that
// cannot reload. Call it first thing; stop undoes it.
func CatchHangup() (hup <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// Reloads turns SIGHUP into new configurations for the daemon: at each
// signal, load reads the configuration again as at start; a configuration
// that fails is logged and skipped (the running one stays). The channel
// holds the newest configuration not yet taken.
func Reloads[C any](ctx context.Context, hup <-chan os.Signal, log *slog.Logger, load func() (C, error)) <-chan C {
	out := make(chan C, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			cfg, err := load()
			if err != nil {
				log.Error("SIGHUP: configuration not reloaded; the running one stays", "err", err)
				continue
			}
			select { // the newest replaces one not yet taken
			case <-out:
			default:
			}
			out <- cfg
		}
	}()
	return out
}

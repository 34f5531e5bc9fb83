// SPDX-License-Identifier: MIT

package conf

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel reasons, for errors.Is on an [*Error]'s Err.
var (
	// ErrUnknownDirective: the name is no directive of any Miredo role.
	ErrUnknownDirective = errors.New("unknown directive")
	// ErrNotGlobal: a server address is not a global unicast IPv4 address,
	// which Miredo refuses ("Server IPv4 addresses must be global unicast").
	ErrNotGlobal = errors.New("not a global unicast IPv4 address")
	// ErrLookup: the caller's host name lookup failed; the lookup's own
	// error is wrapped too.
	ErrLookup = errors.New("cannot resolve host name")
	// ErrTooManyErrors ends the list when a file has more than [MaxErrors]
	// errors (it is probably not a configuration file at all).
	ErrTooManyErrors = errors.New("too many errors")
)

// Error is one fault in a configuration file. It prints as
// "file:line: Directive "value": reason", or "file:line: reason" when it is
// about the line rather than a directive's value.
type Error struct {
	File      string
	Line      int       // 1-based; 0 when the fault has no line (an unset directive)
	Directive Directive // 0 when the fault is not about one directive
	Value     string    // the value as written; "" if none
	Err       error     // the reason
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(location(e.File, e.Line))
	b.WriteString(": ")
	if e.Directive != 0 {
		b.WriteString(e.Directive.String())
		if e.Value != "" {
			b.WriteByte(' ')
			b.WriteString(quote(e.Value))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errors is every error found in one file, in line order. Parse returns it
// whenever it fails, so errors.As finds each [*Error] through Unwrap.
type Errors []*Error

// Error prints one error per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Warning is something in a file that Miredo accepts and we accept too, but
// that the operator probably did not mean: a superfluous or repeated
// directive, a line without a value, text after a value, a line too long.
type Warning struct {
	File      string
	Line      int
	Directive Directive // 0 when the warning is about the line
	Msg       string
}

// String prints "file:line: message".
func (w Warning) String() string {
	return location(w.File, w.Line) + ": " + w.Msg
}

func location(file string, line int) string {
	if line <= 0 {
		return file
	}
	return file + ":" + strconv.Itoa(line)
}

// maxQuoted bounds how much of a value diagnostics repeat: a value can be a
// kilobyte long, and a log line should stay readable.
const maxQuoted = 64

// quote quotes s for diagnostics, cut to maxQuoted bytes.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

// SPDX-License-Identifier: MIT

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"log/syslog"
	"strings"
)

// SyslogHandler sends slog records to the local syslog daemon, one message
// per record ("msg key=value ..."), at the syslog severity matching the slog
// level, so operators who read Miredo's logs in syslog keep doing so.
type SyslogHandler struct {
	w      *syslog.Writer
	level  slog.Leveler
	prefix string // group prefix for attributes added later
	attrs  string // attributes from WithAttrs, preformatted
}

// NewSyslogHandler connects to the local syslog daemon with the given
// facility and tag (the program name, as Miredo's ident).
func NewSyslogHandler(facility syslog.Priority, tag string, level slog.Leveler) (*SyslogHandler, error) {
	w, err := syslog.New(facility|syslog.LOG_INFO, tag)
	if err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	return &SyslogHandler{w: w, level: level}, nil
}

// Enabled implements slog.Handler.
func (h *SyslogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle implements slog.Handler.
func (h *SyslogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.prefix, a)
		return true
	})
	msg := b.String()
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(msg)
	case r.Level >= slog.LevelInfo:
		return h.w.Info(msg)
	default:
		return h.w.Debug(msg)
	}
}

// WithAttrs implements slog.Handler.
func (h *SyslogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		appendAttr(&b, h.prefix, a)
	}
	h2 := *h
	h2.attrs = b.String()
	return &h2
}

// WithGroup implements slog.Handler.
func (h *SyslogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

// Close closes the connection to syslog.
func (h *SyslogHandler) Close() error { return h.w.Close() }

func appendAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			appendAttr(b, p, g)
		}
		return
	}
	v := a.Value.String()
	if strings.ContainsAny(v, " \t\"=") || v == "" {
		v = fmt.Sprintf("%q", v)
	}
	fmt.Fprintf(b, " %s%s=%s", prefix, a.Key, v)
}

// TeeHandler sends every record to each of its handlers, so a daemon logs to
// stderr (systemd's journal) and to syslog at once.
type TeeHandler []slog.Handler

// Enabled implements slog.Handler.
func (t TeeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

// Handle implements slog.Handler.
func (t TeeHandler) Handle(ctx context.Context, r slog.Record) error {
	var first error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// WithAttrs implements slog.Handler.
func (t TeeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(TeeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

// WithGroup implements slog.Handler.
func (t TeeHandler) WithGroup(name string) slog.Handler {
	out := make(TeeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}

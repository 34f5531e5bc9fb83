// SPDX-License-Identifier: MIT

package daemon

import (
	"bytes"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAppendAttr(t *testing.T) {
	tests := []struct {
		attr slog.Attr
		want string
	}{
		{slog.String("peer", "192.0.2.1:3544"), " peer=192.0.2.1:3544"},
		{slog.String("reason", "two words"), ` reason="two words"`},
		{slog.String("empty", ""), ` empty=""`},
		{slog.Int("n", 3), " n=3"},
		{slog.Group("nat", slog.String("type", "cone"), slog.Int("port", 1)), " nat.type=cone nat.port=1"},
		{slog.Attr{}, ""},
	}
	for _, tc := range tests {
		var b strings.Builder
		appendAttr(&b, "", tc.attr)
		if b.String() != tc.want {
			t.Errorf("appendAttr(%v) = %q, want %q", tc.attr, b.String(), tc.want)
		}
	}
}

func TestTeeHandler(t *testing.T) {
	var a, b bytes.Buffer
	log := slog.New(TeeHandler{
		slog.NewTextHandler(&a, &slog.HandlerOptions{Level: slog.LevelInfo}),
		slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelWarn}),
	}).With("prog", "miredo-server")
	log.Info("started", "addr", "192.0.2.10")
	log.Warn("lost")
	if !strings.Contains(a.String(), "started") || !strings.Contains(a.String(), "lost") || !strings.Contains(a.String(), "prog=miredo-server") {
		t.Errorf("info handler got %q", a.String())
	}
	if strings.Contains(b.String(), "started") || !strings.Contains(b.String(), "lost") {
		t.Errorf("warn handler got %q", b.String())
	}
}

// TestSyslogHandlerFormats dials a private unixgram socket instead of
// /dev/log and checks the message, priority and tag that reach it.
func TestSyslogHandlerFormats(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("unixgram sockets unavailable: %v", err)
	}
	defer conn.Close()
	w, err := syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_INFO, "miredo-test")
	if err != nil {
		t.Fatal(err)
	}
	h := &SyslogHandler{w: w, level: slog.LevelDebug}
	log := slog.New(h).With("role", "server").WithGroup("g")
	log.Error("bind failed", "addr", "192.0.2.10:3544")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg := string(buf[:n])
	// <27> = daemon(3)*8 + err(3).
	if !strings.HasPrefix(msg, "<27>") || !strings.Contains(msg, "miredo-test["+strconv.Itoa(os.Getpid())+"]: bind failed role=server g.addr=192.0.2.10:3544") {
		t.Errorf("syslog message %q", msg)
	}
	if err := h.Close(); err != nil {
		t.Error(err)
	}
}

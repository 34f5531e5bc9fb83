// SPDX-License-Identifier: MIT

package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve starts a control socket in a temporary directory with h.
func serve(t *testing.T, h Handler, allow ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "role.sock")
	s, err := Listen(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Allow(allow...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func status(_ context.Context, req Request) (any, error) {
	return map[string]any{"state": "qualified", "peers": req.Peers}, nil
}

// raw sends b on a fresh connection and returns the answer line.
func raw(t *testing.T, path string, b []byte) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(b)
	c.(*net.UnixConn).CloseWrite()
	var out strings.Builder
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return out.String()
}

func TestQuery(t *testing.T) {
	path := serve(t, status)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	got, err := Query(t.Context(), path, Request{Command: CommandStatus, Peers: true})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil || m["state"] != "qualified" || m["peers"] != true {
		t.Errorf("answer %s, %v", got, err)
	}
}

// TestBadRequests: each bad request gets an error reply, and the daemon
// goes on answering good ones.
func TestBadRequests(t *testing.T) {
	path := serve(t, status)
	for _, tc := range []struct {
		name, req, want string
	}{
		{"not JSON", "hello\n", "malformed request"},
		{"no command", "{}\n", "no command"},
		{"unknown command", `{"command":"reboot"}` + "\n", `unknown command "reboot"`},
		{"command not allowed", `{"command":"drain"}` + "\n", `command "drain" is not served by this daemon`},
		{"unknown field", `{"command":"status","verbose":true}` + "\n", "unknown field"},
		{"two values", `{"command":"status"} {}` + "\n", "more than one"},
		{"oversized", `{"command":"status","x":"` + strings.Repeat("a", 2*MaxRequest) + "\"}\n", "longer than"},
		{"empty", "", "reading the request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := raw(t, path, []byte(tc.req))
			var e ErrorReply
			if err := json.Unmarshal([]byte(got), &e); err != nil || !strings.Contains(e.Error, tc.want) {
				t.Errorf("reply %q, want an error saying %q", got, tc.want)
			}
			if _, err := Query(t.Context(), path, Request{Command: CommandStatus}); err != nil {
				t.Fatalf("good request after a bad one: %v", err)
			}
		})
	}
	if _, err := Query(t.Context(), path, Request{Command: "reboot"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("Query of an unknown command: %v", err)
	}
}

// TestAllow: a command besides status reaches the handler only on a
// socket that allows it.
func TestAllow(t *testing.T) {
	path := serve(t, func(_ context.Context, req Request) (any, error) {
		return map[string]string{"did": req.Command}, nil
	}, CommandDrain)
	got, err := Query(t.Context(), path, Request{Command: CommandDrain})
	if err != nil || !strings.Contains(string(got), `"did":"drain"`) {
		t.Errorf("drain on a socket that allows it: %s, %v", got, err)
	}
}

// TestSlowClientsDoNotStall: connections that never send a request take at
// most MaxConns slots until their deadline; a fresh request is still
// answered once a slot frees, and the handler is never called for them.
func TestSlowClients(t *testing.T) {
	path := serve(t, status)
	var idle []net.Conn
	for range MaxConns - 1 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := Query(ctx, path, Request{Command: CommandStatus}); err != nil {
		t.Fatalf("request beside %d idle connections: %v", len(idle), err)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	t.Run("stale socket replaced", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // a daemon that died: the file stays, nobody listens
		s, err := Listen(path, log)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left after Close: %v", err)
		}
	})
	t.Run("in use", func(t *testing.T) {
		path := filepath.Join(dir, "busy.sock")
		s, err := Listen(path, log)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := Listen(path, log); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("second Listen: %v", err)
		}
	})
	t.Run("in use: default path warns, named path fails", func(t *testing.T) {
		path := filepath.Join(dir, "second.sock")
		s, err := Listen(path, log)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s2, err := ListenOrWarn(path, false, log); err != nil || s2 != nil {
			t.Errorf("default path in use: %v, %v; want no socket and no error", s2, err)
		}
		if _, err := ListenOrWarn(path, true, log); !errors.Is(err, ErrInUse) {
			t.Errorf("named path in use: %v, want ErrInUse", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		os.WriteFile(path, nil, 0o644)
		if _, err := Listen(path, log); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a file: %v", err)
		}
	})
}

// TestListenRace: daemons of one role started together at the default
// path (the lab starts several clients at once; so can an init system):
// exactly one gets the socket, the others run without one, none fails, and
// the winner's socket still answers afterwards. Without the lock a start
// could find the winner's fresh socket not yet listening, remove it as
// stale, or lose the bind with EADDRINUSE and exit.
func TestListenRace(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for round := range 50 {
		path := filepath.Join(t.TempDir(), "client.sock")
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			servers []*Server
			errs    []error
		)
		for range n {
			wg.Go(func() {
				s, err := ListenOrWarn(path, false, log)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if s != nil {
					servers = append(servers, s)
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 || len(servers) != 1 {
			t.Fatalf("round %d: %d sockets, errors %v; want one socket and no error", round, len(servers), errs)
		}
		s := servers[0]
		ctx, cancel := context.WithCancel(context.Background())
		go s.Serve(ctx, func(context.Context, Request) (any, error) { return "ok", nil })
		if _, err := Query(ctx, path, Request{Command: CommandStatus}); err != nil {
			t.Fatalf("round %d: the winner's socket does not answer: %v", round, err)
		}
		cancel()
		s.Close()
	}
}

// FuzzParseRequest: whatever a local client sends, parsing never panics,
// and what it accepts is a known command.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"command":"status"}`, `{"command":"status","peers":true}`, `{}`, `hello`, `{"command":"status"} {}`, `{"command":"drain"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseRequest(b)
		if err == nil && req.Command != CommandStatus && req.Command != CommandDrain {
			t.Errorf("accepted command %q", req.Command)
		}
	})
}

// TestCommonFootprint: the footprint NewCommon reports follows the
// process: one more open file shows, and the counts are real.
func TestCommonFootprint(t *testing.T) {
	before := NewCommon("test", time.Now())
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	defer f.Close()
	after := NewCommon("test", time.Now())
	if after.OpenFDs != before.OpenFDs+1 {
		t.Errorf("open fds %d after opening one file, %d before", after.OpenFDs, before.OpenFDs)
	}
	if after.Goroutines < 1 || after.RSSBytes < 1<<20 {
		t.Errorf("goroutines %d, rss %d: want at least 1 and 1 MiB", after.Goroutines, after.RSSBytes)
	}
}

// TestWriteCountersNumbers: counters read back from JSON (float64) print
// as integers, large ones too, not in e-notation; zeros are left out.
func TestWriteCountersNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]any
		want string
	}{
		{"large from JSON", map[string]any{"engine": map[string]any{"queued_bytes": float64(1634400)}}, "engine:        queued_bytes=1634400\n"},
		{"uint64", map[string]any{"io": map[string]any{"sent": uint64(12345678901)}}, "io:            sent=12345678901\n"},
		{"zero left out", map[string]any{"io": map[string]any{"sent": float64(0), "got": float64(3)}}, "io:            got=3\n"},
		{"top level", map[string]any{"answered": float64(2e7)}, "counters:      answered=20000000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			WriteCounters(&b, tc.in)
			if b.String() != tc.want {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}

// SPDX-License-Identifier: MIT

// Package control is a daemon's control socket: a Unix stream socket where
// each connection carries one JSON request line and gets one JSON answer,
// the way `wg show` and `tailscale status` ask their daemons. The socket
// is created while the daemon still runs as root, with mode 0600, and the
// daemon keeps accepting on it after dropping its privileges.
//
// Answering a request must never hold up the data path: the daemon's
// handler only reads counters and copies what it reports, and the reply is
// written after that, with no lock held, under a deadline, with a bounded
// number of connections served at once.
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDir holds the daemons' sockets: /run/miredo/<role>.sock.
const DefaultDir = "/run/miredo"

// DefaultPath is a role's socket in DefaultDir.
func DefaultPath(role string) string { return filepath.Join(DefaultDir, role+".sock") }

// Limits on what one connection may cost the daemon.
const (
	// MaxRequest bounds a request line; a longer one gets an error reply.
	MaxRequest = 4096
	// Timeout bounds a whole exchange: reading the request and writing
	// the answer.
	Timeout = 5 * time.Second
	// MaxConns is how many connections are served at once; more wait in
	// the kernel's backlog.
	MaxConns = 4
)

// Commands. Every daemon answers status; a daemon serves the others only
// when it says so with Server.Allow.
const (
	CommandStatus = "status"
	// CommandDrain asks a relay to withdraw its announcement, forward for
	// its drain time while traffic moves elsewhere, then exit.
	CommandDrain = "drain"
)

// ErrInUse is Listen's error when another daemon answers on the path.
var ErrInUse = errors.New("in use by another daemon")

// Request is one request line.
type Request struct {
	Command string `json:"command"`
	// Peers asks status for the peer list, not only the count.
	Peers bool `json:"peers,omitempty"`
}

// ErrorReply is the answer to a request the daemon could not serve.
type ErrorReply struct {
	Error string `json:"error"`
}

// Handler answers a request with a value to encode as JSON, or an error
// sent back as an ErrorReply.
type Handler func(ctx context.Context, req Request) (any, error)

// Server is a listening control socket.
type Server struct {
	ln   *net.UnixListener
	path string
	log  *slog.Logger
	once sync.Once
	// allowed are the commands besides status that the handler serves;
	// written by Allow before Serve.
	allowed []string
}

// Listen creates the socket at path, mode 0600, in a directory it creates
// if need be (mode 0755). A socket left at path by a daemon that did not
// clean up is replaced; any other file there is an error. An empty path
// means no control socket: Listen returns a nil *Server, on which Serve
// and Close do nothing.
func Listen(path string, log *slog.Logger) (*Server, error) {
	if path == "" {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Daemons starting together would otherwise race between finding a
	// socket, asking whether anyone answers and binding: one could remove
	// another's socket before it listens, or lose the bind and exit. The
	// lock is on the directory, so nothing is left behind.
	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer unlock()
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket: %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket: %s: %w", path, ErrInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: removing a stale one: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if errors.Is(err, unix.EADDRINUSE) {
		// A daemon that does not take the lock bound it meanwhile.
		return nil, fmt.Errorf("control socket: %s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The daemon unlinks it at exit only while it still can: after the
	// privilege drop the directory is not its own, and the next start
	// replaces it.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{ln: ln, path: path, log: log}, nil
}

// ListenOrWarn is Listen for a daemon that was not told where its socket
// goes: when another daemon of its role already answers at the default
// path (a second client on the host), it runs without one and says so,
// rather than refuse to start; any other failure is an error.
func ListenOrWarn(path string, named bool, log *slog.Logger) (*Server, error) {
	s, err := Listen(path, log)
	if err != nil && !named && errors.Is(err, ErrInUse) {
		log.Warn("no control socket: another daemon answers at the default path; give --control-socket to ask this one", "path", path)
		return nil, nil
	}
	return s, err
}

// Allow lets requests with these commands (besides status) through to the
// handler; a daemon that does not allow a command answers it with an error.
// Call it before Serve.
func (s *Server) Allow(commands ...string) {
	if s != nil {
		s.allowed = append(s.allowed, commands...)
	}
}

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Close stops accepting and removes the socket if it can.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		os.Remove(s.path)
	})
	return err
}

// Serve answers connections with h until ctx ends or the socket is closed.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	if s == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	sem := make(chan struct{}, MaxConns)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := s.ln.AcceptUnix()
		if err != nil {
			<-sem
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.log.Warn("control socket: accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.serveConn(ctx, c, h)
		}()
	}
}

// serveConn answers one connection: one request, one reply.
func (s *Server) serveConn(ctx context.Context, c *net.UnixConn, h Handler) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(Timeout))
	req, err := readRequest(c)
	if err == nil && req.Command != CommandStatus && !slices.Contains(s.allowed, req.Command) {
		err = fmt.Errorf("command %q is not served by this daemon", req.Command)
	}
	var reply any
	if err == nil {
		reply, err = h(ctx, req)
	}
	if err != nil {
		s.log.Debug("control request refused", "err", err)
		reply = ErrorReply{Error: err.Error()}
	}
	if err := json.NewEncoder(c).Encode(reply); err != nil {
		s.log.Debug("control reply not sent", "err", err)
	}
}

// readRequest reads and checks one request line.
func readRequest(r io.Reader) (Request, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, MaxRequest+1), MaxRequest+1).ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxRequest:
		return Request{}, fmt.Errorf("request longer than %d bytes", MaxRequest)
	case err != nil && !(errors.Is(err, io.EOF) && len(line) > 0):
		return Request{}, fmt.Errorf("reading the request: %w", err)
	}
	return ParseRequest(line)
}

// ParseRequest reads one request; unknown fields and commands are errors.
func ParseRequest(b []byte) (Request, error) {
	var req Request
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("malformed request: %w", err)
	}
	if d.More() {
		return Request{}, errors.New("malformed request: more than one JSON value")
	}
	switch req.Command {
	case CommandStatus, CommandDrain:
		return req, nil
	case "":
		return Request{}, errors.New("malformed request: no command")
	}
	return Request{}, fmt.Errorf("unknown command %q", req.Command)
}

// Query sends req to the daemon at path and returns its answer, or the
// error it replied with.
func Query(ctx context.Context, path string, req Request) (json.RawMessage, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is the daemon running? the socket is root's)", path, err)
	}
	defer c.Close()
	deadline := time.Now().Add(Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.SetDeadline(deadline)
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	var raw json.RawMessage
	if err := json.NewDecoder(c).Decode(&raw); err != nil {
		return nil, fmt.Errorf("control socket %s: reading the answer: %w", path, err)
	}
	var e ErrorReply
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("daemon: %s", e.Error)
	}
	return raw, nil
}

// lockDir takes an exclusive lock on dir, waiting for it, and returns the
// function that releases it.
func lockDir(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { unix.Close(fd) }, nil
}

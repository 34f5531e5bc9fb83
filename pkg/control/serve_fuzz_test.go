// SPDX-License-Identifier: MIT

package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStatus is a daemon's status as the fake source reports it: the
// common header, the peer count, and the peers when asked for.
type fakeStatus struct {
	Common
	State     string `json:"state"`
	PeerCount uint64 `json:"peer_count"`
	Peers     []Peer `json:"peers,omitempty"`
}

// fakeSource answers status requests the way the daemons' handlers do,
// and counts the requests that reach it.
type fakeSource struct {
	calls atomic.Int64
	last  atomic.Value // Request
}

func (s *fakeSource) handle(_ context.Context, req Request) (any, error) {
	s.calls.Add(1)
	s.last.Store(req)
	st := fakeStatus{Common: NewCommon("client", time.Now().Add(-time.Minute)), State: "qualified", PeerCount: 2}
	if req.Peers {
		seen := 1.5
		st.Peers = []Peer{
			{Address: netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd"), Mapping: netip.MustParseAddrPort("198.51.100.2:40000"), Trusted: true, LastSeen: &seen},
			{Address: netip.MustParseAddr("2001:db8::1"), Native: true},
		}
	}
	return st, nil
}

// fuzzDeadline bounds one exchange on the client side: below the
// server's own Timeout, so a server that waits for nothing shows as a
// hang here rather than as its timeout firing.
const fuzzDeadline = 3 * time.Second

// FuzzServe writes fuzzed bytes, in fuzzed chunk sizes, to a served
// control socket, as any local process may, and checks the exchange end to
// end: the server answers within the deadline with exactly one JSON line,
// either the status of the fake source (for a first line ParseRequest
// accepts, with the peer list exactly when it asked for it) or an error
// reply (for anything else, without calling the handler), then closes the
// connection; and it goes on answering: a request of the client's own
// (status, status --peers, whose JSON answers `status --json` prints, and
// the fuzzed bytes taken as a command name) gets the answer it should.
func FuzzServe(f *testing.F) {
	path := filepath.Join(f.TempDir(), "role.sock")
	s, err := Listen(path, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	src := &fakeSource{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, src.handle) }()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Errorf("Serve: %v", err)
		}
	})
	for _, seed := range []string{
		`{"command":"status"}` + "\n",
		`{"command":"status","peers":true}` + "\n",
		`{"command":"status","peers":false}`,
		`{"command":"status"}` + "\n" + `{"command":"reboot"}` + "\n",
		`{"command":"reboot"}` + "\n",
		`{"command":"status","verbose":true}` + "\n",
		`{"command":"status"} {}` + "\n",
		`{}` + "\n",
		"hello\n",
		"",
		"\n",
	} {
		f.Add([]byte(seed), uint16(0), uint8(0), true)
		f.Add([]byte(seed), uint16(0), uint8(3), false)
		f.Add([]byte(seed), uint16(0), uint8(200), true)
		// Lines around the limit: JSON allows the padding after '{'.
		f.Add([]byte(seed), uint16(MaxRequest-len(seed)), uint8(0), true)
		f.Add([]byte(seed), uint16(MaxRequest-len(seed)+1), uint8(0), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, pad uint16, chunk uint8, closeWrite bool) {
		// Long requests are made by padding (spaces after the first
		// byte) rather than by long inputs, which the fuzzer would
		// spend its time minimizing; the server reads at most
		// MaxRequest+1 bytes, so more than twice that adds nothing.
		in = in[:min(len(in), 512)]
		b := in
		if n := int(pad) % (2 * MaxRequest); n > 0 && len(in) > 0 {
			b = append(append(append(make([]byte, 0, len(in)+n), in[0]), bytes.Repeat([]byte{' '}, n)...), in[1:]...)
		}
		// A request line not yet ended, from a client that keeps the
		// connection open, is waited for until the server's Timeout:
		// right, but too slow to fuzz.
		line, complete := firstLine(b)
		if !complete {
			closeWrite = true
		}
		calls := src.calls.Load()
		reply := exchange(t, path, b, int(chunk), closeWrite)
		called := src.calls.Load() - calls
		req, perr := ParseRequest(line)
		if len(line) == 0 || len(line) > MaxRequest {
			perr = errors.New("no line")
		}
		dec := json.NewDecoder(bytes.NewReader(reply))
		dec.DisallowUnknownFields()
		if perr != nil {
			var e ErrorReply
			if err := dec.Decode(&e); err != nil || e.Error == "" || !endsAfterOne(reply, dec) || called != 0 {
				t.Fatalf("request %q (%v): reply %q, handler called %d times; want one error line, no call", b, perr, reply, called)
			}
			checkStillServing(t, path, b, chunk&1 != 0)
			return
		}
		var st fakeStatus
		if err := dec.Decode(&st); err != nil || !endsAfterOne(reply, dec) || called != 1 || st.State != "qualified" {
			t.Fatalf("request %q: reply %q (%v), handler called %d times; want one status line", b, reply, err, called)
		}
		if got := src.last.Load().(Request); got != req || (len(st.Peers) > 0) != req.Peers {
			t.Fatalf("request %q: handler saw %+v, reply has %d peers; want %+v", b, got, len(st.Peers), req)
		}
		checkStillServing(t, path, b, chunk&1 != 0)
	})
}

// firstLine is what readRequest reads: up to and including the first
// newline within MaxRequest bytes (complete), or everything when there is
// none and the client closes; longer is too long either way.
func firstLine(b []byte) (line []byte, complete bool) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i < MaxRequest {
		return b[:i+1], true
	}
	if len(b) > MaxRequest {
		return b[:MaxRequest+1], true
	}
	return b, false
}

// endsAfterOne reports whether reply is one JSON value and its newline.
func endsAfterOne(reply []byte, dec *json.Decoder) bool {
	return int(dec.InputOffset()) == len(reply)-1 && reply[len(reply)-1] == '\n'
}

// exchange writes b on a fresh connection, chunk bytes at a time (all at
// once for 0), closes its write side when asked, and returns everything
// the server sent until it closed the connection.
func exchange(t *testing.T, path string, b []byte, chunk int, closeWrite bool) []byte {
	t.Helper()
	c, err := net.DialTimeout("unix", path, fuzzDeadline)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(fuzzDeadline))
	wrote := make(chan struct{})
	go func() {
		// The server stops reading after a request line; what it leaves
		// fails to write once it closes, which is fine.
		defer close(wrote)
		for rest := b; len(rest) > 0; {
			n := len(rest)
			if chunk > 0 {
				n = min(n, chunk)
			}
			if _, err := c.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		if closeWrite {
			c.(*net.UnixConn).CloseWrite()
		}
	}()
	var out bytes.Buffer
	_, err = out.ReadFrom(c)
	<-wrote
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("request %q: no answer and close within %v (got %q)", b, fuzzDeadline, out.Bytes())
	}
	if out.Len() == 0 {
		t.Fatalf("request %q: connection closed without an answer (%v)", b, err)
	}
	return out.Bytes()
}

// checkStillServing asks what the client's status command asks, with or
// without the peers, through Query; and a short input without a newline,
// as a command name.
func checkStillServing(t *testing.T, path string, b []byte, peers bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzDeadline)
	defer cancel()
	raw, err := Query(ctx, path, Request{Command: CommandStatus, Peers: peers})
	var st fakeStatus
	if err != nil || json.Unmarshal(raw, &st) != nil || (len(st.Peers) > 0) != peers {
		t.Fatalf("after %q: status (peers %v): %s, %v", b, peers, raw, err)
	}
	if len(b) > 64 || bytes.IndexByte(b, '\n') >= 0 {
		return
	}
	cmd := string(b)
	_, err = Query(ctx, path, Request{Command: cmd, Peers: peers})
	if cmd == CommandStatus && err != nil || cmd != CommandStatus && (err == nil || !strings.HasPrefix(err.Error(), "daemon: ")) {
		t.Fatalf("command %q through Query: %v; want an answer for status only, an error reply otherwise", cmd, err)
	}
}

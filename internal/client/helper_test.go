// SPDX-License-Identifier: MIT

package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/miredo-go/miredo/pkg/netcfg"
)

func TestParseRequest(t *testing.T) {
	teredo := netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd")
	raw := func(state byte, addr netip.Addr, mtu uint16) []byte {
		b := make([]byte, requestLen)
		b[3] = 7 // id
		b[4] = state
		a := addr.As16()
		copy(b[5:], a[:])
		b[21], b[22] = byte(mtu>>8), byte(mtu)
		return b
	}
	cases := []struct {
		name string
		b    []byte
		want request
		ok   bool
	}{
		{"up", raw(stateUp, teredo, 1280), request{up: true, addr: teredo, mtu: 1280}, true},
		{"up, largest MTU", raw(stateUp, teredo, 65535), request{up: true, addr: teredo, mtu: 65535}, true},
		{"down", raw(stateDown, netip.IPv6Unspecified(), 0), request{}, true},
		{"up outside the Teredo prefix", raw(stateUp, netip.MustParseAddr("2001:db8::1"), 1280), request{}, false},
		{"up with a link-local", raw(stateUp, netip.MustParseAddr("fe80::1"), 1280), request{}, false},
		{"up with zero address", raw(stateUp, netip.IPv6Unspecified(), 1280), request{}, false},
		{"up with small MTU", raw(stateUp, teredo, 1279), request{}, false},
		{"up with zero MTU", raw(stateUp, teredo, 0), request{}, false},
		{"down with an address", raw(stateDown, teredo, 0), request{}, false},
		{"down with an MTU", raw(stateDown, netip.IPv6Unspecified(), 1280), request{}, false},
		{"unknown state", raw(3, teredo, 1280), request{}, false},
		{"zero state", raw(0, teredo, 1280), request{}, false},
		{"short", raw(stateUp, teredo, 1280)[:22], request{}, false},
		{"long", append(raw(stateUp, teredo, 1280), 0), request{}, false},
		{"empty", nil, request{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, got, err := parseRequest(tc.b)
			if tc.ok != (err == nil) {
				t.Fatalf("parseRequest: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadRequest) {
				t.Errorf("error %v does not wrap ErrBadRequest", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if tc.ok {
				if id != 7 {
					t.Errorf("id %d, want 7", id)
				}
				if againID, again, err := parseRequest(got.marshal(9)); err != nil || again != got || againID != 9 {
					t.Errorf("round trip: %d %+v, %v", againID, again, err)
				}
			}
		})
	}
}

func TestReply(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
	}{{nil, 0}, {nil, hookNotRun}, {errors.New("ip -6 addr add: permission denied"), 1}, {errors.New(strings.Repeat("x", 5000)), 2}} {
		id, st, err := parseReply(marshalReply(42, tc.err, tc.status))
		if id != 42 || st != tc.status || (err == nil) != (tc.err == nil) {
			t.Errorf("reply(%v, %d) read back as %d, %v", tc.err, tc.status, st, err)
		}
		if tc.err != nil && len(tc.err.Error()) < 100 && !strings.Contains(err.Error(), tc.err.Error()) {
			t.Errorf("message lost: %v", err)
		}
	}
	if _, _, err := parseReply([]byte{0, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Error("short reply accepted")
	}
}

func TestHookEnv(t *testing.T) {
	a1 := netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd")
	a2 := netip.MustParseAddr("2001:0:c000:20a:1234:63bf:3c9b:fffc")
	cone := netip.MustParseAddr("2001:0:c000:20a:8000:63bf:3c9b:fffd")
	up1 := request{up: true, addr: a1, mtu: 1280}
	cases := []struct {
		name     string
		state    string
		req, old request
		want     []string
	}{
		{"first up", "up", up1, request{}, []string{"STATE=up", "ADDRESS=" + a1.String(),
			"LLADDRESS=fe80::ffff:ffff:ffff", "MTU=1280", "OLD_STATE=down"}},
		{"new address", "up", request{up: true, addr: a2, mtu: 1400}, up1, []string{"STATE=up", "ADDRESS=" + a2.String(),
			"LLADDRESS=fe80::ffff:ffff:ffff", "MTU=1400", "OLD_STATE=up", "OLD_ADDRESS=" + a1.String(),
			"OLD_LLADDRESS=fe80::ffff:ffff:ffff", "OLD_MTU=1280"}},
		{"down after up", "down", request{}, up1, []string{"STATE=down", "OLD_STATE=up", "OLD_ADDRESS=" + a1.String(),
			"OLD_LLADDRESS=fe80::ffff:ffff:ffff", "OLD_MTU=1280"}},
		{"destroy", "destroy", request{}, request{}, []string{"STATE=destroy", "OLD_STATE=down"}},
		{"cone address", "up", request{up: true, addr: cone, mtu: 1280}, request{}, []string{"STATE=up", "ADDRESS=" + cone.String(),
			"LLADDRESS=fe80::8000:5445:5245:444f", "MTU=1280", "OLD_STATE=down"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := hookEnv("teredo", 7, tc.state, tc.req, tc.old)
			want := append([]string{"IFACE=teredo", "IFINDEX=7"}, tc.want...)
			var got []string
			for _, kv := range env {
				if !strings.HasPrefix(kv, "PATH=") {
					got = append(got, kv)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("env\n got %q\nwant %q", got, want)
			}
		})
	}
}

// fakeLink records what the helper does to the interface.
type fakeLink struct{ calls []string }

func (f *fakeLink) CleanStart() (netcfg.Cleaned, error) {
	f.calls = append(f.calls, "clean")
	return netcfg.Cleaned{}, nil
}
func (f *fakeLink) SetMTU(mtu int) error { return f.rec("mtu %d", mtu) }
func (f *fakeLink) SetUp() error         { return f.rec("up") }
func (f *fakeLink) SetDown() error       { return f.rec("down") }
func (f *fakeLink) AddAddr(p netip.Prefix) error {
	return f.rec("add %v", p)
}
func (f *fakeLink) DelAddr(p netip.Prefix) error  { return f.rec("del %v", p) }
func (f *fakeLink) AddRoute(r netcfg.Route) error { return f.rec("route add %v", r) }
func (f *fakeLink) DelRoute(r netcfg.Route) error { return f.rec("route del %v", r) }
func (f *fakeLink) rec(format string, a ...any) error {
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
	return nil
}

// script is a fake socket: the requests to read, and the replies written.
type script struct {
	reqs    [][]byte
	replies [][]byte
}

func (s *script) Read(b []byte) (int, error) {
	if len(s.reqs) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.reqs[0])
	s.reqs = s.reqs[1:]
	return n, nil
}

func (s *script) Write(b []byte) (int, error) {
	s.replies = append(s.replies, append([]byte(nil), b...))
	return len(b), nil
}

// TestHelperSequence drives the helper through up, a new address, down,
// up again and the packet process going away, with a hook that records
// its environment.
func TestHelperSequence(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "calls")
	hook := filepath.Join(dir, "hook")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$STATE ${ADDRESS:-none} ${OLD_ADDRESS:-none} $MTU\" >> "+record+"\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a1 := netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd")
	a2 := netip.MustParseAddr("2001:0:c000:20a:1234:63bf:3c9b:fffc")
	sock := &script{reqs: [][]byte{
		request{up: true, addr: a1, mtu: 1280}.marshal(1),
		request{up: true, addr: a2, mtu: 1400}.marshal(1),
		request{}.marshal(1),
		request{up: true, addr: a2, mtu: 1400}.marshal(1),
	}}
	link := &fakeLink{}
	var logs bytes.Buffer
	hp := &helperProc{link: link, cfg: HelperConfig{Interface: "teredo", Hook: hook}, ifindex: 7,
		log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := hp.serve(sock); err != nil {
		t.Fatal(err)
	}
	if len(sock.replies) != 4 {
		t.Fatalf("%d replies to 4 requests", len(sock.replies))
	}
	for i, r := range sock.replies {
		if _, st, err := parseReply(r); st != 3 || err != nil {
			t.Errorf("reply %d: hook status %d, %v", i, st, err)
		}
	}
	def := "route add ::/0 metric 1029"
	want := []string{
		"clean", "mtu 1280", "up", "add fe80::ffff:ffff:ffff/64", "add " + a1.String() + "/32", def,
		"mtu 1400", "up", "add fe80::ffff:ffff:ffff/64", "add " + a2.String() + "/32", "del " + a1.String() + "/32", def,
		"route del ::/0 metric 1029", "del " + a2.String() + "/32", "down",
		"mtu 1400", "up", "add fe80::ffff:ffff:ffff/64", "add " + a2.String() + "/32", def,
		// the socket closes
		"route del ::/0 metric 1029", "del " + a2.String() + "/32", "down",
	}
	if !slices.Equal(link.calls, want) {
		t.Errorf("interface calls\n got %q\nwant %q", link.calls, want)
	}
	out, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	wantHooks := []string{
		"up " + a1.String() + " none 1280",
		"up " + a2.String() + " " + a1.String() + " 1400",
		"down none " + a2.String() + " ",
		"up " + a2.String() + " none 1400",
		"down none " + a2.String() + " ",
		"destroy none none ",
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); !slices.Equal(got, wantHooks) {
		t.Errorf("hook calls\n got %q\nwant %q", got, wantHooks)
	}
}

// TestHelperRefuses: a request outside the protocol ends the helper, after
// it has put the interface down.
func TestHelperRefuses(t *testing.T) {
	a1 := netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd")
	sock := &script{reqs: [][]byte{
		request{up: true, addr: a1, mtu: 1280}.marshal(1),
		request{up: true, addr: netip.MustParseAddr("2001:db8::1"), mtu: 1280}.marshal(1),
		request{}.marshal(1),
	}}
	link := &fakeLink{}
	hp := &helperProc{link: link, cfg: HelperConfig{Interface: "teredo"}, log: slog.New(slog.DiscardHandler)}
	if err := hp.serve(sock); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("serve: %v, want ErrBadRequest", err)
	}
	if len(sock.replies) != 1 || len(sock.reqs) != 1 {
		t.Errorf("%d replies, %d requests left; want 1 and 1", len(sock.replies), len(sock.reqs))
	}
	if last := link.calls[len(link.calls)-1]; last != "down" {
		t.Errorf("interface left %q", last)
	}
}

// TestLateReplySkipped: a reply that arrives after its request timed out
// is not taken as the answer to the next request.
func TestLateReplySkipped(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer theirs.Close()
	h := &helper{sock: ours, timeout: 200 * time.Millisecond, done: make(chan struct{})}
	defer ours.Close()
	// The helper answers the first request too late, with hook status 1,
	// then the second at once with hook status 2.
	timedOut := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		var ids []uint32
		for range 2 {
			n, err := theirs.Read(buf)
			if err != nil {
				return
			}
			id, _, err := parseRequest(buf[:n])
			if err != nil {
				t.Error(err)
				return
			}
			ids = append(ids, id)
			if len(ids) == 1 {
				<-timedOut
			}
		}
		theirs.Write(marshalReply(ids[0], nil, 1))
		theirs.Write(marshalReply(ids[1], nil, 2))
	}()
	a := netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd")
	if _, err := h.Up(a, 1280); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first request: %v, want a timeout", err)
	}
	close(timedOut)
	st, err := h.Down()
	if err != nil || st != 2 {
		t.Errorf("second request: hook status %d, %v; want 2 (its own answer), nil", st, err)
	}
}

// FuzzHelperMessages: whatever the packet process (request) or the helper
// (reply) sends, parsing never panics, and what parses re-encodes to the
// same bytes; a refused request says why with ErrBadRequest, and a failed
// reply keeps its message. The seeds hold every kind: up, down, a refused
// state, and replies done, done without a hook, and failed.
func FuzzHelperMessages(f *testing.F) {
	a := netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd")
	f.Add(request{up: true, addr: a, mtu: 1280}.marshal(1))
	f.Add(request{}.marshal(2))
	bad := request{up: true, addr: a, mtu: 1280}.marshal(6)
	bad[4] = 3
	f.Add(bad)
	f.Add(marshalReply(3, errors.New("failed"), 1))
	f.Add(marshalReply(4, nil, 0))
	f.Add(marshalReply(5, nil, hookNotRun))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, req, err := parseRequest(b)
		if err == nil && !bytes.Equal(req.marshal(id), b) {
			t.Errorf("request % x parsed as %d %+v, which encodes as % x", b, id, req, req.marshal(id))
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("request % x refused with %v, not ErrBadRequest", b, err)
		}
		rid, st, err := parseReply(b)
		switch {
		case len(b) < replyHeadLen:
			if err == nil {
				t.Errorf("short reply % x accepted", b)
			}
		case b[4] == replyDone:
			if err != nil || !bytes.Equal(marshalReply(rid, nil, st), b[:replyHeadLen]) {
				t.Errorf("reply % x parsed as %d %d %v", b, rid, st, err)
			}
		default:
			if err == nil || !strings.HasSuffix(err.Error(), string(b[replyHeadLen:])) {
				t.Errorf("failed reply % x parsed as %v", b, err)
			}
		}
	})
}

// SPDX-License-Identifier: MIT

//go:build e2e && linux

package xdpio

// Privileges, measured rather than assumed: the test binary re-executes
// itself inside the lab server's namespace as a child (chosen by an
// environment variable) that attaches a Group, either with a bounding set
// cut down by setpriv(1) (a root process gets exactly its bounding set on
// exec), or with everything and then dropping to nobody with no capability
// at all (pkg/dropprivs) before it serves.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/pkg/dropprivs"
	"golang.org/x/sys/unix"
)

const (
	childEnv      = "XDPIO_E2E_CHILD" // "attach" or "drop"
	childIfEnv    = "XDPIO_E2E_IF"
	childAddrsEnv = "XDPIO_E2E_ADDRS"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

// childReport is one JSON line the child prints.
type childReport struct {
	Stage string // "attached", "dropped", "closed"
	Err   string
	Mode  string
	Caps  string
	// RingReads and TXFrames count datagrams through the rings, at close.
	RingReads, TXFrames uint64
	// ReadCalls, Reads and Kicks describe the batches (micro-measure).
	ReadCalls, Reads, Kicks uint64
}

func report(r childReport) {
	json.NewEncoder(os.Stdout).Encode(r)
}

func runChild(mode string) int {
	var addrs []netip.Addr
	for _, s := range strings.Split(os.Getenv(childAddrsEnv), ",") {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	if strings.HasPrefix(mode, "echo-") {
		return runEchoChild(mode, addrs)
	}
	// Pinned memory is charged to RLIMIT_MEMLOCK unless CAP_IPC_LOCK:
	// a limit below one UMEM makes that capability's part visible.
	lim := unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		report(childReport{Stage: "attached", Err: "setrlimit: " + err.Error()})
		return 0
	}
	g, err := Attach(Config{Interface: os.Getenv(childIfEnv), Addrs: addrs})
	if err != nil {
		report(childReport{Stage: "attached", Err: err.Error()})
		return 0
	}
	report(childReport{Stage: "attached", Mode: g.Mode().String()})
	if mode == "attach" {
		if err := g.Close(); err != nil {
			report(childReport{Stage: "closed", Err: err.Error()})
		}
		return 0
	}
	res, err := dropprivs.Drop(dropprivs.Config{User: "nobody"})
	if err != nil {
		report(childReport{Stage: "dropped", Err: err.Error()})
		g.Close()
		return 0
	}
	report(childReport{Stage: "dropped", Caps: res.Caps.String()})
	// Serve until the parent closes stdin.
	done := make(chan struct{})
	for _, c := range g.Conns() {
		go serveEcho(c, 2048)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	<-done
	st := sumStats(g)
	r := childReport{Stage: "closed", RingReads: st.ReadDatagrams - st.KernelReads, TXFrames: st.TXFrames}
	err = g.Close()
	if err != nil {
		r.Err = err.Error()
	}
	report(r)
	return 0
}

// startChild runs the test binary as a child in the server's namespace,
// under prefix (a command such as setpriv and its options), and returns
// its reports as they come.
func startChild(t testing.TB, l *lab.Lab, mode string, prefix ...string) (*exec.Cmd, io.WriteCloser, <-chan childReport) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv := l.Host(lab.Server)
	var addrs []string
	for _, a := range srv.IPv4s() {
		addrs = append(addrs, a.String())
	}
	argv := append(append([]string{}, prefix...), self, "-test.run=^$")
	cmd := srv.Command(context.Background(), argv...)
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childIfEnv+"="+srv.Ifname, childAddrsEnv+"="+strings.Join(addrs, ","))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	out := make(chan childReport, 4)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r childReport
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				out <- r
			}
		}
	}()
	return cmd, stdin, out
}

func nextReport(t testing.TB, ch <-chan childReport, stage string) childReport {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatalf("child exited before reporting %q", stage)
		}
		if r.Stage != stage {
			t.Fatalf("child reported %+v, want stage %q", r, stage)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("no %q report from the child in 20 s", stage)
	}
	return childReport{}
}

// TestCapabilities: Attach works with CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and
// CAP_IPC_LOCK (no CAP_SYS_ADMIN), and fails without any one of them, with
// an error that says which step failed.
func TestCapabilities(t *testing.T) {
	l := lab.New(t, lab.Options{})
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv(1) (util-linux) not found")
	}
	need := []string{"net_admin", "bpf", "net_raw", "ipc_lock"}
	bounding := func(caps []string) string {
		s := "-all"
		for _, c := range caps {
			s += ",+" + c
		}
		return s
	}
	cases := []struct {
		name    string
		caps    []string
		wantErr string // "" for success
	}{
		{"all four", need, ""},
		{"no net_admin", []string{"bpf", "net_raw", "ipc_lock"}, "XSKMAP"},
		{"no bpf", []string{"net_admin", "net_raw", "ipc_lock"}, "XSKMAP"},
		{"no net_raw", []string{"net_admin", "bpf", "ipc_lock"}, "AF_XDP socket"},
		{"no ipc_lock", []string{"net_admin", "bpf", "net_raw"}, "register UMEM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, reports := startChild(t, l, "attach", "setpriv", "--bounding-set", bounding(tc.caps), "--")
			r := nextReport(t, reports, "attached")
			switch {
			case tc.wantErr == "" && r.Err != "":
				t.Fatalf("Attach with %v: %s", tc.caps, r.Err)
			case tc.wantErr != "" && !strings.Contains(r.Err, tc.wantErr):
				t.Fatalf("Attach with %v: error %q, want one about %q", tc.caps, r.Err, tc.wantErr)
			}
			t.Logf("%v: %s", tc.caps, r.Err)
			if out := xdpAttached(t, l); out != "" {
				t.Fatalf("XDP program left attached:\n%s", out)
			}
		})
	}
}

// TestServesAfterDrop: a child attaches, drops to nobody with no
// capability left, and still echoes datagrams through the rings (next hops
// resolved after the drop: netlink reads need no privilege); its Close,
// unprivileged, detaches the program.
func TestServesAfterDrop(t *testing.T) {
	l := lab.New(t, lab.Options{})
	cmd, stdin, reports := startChild(t, l, "drop")
	if r := nextReport(t, reports, "attached"); r.Err != "" {
		t.Fatalf("Attach: %s", r.Err)
	}
	r := nextReport(t, reports, "dropped")
	if r.Err != "" {
		if strings.Contains(r.Err, dropprivs.ErrCgo.Error()) {
			t.Skipf("test binary built with cgo (%s): run with CGO_ENABLED=0, as make check does", r.Err)
		}
		t.Fatalf("Drop: %s", r.Err)
	}
	if r.Caps != "none" {
		t.Fatalf("capabilities after the drop: %s, want none", r.Caps)
	}
	c, err := l.Host(lab.Pub).ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(t, c, serverDsts(l), 20, 100)
	exchange(t, c, serverDsts(l), 20, 100)
	stdin.Close()
	r = nextReport(t, reports, "closed")
	if r.Err != "" {
		t.Fatalf("Close after the drop: %s", r.Err)
	}
	// 80 datagrams in, the second 40 out through the ring at least.
	if r.RingReads < 80 || r.TXFrames < 40 {
		t.Errorf("after the drop: %d datagrams read from the RX ring, %d sent through the TX ring; want ≥ 80 and ≥ 40", r.RingReads, r.TXFrames)
	}
	if err := cmd.Wait(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("child: %v", err)
		}
	}
	if out := xdpAttached(t, l); out != "" {
		t.Fatalf("XDP program still attached after the unprivileged Close:\n%s", out)
	}
}

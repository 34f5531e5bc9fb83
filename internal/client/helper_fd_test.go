// SPDX-License-Identifier: MIT

package client

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv switches the test binary into one of the child roles of
// TestHelperChild; the tests below start it through small shell scripts,
// because the helper and its hooks run with an empty environment.
const childEnv = "MIREDO_CLIENT_TEST_CHILD"

// TestHelperChild is not a test: it is the code the test binary runs when
// started as a child by the tests below.
//
//	helper: the privileged helper as RunHelper runs it after the privilege
//	        drop (socket on fd 3, hooks), with a fake interface;
//	fds:    a hook that prints the descriptors it inherited;
//	nofd3:  RunHelper started by hand, without its socket.
func TestHelperChild(t *testing.T) {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch role {
	case "helper":
		hook := ""
		if i := slices.Index(os.Args, "--hook"); i >= 0 && i+1 < len(os.Args) {
			hook = os.Args[i+1]
		}
		sock, err := openHelperSocket(helperFD)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		hp := &helperProc{link: &fakeLink{}, cfg: HelperConfig{Interface: "teredo", Hook: hook}, log: log}
		if err := hp.serve(sock); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "fds":
		fmt.Println(inheritedFDs())
	case "nofd3":
		err := RunHelper(HelperConfig{Interface: "teredo-none", Hook: os.Getenv("HOOK"), User: "nobody"}, log)
		fmt.Fprintln(os.Stderr, err)
		if err != nil {
			os.Exit(3)
		}
	}
	os.Exit(0)
}

// inheritedFDs lists the descriptors in /proc/self/fd that the process
// inherited at exec: every descriptor a Go program opens itself is
// close-on-exec, so the others came from the parent.
func inheritedFDs() string {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return err.Error()
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err.Error()
	}
	var fds []int
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	s := make([]string, len(fds))
	for i, fd := range fds {
		s[i] = strconv.Itoa(fd)
	}
	return strings.Join(s, " ")
}

// childScript writes a shell script that runs the test binary in role,
// its output appended to out when set.
func childScript(t *testing.T, dir, name, role, out string) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	redirect := ""
	if out != "" {
		redirect = " >> '" + out + "'"
	}
	script := filepath.Join(dir, name)
	body := "#!/bin/sh\n" + childEnv + "=" + role + " exec '" + bin + "' -test.run='^TestHelperChild$' -- \"$@\"" + redirect + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// TestHelperDescriptors starts the helper the way the packet process does,
// with descriptors open that lack close-on-exec (as songgao/water opens
// the tunnel device), and checks that each hook run inherits only stdin,
// stdout and stderr: not the tunnel, not a socket of the packet process,
// not the helper's own socket.
func TestHelperDescriptors(t *testing.T) {
	leaky, err := unix.Open("/dev/null", unix.O_RDONLY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(leaky) })
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0) // no SOCK_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(udp) })

	dir := t.TempDir()
	record := filepath.Join(dir, "fds")
	self := childScript(t, dir, "helper.sh", "helper", "")
	hook := childScript(t, dir, "hook.sh", "fds", record)
	h, err := startHelper(self, HelperConfig{Interface: "teredo", Hook: hook, User: "nobody"}, "debug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(5 * time.Second) })
	if st, err := h.Up(netip.MustParseAddr("2001:0:c000:20a:3a4f:63bf:3c9b:fffd"), 1280); st != 0 || err != nil {
		t.Fatalf("up: hook status %d, %v", st, err)
	}
	if err := h.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 { // up, then down and destroy when the socket closes
		t.Fatalf("%d hook runs, want 3:\n%s", len(lines), b)
	}
	for i, l := range lines {
		if l != "0 1 2" {
			t.Errorf("hook run %d inherited descriptors %q, want only 0 1 2 (fd 3: the helper's socket; %d, %d: the packet process's)", i, l, leaky, udp)
		}
	}
}

// TestHelperWithoutSocket starts the helper by hand, without its socket on
// fd 3: it must say so and stop before it runs any hook.
func TestHelperWithoutSocket(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "runs")
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$STATE\" >> '"+record+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperChild$")
	cmd.Env = append(os.Environ(), childEnv+"=nofd3", "HOOK="+hook)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("helper without its socket: exit %d (%v), want 3:\n%s", code, err, out)
	}
	if !strings.Contains(string(out), "fd 3") || !strings.Contains(string(out), "started by miredo-client") {
		t.Errorf("unclear error: %s", out)
	}
	if b, err := os.ReadFile(record); err == nil {
		t.Errorf("the hook ran: %q", b)
	}
}

// TestCheckHelperSocket: only an AF_UNIX SOCK_SEQPACKET socket passes.
func TestCheckHelperSocket(t *testing.T) {
	pair := func(typ int) func() (int, error) {
		return func() (int, error) {
			fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return -1, err
			}
			unix.Close(fds[1])
			return fds[0], nil
		}
	}
	cases := []struct {
		name string
		open func() (int, error)
		ok   bool
	}{
		{"seqpacket pair", pair(unix.SOCK_SEQPACKET), true},
		{"stream pair", pair(unix.SOCK_STREAM), false},
		{"datagram pair", pair(unix.SOCK_DGRAM), false},
		{"UDP socket", func() (int, error) { return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0) }, false},
		{"regular file", func() (int, error) { return unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0) }, false},
		{"pipe", func() (int, error) {
			var p [2]int
			err := unix.Pipe2(p[:], unix.O_CLOEXEC)
			unix.Close(p[1])
			return p[0], err
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := tc.open()
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := checkHelperSocket(fd); (err == nil) != tc.ok {
				t.Errorf("checkHelperSocket: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	// A closed descriptor: what a helper started by hand finds.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := openHelperSocket(fd); err == nil {
		t.Error("openHelperSocket accepted a closed descriptor")
	}
}

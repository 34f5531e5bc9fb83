// SPDX-License-Identifier: MIT

//go:build e2e

package dropprivs

// End-to-end tests: the test binary re-executes itself as a child (selected
// by an environment variable) that calls Drop and reports what the kernel
// then says about every one of its threads in /proc. Dropping is one-way, so
// it never happens in the test process itself. Needs root.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const childEnv = "DROPPRIVS_E2E_CHILD"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg))
	}
	os.Exit(m.Run())
}

// childReport is what the child prints as JSON on stdout.
type childReport struct {
	Err       string
	ErrKind   string // "cgo", "root", "missing" or "" for another error
	Result    Result
	Statuses  []string // /proc/PID/task/TID/status of every thread
	Cwd       string
	Marker    bool // /marker exists (it does only inside the test chroot)
	EtcPasswd bool
}

func runChild(cfgJSON string) int {
	var cfg Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	// Extra threads pinned to goroutines, so that a change made to one
	// thread only would show in /proc.
	var started sync.WaitGroup
	for range 3 {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			started.Done()
			select {}
		}()
	}
	started.Wait()
	proc, err := os.OpenRoot("/proc") // before a chroot hides it
	if err != nil {
		fmt.Fprintln(os.Stderr, "open /proc:", err)
		return 2
	}

	var rep childReport
	rep.Result, err = Drop(cfg)
	if err != nil {
		rep.Err = err.Error()
		switch {
		case errors.Is(err, ErrCgo):
			rep.ErrKind = "cgo"
		case errors.Is(err, ErrRoot):
			rep.ErrKind = "root"
		case errors.Is(err, ErrMissingCaps):
			rep.ErrKind = "missing"
		}
	}
	taskDir := fmt.Sprintf("%d/task", os.Getpid())
	dir, err := proc.Open(taskDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open task dir:", err)
		return 2
	}
	tids, err := dir.Readdirnames(-1)
	if err != nil {
		fmt.Fprintln(os.Stderr, "list threads:", err)
		return 2
	}
	for _, tid := range tids {
		b, err := proc.ReadFile(taskDir + "/" + tid + "/status")
		if err != nil {
			fmt.Fprintln(os.Stderr, "read status:", err)
			return 2
		}
		rep.Statuses = append(rep.Statuses, string(b))
	}
	rep.Cwd, _ = os.Getwd()
	_, err = os.Stat("/marker")
	rep.Marker = err == nil
	_, err = os.Stat("/etc/passwd")
	rep.EtcPasswd = err == nil
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 2
	}
	return 0
}

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users and change capabilities: run 'sudo go test -tags e2e ./pkg/dropprivs/' (or make check)")
	}
}

// childBinary copies the test binary where the unprivileged user can run
// it: go test builds it in a directory only root can enter.
func childBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "dropprivs-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "child.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

func startChild(t *testing.T, bin string, cfg Config, attr *syscall.SysProcAttr) childReport {
	t.Helper()
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$")
	cmd.Env = []string{childEnv + "=" + string(cfgJSON), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\nstderr: %s", err, stderr.String())
	}
	var rep childReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("child report %q: %v", out, err)
	}
	if rep.ErrKind == "cgo" {
		t.Skipf("test binary built with cgo (%s): run with CGO_ENABLED=0, as make check does", rep.Err)
	}
	if len(rep.Statuses) < 4 {
		t.Errorf("child reported %d threads, want at least 4", len(rep.Statuses))
	}
	return rep
}

// want is the credential state every thread of the child must be in.
type want struct {
	uid, gid   int
	groups     []int
	caps       CapSet // permitted and effective
	bounding   CapSet
	noNewPrivs bool
}

func checkThreads(t *testing.T, rep childReport, w want) {
	t.Helper()
	for i, text := range rep.Statuses {
		st, err := parseProcStatus(text)
		if err != nil {
			t.Fatalf("thread %d status: %v\n%s", i, err, text)
		}
		same := func(v int) [4]int { return [4]int{v, v, v, v} }
		gotGroups := slices.Sorted(slices.Values(st.Groups))
		wantGroups := slices.Sorted(slices.Values(w.groups))
		if st.UID != same(w.uid) || st.GID != same(w.gid) || !slices.Equal(gotGroups, wantGroups) ||
			st.CapInh != 0 || st.CapPrm != w.caps || st.CapEff != w.caps || st.CapAmb != 0 ||
			st.CapBnd != w.bounding || st.NoNewPrivs != w.noNewPrivs {
			t.Errorf("thread %d: Uid %v Gid %v Groups %v CapInh %s CapPrm %s CapEff %s CapBnd %s CapAmb %s NoNewPrivs %v\n"+
				"want uid %d gid %d groups %v caps %s bounding %s no_new_privs %v",
				i, st.UID, st.GID, st.Groups, st.CapInh, st.CapPrm, st.CapEff, st.CapBnd, st.CapAmb, st.NoNewPrivs,
				w.uid, w.gid, w.groups, w.caps, w.bounding, w.noNewPrivs)
		}
	}
}

func nobody(t *testing.T) (uid, gid int, groups []int) {
	t.Helper()
	u, err := user.Lookup(DefaultUser)
	if err != nil {
		t.Skipf("no %s user here: %v", DefaultUser, err)
	}
	uid, gid, groups, err = ids(u)
	if err != nil {
		t.Fatal(err)
	}
	return uid, gid, groups
}

func ownStatus(t *testing.T) procStatus {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseProcStatus(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestE2EDropFromRoot(t *testing.T) {
	skipUnlessRoot(t)
	uid, gid, groups := nobody(t)
	bin := childBinary(t)
	chroot := t.TempDir()
	if err := os.Chmod(chroot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chroot, "marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		cfg  Config
	}{
		{"server keeps CAP_NET_RAW", Config{Keep: NewCapSet(CapNetRaw)}},
		{"helper keeps CAP_NET_ADMIN", Config{User: "nobody", Keep: NewCapSet(CapNetAdmin)}},
		{"data path keeps nothing", Config{User: "nobody"}},
		{"chroot", Config{User: fmt.Sprint(uid), Chroot: chroot, Keep: NewCapSet(CapNetRaw)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := startChild(t, bin, tt.cfg, nil)
			if rep.Err != "" {
				t.Fatalf("Drop: %s", rep.Err)
			}
			checkThreads(t, rep, want{uid: uid, gid: gid, groups: groups, caps: tt.cfg.Keep, bounding: tt.cfg.Keep, noNewPrivs: true})
			r := rep.Result
			if r.AlreadyUnprivileged || r.User != DefaultUser || r.UID != uid || r.GID != gid ||
				!slices.Equal(r.Groups, groups) || r.Caps != tt.cfg.Keep || !r.BoundingTrimmed ||
				r.Chroot != tt.cfg.Chroot || len(r.Skipped) != 0 {
				t.Errorf("Result = %+v", r)
			}
			inChroot := tt.cfg.Chroot != ""
			if rep.Marker != inChroot || rep.EtcPasswd == inChroot {
				t.Errorf("chroot %v: /marker seen %v, /etc/passwd seen %v", inChroot, rep.Marker, rep.EtcPasswd)
			}
			if inChroot && rep.Cwd != "/" {
				t.Errorf("cwd in chroot = %q, want /", rep.Cwd)
			}
		})
	}
}

// Started as root but told to become root: Drop refuses before changing
// anything.
func TestE2ERefuseRoot(t *testing.T) {
	skipUnlessRoot(t)
	rep := startChild(t, childBinary(t), Config{User: "root"}, nil)
	if rep.ErrKind != "root" {
		t.Fatalf("Drop(User: root) error %q, want ErrRoot", rep.Err)
	}
	own := ownStatus(t)
	checkThreads(t, rep, want{uid: 0, gid: 0, groups: own.Groups, caps: own.CapEff, bounding: own.CapBnd, noNewPrivs: own.NoNewPrivs})
}

// Started the way systemd's User= and AmbientCapabilities= start a daemon:
// Drop only trims capabilities.
func TestE2EAlreadyUnprivileged(t *testing.T) {
	skipUnlessRoot(t)
	uid, gid, _ := nobody(t)
	bin := childBinary(t)
	attr := func() *syscall.SysProcAttr {
		return &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}},
			AmbientCaps: []uintptr{uintptr(CapNetRaw), uintptr(CapNetAdmin)},
		}
	}
	bounding := ownStatus(t).CapBnd

	rep := startChild(t, bin, Config{User: "miredo", Chroot: t.TempDir(), Keep: NewCapSet(CapNetAdmin)}, attr())
	if rep.Err != "" {
		t.Fatalf("Drop: %s", rep.Err)
	}
	checkThreads(t, rep, want{uid: uid, gid: gid, groups: []int{gid}, caps: NewCapSet(CapNetAdmin), bounding: bounding, noNewPrivs: true})
	r := rep.Result
	if !r.AlreadyUnprivileged || r.UID != uid || r.Caps != NewCapSet(CapNetAdmin) || r.BoundingTrimmed || r.Chroot != "" {
		t.Errorf("Result = %+v", r)
	}
	skipped := strings.Join(r.Skipped, "; ")
	for _, s := range []string{"chroot", "user switch", "bounding set"} {
		if !strings.Contains(skipped, s) {
			t.Errorf("Skipped %q lacks %q", skipped, s)
		}
	}
	if rep.Marker {
		t.Error("chroot happened although unprivileged")
	}

	// Asking for a capability the process does not have is an error.
	rep = startChild(t, bin, Config{Keep: NewCapSet(CapNetAdmin, CapSysChroot)}, attr())
	if rep.ErrKind != "missing" || !strings.Contains(rep.Err, "CAP_SYS_CHROOT") {
		t.Errorf("keeping CAP_SYS_CHROOT: error %q, want ErrMissingCaps naming it", rep.Err)
	}
}

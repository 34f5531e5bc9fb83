// SPDX-License-Identifier: MIT

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// netnsDir is where ip-netns(8) keeps its named namespaces.
const netnsDir = "/run/netns"

// inNetns runs fn on an OS thread switched into the namespace at path.
// A network namespace belongs to a thread, not to a process, so fn must do its
// namespace-sensitive work (creating sockets, opening /proc/sys/net files,
// forking) on its own goroutine. Sockets keep the namespace they were created
// in, so they may be used from any goroutine afterwards. The thread is
// switched back before it is given back to the scheduler; if that fails the
// goroutine exits locked and the runtime retires the thread, so no other
// goroutine ever runs in the lab namespace by accident.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// writeSysctls writes net sysctls (keys like "net/ipv4/ip_forward") in the
// namespace at path.
func writeSysctls(path string, kv map[string]string) error {
	return inNetns(path, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
			}
		}
		return nil
	})
}

// run runs argv with stdin, returning its combined output; a failure carries
// the output, which is where ip and nft explain themselves.
func run(ctx context.Context, stdin string, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// netnsPids lists the processes living in the named namespace.
func netnsPids(ctx context.Context, name string) ([]int, error) {
	out, err := run(ctx, "", "ip", "netns", "pids", name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// deleteNetns kills whatever still runs in the named namespace (each process
// by its id; they can only be leftovers of a lab) and deletes it.
func deleteNetns(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	pids, _ := netnsPids(ctx, name)
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue // a thread of ours still in the namespace, never a leftover
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := run(ctx, "", "ip", "netns", "delete", name); err != nil {
		return err
	}
	return nil
}

// labNetns lists the namespaces whose names start with prefix + "-".
func labNetns(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// SPDX-License-Identifier: MIT

package dropprivs

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capState is one thread's three capability sets.
type capState struct {
	effective, permitted, inheritable CapSet
}

// capGet reads the calling thread's capabilities. After Drop every thread
// has the same ones, so any thread will do.
func capGet() (capState, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capState{}, fmt.Errorf("dropprivs: capget: %w", err)
	}
	return capState{
		effective:   capSetFromWords(data[0].Effective, data[1].Effective),
		permitted:   capSetFromWords(data[0].Permitted, data[1].Permitted),
		inheritable: capSetFromWords(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

// capSetAllThreads sets the capabilities of every thread of the process.
func capSetAllThreads(s capState) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[1].Effective = s.effective.words()
	data[0].Permitted, data[1].Permitted = s.permitted.words()
	data[0].Inheritable, data[1].Inheritable = s.inheritable.words()
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET,
		uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return fmt.Errorf("dropprivs: capset effective=%s permitted=%s: %w", s.effective, s.permitted, allThreadsError(errno))
	}
	return nil
}

// prctlAllThreads runs prctl(option, arg, 0, 0, 0) on every thread.
func prctlAllThreads(option int, arg uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, uintptr(option), arg, 0, 0, 0, 0)
	if errno != 0 {
		return allThreadsError(errno)
	}
	return nil
}

// probeAllThreads fails with ErrCgo, before any change, where
// AllThreadsSyscall is unavailable. getpid gives the same answer on every
// thread, as AllThreadsSyscall requires.
func probeAllThreads() error {
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_GETPID, 0, 0, 0); errno != 0 {
		return fmt.Errorf("dropprivs: %w", allThreadsError(errno))
	}
	return nil
}

func allThreadsError(errno syscall.Errno) error {
	if errno == syscall.ENOTSUP {
		return fmt.Errorf("%w: %w", ErrCgo, errno)
	}
	return errno
}

// lastCap is the highest capability the running kernel knows; the bounding
// set can only be read up to it (/proc/sys/kernel/cap_last_cap says the
// same, but /proc may be missing in a chroot).
func lastCap() (Cap, error) {
	for c := Cap(0); c <= maxCap; c++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) && c > 0 {
				return c - 1, nil
			}
			return 0, fmt.Errorf("dropprivs: read bounding set: %w", err)
		}
	}
	return maxCap, nil
}

// trimBounding removes every capability but keep from the bounding set of
// every thread, so that not even a setuid-root program can get them back.
// It needs CAP_SETPCAP.
func trimBounding(keep CapSet, last Cap) error {
	for c := Cap(0); c <= last; c++ {
		if keep.Has(c) {
			continue
		}
		if err := prctlAllThreads(unix.PR_CAPBSET_DROP, uintptr(c)); err != nil {
			return fmt.Errorf("dropprivs: drop %s from the bounding set: %w", c, err)
		}
	}
	return nil
}

// clearAmbient empties the ambient set of every thread. Kernels before 4.3
// have no ambient set (EINVAL), which is as good as empty.
func clearAmbient() error {
	_, _, errno := syscall.AllThreadsSyscall6(unix.SYS_PRCTL,
		unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0)
	if errno != 0 && errno != syscall.EINVAL {
		return fmt.Errorf("dropprivs: clear ambient capabilities: %w", allThreadsError(errno))
	}
	return nil
}

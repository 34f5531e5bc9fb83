// SPDX-License-Identifier: MIT

// Package proccpu reads CPU time from /proc: of a process and all its
// descendants (a daemon that forks a worker, as Miredo does, is charged for
// the worker too), of this process, and of the whole machine.
//
// Times come from the kernel's tick accounting (utime+stime in clock ticks,
// all threads of a process): precise to a tick per thread, so measure over
// seconds, not milliseconds. Softirq work the kernel does in a process's
// system calls (delivering the datagrams it sends, on a veth path) counts
// as that process's system time.
package proccpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc's times. It is 100 on every Linux
// architecture Go supports (the kernel fixes it for user space whatever its
// own HZ), so we need not ask sysconf through cgo.
const clockTick = time.Second / 100

// Times is CPU time split as the kernel accounts it: User in user space,
// System in the kernel on the process's behalf (system calls, and the
// softirq work that runs inside them).
type Times struct {
	User, System time.Duration
}

// Total is User + System.
func (t Times) Total() time.Duration { return t.User + t.System }

// Add returns t + o.
func (t Times) Add(o Times) Times { return Times{t.User + o.User, t.System + o.System} }

// Sub returns t - o.
func (t Times) Sub(o Times) Times { return Times{t.User - o.User, t.System - o.System} }

// Stat is what this package reads from /proc/PID/stat.
type Stat struct {
	PID, PPID int
	Comm      string
	// CPU is utime and stime of every thread of the process, alive or
	// exited.
	CPU Times
}

// ParseStat reads one /proc/PID/stat line. The command name sits in
// parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func ParseStat(line string) (Stat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("proccpu: stat %q: no command name", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return Stat{}, fmt.Errorf("proccpu: stat %q: pid: %w", line, err)
	}
	// After the name: state(3) ppid(4) ... utime(14) stime(15), 1-based.
	f := strings.Fields(line[end+1:])
	if len(f) < 13 {
		return Stat{}, fmt.Errorf("proccpu: stat %q: %d fields after the name, want at least 13", line, len(f))
	}
	st := Stat{PID: pid, Comm: line[open+1 : end]}
	nums := [3]uint64{}
	for i, idx := range []int{1, 11, 12} {
		if nums[i], err = strconv.ParseUint(f[idx], 10, 64); err != nil {
			return Stat{}, fmt.Errorf("proccpu: stat of %d: field %d: %w", pid, idx+3, err)
		}
	}
	st.PPID = int(nums[0])
	st.CPU = Times{User: time.Duration(nums[1]) * clockTick, System: time.Duration(nums[2]) * clockTick}
	return st, nil
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, fmt.Errorf("proccpu: %w", err)
	}
	return ParseStat(string(b))
}

// Self is the CPU time this process has used, all threads.
func Self() (Times, error) {
	st, err := ReadStat(os.Getpid())
	return st.CPU, err
}

// Tree is a snapshot of a process and its live descendants: CPU time per
// process id.
type Tree map[int]Stat

// ReadTree snapshots root and every live descendant. Processes that come or
// go while /proc is read are skipped; root itself must exist.
func ReadTree(root int) (Tree, error) {
	rootStat, err := ReadStat(root)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("proccpu: %w", err)
	}
	children := map[int][]Stat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil {
			continue // gone meanwhile
		}
		children[st.PPID] = append(children[st.PPID], st)
	}
	return treeFrom(rootStat, children), nil
}

// treeFrom collects root and its descendants from a parent → children index.
// The walk visits each process id once, so it ends even on a corrupt index.
func treeFrom(root Stat, children map[int][]Stat) Tree {
	t := Tree{root.PID: root}
	queue := []int{root.PID}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if _, seen := t[c.PID]; !seen {
				t[c.PID] = c
				queue = append(queue, c.PID)
			}
		}
	}
	return t
}

// Since is the CPU time the tree used after an earlier snapshot: a process
// in both counts its difference, one new since then counts whole. (A child
// that exited between the snapshots is lost; daemons keep their workers.)
func (t Tree) Since(before Tree) Times {
	var d Times
	for pid, st := range t {
		if b, ok := before[pid]; ok && b.CPU.User <= st.CPU.User && b.CPU.System <= st.CPU.System {
			d = d.Add(st.CPU.Sub(b.CPU))
		} else {
			d = d.Add(st.CPU) // new, or the pid was reused
		}
	}
	return d
}

// Machine is the machine's CPU time from the first line of /proc/stat:
// Busy is everything but idle, iowait and steal (time the hypervisor gave
// to another guest), Total includes them. Total over wall time is the
// number of CPUs.
type Machine struct {
	Busy, Total time.Duration
}

// ReadMachine reads /proc/stat.
func ReadMachine() (Machine, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Machine{}, fmt.Errorf("proccpu: %w", err)
	}
	return parseMachine(string(b))
}

func parseMachine(s string) (Machine, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return Machine{}, errors.New("proccpu: /proc/stat: no aggregate cpu line")
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already inside user and nice.
	var m Machine
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return Machine{}, fmt.Errorf("proccpu: /proc/stat: %w", err)
		}
		d := time.Duration(n) * clockTick
		m.Total += d
		if i != 3 && i != 4 && i != 7 { // idle, iowait, steal
			m.Busy += d
		}
	}
	return m, nil
}

// Sub returns m - o.
func (m Machine) Sub(o Machine) Machine {
	return Machine{Busy: m.Busy - o.Busy, Total: m.Total - o.Total}
}

// SPDX-License-Identifier: MIT

package proccpu

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tail := " S 1 100 100 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 1000 10000000 500 18446744073709551615"
	tests := []struct {
		name string
		line string
		want Stat
		bad  bool
	}{
		{"plain", "42 (miredo-server)" + tail, Stat{PID: 42, PPID: 1, Comm: "miredo-server", CPU: Times{2500 * time.Millisecond, 500 * time.Millisecond}}, false},
		{"name with spaces and parens", "7 (a) b (c)" + tail, Stat{PID: 7, PPID: 1, Comm: "a) b (c", CPU: Times{2500 * time.Millisecond, 500 * time.Millisecond}}, false},
		{"empty name", "8 ()" + tail, Stat{PID: 8, PPID: 1, CPU: Times{2500 * time.Millisecond, 500 * time.Millisecond}}, false},
		{"no name", "9 miredo" + tail, Stat{}, true},
		{"bad pid", "x (m)" + tail, Stat{}, true},
		{"short", "10 (m) S 1 2 3", Stat{}, true},
		{"bad utime", "11 (m) S 1 100 100 0 -1 4194560 500 0 0 0 x 50 0", Stat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat(tt.line)
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want error %v", err, tt.bad)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTreeFromAndSince(t *testing.T) {
	st := func(pid, ppid int, cpu time.Duration) Stat {
		return Stat{PID: pid, PPID: ppid, CPU: Times{cpu, cpu / 2}}
	}
	children := map[int][]Stat{
		10: {st(11, 10, time.Second), st(12, 10, 0)},
		11: {st(13, 11, 2*time.Second)},
		1:  {st(10, 1, 0), st(20, 1, 9*time.Second)}, // 20 is not ours
		13: {st(11, 13, 0)},                          // a cycle must not loop
	}
	tree := treeFrom(st(10, 1, 500*time.Millisecond), children)
	if len(tree) != 4 || tree[20].PID != 0 {
		t.Fatalf("tree %v: want 10, 11, 12, 13", tree)
	}
	later := Tree{10: st(10, 1, time.Second), 11: st(11, 10, 3*time.Second), 13: st(13, 11, 2*time.Second),
		14: st(14, 10, 250*time.Millisecond)} // 12 exited, 14 is new
	if got, want := later.Since(tree).User, 500*time.Millisecond+2*time.Second+250*time.Millisecond; got != want {
		t.Errorf("Since = %v, want %v", got, want)
	}
}

// TestReadTree finds a child process of this test under its own pid.
func TestReadTree(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep(1): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	tree, err := ReadTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := tree[cmd.Process.Pid]; !ok || c.PPID != os.Getpid() {
		t.Errorf("child %d not in tree %v", cmd.Process.Pid, tree)
	}
	// Burn a little CPU so Self has something to show.
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	if cpu, err := Self(); err != nil || cpu.Total() <= 0 {
		t.Errorf("Self = %v, %v", cpu, err)
	}
	if _, err := ReadTree(1 << 30); err == nil {
		t.Error("ReadTree of a missing pid succeeded")
	}
}

func TestParseMachine(t *testing.T) {
	m, err := parseMachine("cpu  100 10 50 800 20 5 15 7 3 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Machine{Busy: 180 * clockTick, Total: 1007 * clockTick}); m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 x 4 5 6"} {
		if _, err := parseMachine(bad); err == nil {
			t.Errorf("parseMachine(%q) succeeded", bad)
		}
	}
	if _, err := ReadMachine(); err != nil {
		t.Error(err)
	}
}

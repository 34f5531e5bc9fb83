// SPDX-License-Identifier: MIT

package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Our daemons, built once per test binary for e2e tests.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// Binary returns the path of one of our daemons ("miredo-server",
// "miredo-relay", "miredo-client"), built statically as `make build` does,
// once per test binary for all three. Call RemoveBinaries from TestMain.
func Binary(t testing.TB, name string) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "miredo-e2e-bin")
		if built.err != nil {
			return
		}
		for _, b := range []string{"miredo-server", "miredo-relay", "miredo-client"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(built.dir, b), "github.com/miredo-go/miredo/cmd/"+b)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return filepath.Join(built.dir, name)
}

// RemoveBinaries removes what Binary built.
func RemoveBinaries() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

var counterRE = regexp.MustCompile(`([\w.]+)=(\d+)\b`)

// Statistics asks one of our daemons for its counters (SIGUSR1) and returns
// every numeric key of the newest "statistics" record in its log, such as
// "stats.received" or "engine.delivered". Counters at zero may be absent.
func (p *Process) Statistics(ctx context.Context) (map[string]uint64, error) {
	before := strings.Count(p.Tail(5000), "msg=statistics")
	if err := syscall.Kill(p.Pid(), syscall.SIGUSR1); err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	for {
		log := p.Tail(5000)
		if strings.Count(log, "msg=statistics") > before {
			lines := strings.Split(log, "\n")
			for i := len(lines) - 1; i >= 0; i-- {
				if strings.Contains(lines[i], "msg=statistics") {
					m := map[string]uint64{}
					for _, kv := range counterRE.FindAllStringSubmatch(lines[i], -1) {
						n, _ := strconv.ParseUint(kv[2], 10, 64)
						m[kv[1]] = n
					}
					return m, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: no statistics in the log: %w", p.Name, ctx.Err())
		case <-p.Done():
			return nil, fmt.Errorf("%s exited: %v", p.Name, p.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SNMP6 reads one IPv6 counter of host h from /proc/net/snmp6, such as
// "Icmp6InEchos": tests use it to see whether a packet reached a host.
func (h *Host) SNMP6(ctx context.Context, name string) (uint64, error) {
	out, err := h.Run(ctx, "cat", "/proc/net/snmp6")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s in /proc/net/snmp6", h.Name, name)
}

// SNMP reads one IPv4 counter of host h from /proc/net/snmp, named by its
// section and field, such as ("Ip", "FragCreates"): tests use it to see
// that a router really fragmented what crossed it.
func (h *Host) SNMP(ctx context.Context, section, name string) (uint64, error) {
	out, err := h.Run(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var header []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != section+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i := 1; i < len(f) && i < len(header); i++ {
			if header[i] == name {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s %s in /proc/net/snmp", h.Name, section, name)
}

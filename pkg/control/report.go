// SPDX-License-Identifier: MIT

package control

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miredo-go/miredo/pkg/buildinfo"
)

// Common is what every daemon's status starts with.
type Common struct {
	Role          string  `json:"role"`
	Version       string  `json:"version"`
	PID           int     `json:"pid"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Goroutines, OpenFDs and RSSBytes are the process's footprint now:
	// what an operator (and the soak test) watches for leaks.
	Goroutines int    `json:"goroutines"`
	OpenFDs    int    `json:"open_fds"`
	RSSBytes   uint64 `json:"rss_bytes"`
}

// NewCommon fills Common for a daemon of role started at start.
func NewCommon(role string, start time.Time) Common {
	return Common{Role: role, Version: buildinfo.Version, PID: os.Getpid(),
		UptimeSeconds: time.Since(start).Round(time.Millisecond).Seconds(),
		Goroutines:    runtime.NumGoroutine(), OpenFDs: openFDs(), RSSBytes: rssBytes()}
}

// openFDs counts this process's open descriptors (-1 if /proc is missing).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory being read is one of them
}

// rssBytes is this process's resident set from /proc/self/statm (its
// second field, in pages); 0 if /proc is missing.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// WriteCommon prints the header lines of a readable summary.
func (c Common) WriteCommon(w io.Writer) {
	fmt.Fprintf(w, "%-14s %s %s, pid %d, up %v\n", "daemon:", c.Role, c.Version, c.PID,
		time.Duration(c.UptimeSeconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(w, "%-14s %.1f MiB resident, %d goroutines, %d open files\n", "process:",
		float64(c.RSSBytes)/(1<<20), c.Goroutines, c.OpenFDs)
}

// WriteCounters prints the non-zero counters of m (as Counters built it),
// one group per line: "engine: delivered=12 dropped_malformed=1".
func WriteCounters(w io.Writer, m map[string]any) {
	var lines []string
	flat := map[string][]string{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				walk(strings.TrimPrefix(prefix+"."+k, "."), v)
			case float64: // as JSON decodes numbers; never in e-notation
				if v != 0 {
					flat[prefix] = append(flat[prefix], k+"="+strconv.FormatFloat(v, 'f', -1, 64))
				}
			case uint64:
				if v != 0 {
					flat[prefix] = append(flat[prefix], fmt.Sprintf("%s=%d", k, v))
				}
			}
		}
	}
	walk("", m)
	for g, kv := range flat {
		sort.Strings(kv)
		name := g
		if name == "" {
			name = "counters"
		}
		lines = append(lines, fmt.Sprintf("%-14s %s", name+":", strings.Join(kv, " ")))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// Peer is one peer table entry as status reports it.
type Peer struct {
	Address netip.Addr     `json:"address"`
	Mapping netip.AddrPort `json:"mapping"`
	Trusted bool           `json:"trusted"`
	Native  bool           `json:"native,omitempty"`
	// LastSeen is how long ago the peer's last packet was accepted; nil
	// when none ever was.
	LastSeen    *float64 `json:"last_seen_seconds,omitempty"`
	QueuedBytes int      `json:"queued_bytes,omitempty"`
}

// WritePeers prints the peer count and, when they were listed, one line
// per peer.
func WritePeers(w io.Writer, n uint64, peers []Peer, truncated bool) {
	fmt.Fprintf(w, "%-14s %d\n", "peers:", n)
	for _, p := range peers {
		seen := "never heard"
		if p.LastSeen != nil {
			seen = fmt.Sprintf("seen %.0fs ago", *p.LastSeen)
		}
		trust := "untrusted"
		if p.Trusted {
			trust = "trusted"
		}
		fmt.Fprintf(w, "  %-40v %-21v %-9s %s, %d bytes queued\n", p.Address, p.Mapping, trust, seen, p.QueuedBytes)
	}
	if truncated {
		fmt.Fprintf(w, "  (more peers not listed)\n")
	}
}

// SPDX-License-Identifier: MIT

// Package wirecheck hands packets to Wireshark's dissectors (tshark), an
// implementation we did not write, and returns the fields it decodes, so
// tests can check that what we put on the wire means what we meant.
package wirecheck

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/miredo-go/miredo/internal/pcapfile"
)

// ErrNoTshark is returned when tshark is not installed.
var ErrNoTshark = errors.New("tshark not installed (apt-get install tshark, or run scripts/install-deps.sh)")

// Datagram is one UDP/IPv4 datagram to decode.
type Datagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// Decode writes the datagrams to a capture in dir, runs tshark over it with
// every port in teredoPorts decoded as Teredo, and returns, per datagram, the
// value of each field (several occurrences joined by commas). It always asks
// for _ws.malformed and _ws.expert.severity too; see Problems.
func Decode(dir string, ds []Datagram, teredoPorts []uint16, fields []string) ([]map[string]string, error) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		return nil, ErrNoTshark
	}
	var buf bytes.Buffer
	w, err := pcapfile.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if err := w.WritePacket(pcapfile.AppendUDP4(nil, d.Src, d.Dst, d.Payload)); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(dir, "wirecheck.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	names := append([]string{"_ws.malformed", "_ws.expert.severity"}, fields...)
	sort.Strings(names[2:])
	args := []string{"-r", path, "-n", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, p := range teredoPorts {
		args = append(args, "-d", fmt.Sprintf("udp.port==%d,teredo", p))
	}
	for _, n := range names {
		args = append(args, "-e", n)
	}
	cmd := exec.Command(tshark, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir) // no user preferences
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tshark: %w: %s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(ds) {
		return nil, fmt.Errorf("tshark printed %d lines for %d datagrams:\n%s", len(lines), len(ds), out)
	}
	res := make([]map[string]string, len(ds))
	for i, line := range lines {
		vals := strings.Split(line, "\t")
		res[i] = map[string]string{}
		for j, n := range names {
			if j < len(vals) {
				res[i][n] = vals[j]
			}
		}
	}
	return res, nil
}

// Problems describes what tshark found wrong with a decoded datagram: a
// malformed packet, or an expert finding of warning severity or worse
// (severities: 0x00200000 chat, 0x00400000 note, 0x00600000 warn,
// 0x00800000 error). It returns "" when there is nothing.
func Problems(fields map[string]string) string {
	var p []string
	if m := fields["_ws.malformed"]; m != "" {
		p = append(p, "malformed "+m)
	}
	for _, v := range strings.Split(fields["_ws.expert.severity"], ",") {
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 0, 32); err == nil && n >= 0x00600000 {
			p = append(p, "expert severity "+v)
		}
	}
	return strings.Join(p, "; ")
}

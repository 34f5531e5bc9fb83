// SPDX-License-Identifier: MIT

package dropprivs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// procStatus holds the credential lines of /proc/PID/status, which the e2e
// tests read to see what the kernel says rather than what Drop reports.
type procStatus struct {
	UID, GID                               [4]int // real, effective, saved, filesystem
	Groups                                 []int
	CapInh, CapPrm, CapEff, CapBnd, CapAmb CapSet
	NoNewPrivs                             bool
}

func (st *procStatus) capField(key string) *CapSet {
	switch key {
	case "CapInh":
		return &st.CapInh
	case "CapPrm":
		return &st.CapPrm
	case "CapEff":
		return &st.CapEff
	case "CapBnd":
		return &st.CapBnd
	}
	return &st.CapAmb
}

func parseProcStatus(text string) (procStatus, error) {
	var st procStatus
	seen := map[string]bool{}
	for line := range strings.Lines(text) {
		key, val, ok := strings.Cut(strings.TrimRight(line, "\n"), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		var err error
		switch key {
		case "Uid", "Gid":
			if len(fields) != 4 {
				return st, fmt.Errorf("%s: want 4 fields, got %q", key, val)
			}
			dst := &st.UID
			if key == "Gid" {
				dst = &st.GID
			}
			for i, f := range fields {
				if dst[i], err = strconv.Atoi(f); err != nil {
					return st, fmt.Errorf("%s: %w", key, err)
				}
			}
		case "Groups":
			st.Groups = []int{}
			for _, f := range fields {
				g, err := strconv.Atoi(f)
				if err != nil {
					return st, fmt.Errorf("Groups: %w", err)
				}
				st.Groups = append(st.Groups, g)
			}
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			if len(fields) != 1 {
				return st, fmt.Errorf("%s: %q", key, val)
			}
			v, err := strconv.ParseUint(fields[0], 16, 64)
			if err != nil {
				return st, fmt.Errorf("%s: %w", key, err)
			}
			*st.capField(key) = CapSet(v)
		case "NoNewPrivs":
			st.NoNewPrivs = len(fields) == 1 && fields[0] == "1"
		default:
			continue
		}
		seen[key] = true
	}
	for _, k := range []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"} {
		if !seen[k] {
			return st, fmt.Errorf("no %s line", k)
		}
	}
	return st, nil
}

// A trimmed /proc/self/status of a process that dropped to nobody keeping
// CAP_NET_RAW (Linux 6.18).
const sampleStatus = `Name:	dropprivs.test
Umask:	0022
State:	R (running)
Tgid:	4242
Pid:	4242
Uid:	65534	65534	65534	65534
Gid:	65534	65534	65534	65534
FDSize:	64
Groups:	65534 
NStgid:	4242
CapInh:	0000000000000000
CapPrm:	0000000000002000
CapEff:	0000000000002000
CapBnd:	0000000000002000
CapAmb:	0000000000000000
NoNewPrivs:	1
Seccomp:	0
`

func TestParseProcStatus(t *testing.T) {
	st, err := parseProcStatus(sampleStatus)
	if err != nil {
		t.Fatal(err)
	}
	raw := NewCapSet(CapNetRaw)
	want := procStatus{
		UID: [4]int{65534, 65534, 65534, 65534}, GID: [4]int{65534, 65534, 65534, 65534},
		Groups: []int{65534},
		CapPrm: raw, CapEff: raw, CapBnd: raw, NoNewPrivs: true,
	}
	if st.UID != want.UID || st.GID != want.GID || !slices.Equal(st.Groups, want.Groups) ||
		st.CapInh != 0 || st.CapPrm != raw || st.CapEff != raw || st.CapBnd != raw || st.CapAmb != 0 || !st.NoNewPrivs {
		t.Errorf("got %+v\nwant %+v", st, want)
	}

	root := strings.NewReplacer("Groups:\t65534 ", "Groups:\t", "65534", "0", "0000000000002000", "000001ffffffffff", "NoNewPrivs:\t1", "NoNewPrivs:\t0").Replace(sampleStatus)
	st, err = parseProcStatus(root)
	if err != nil {
		t.Fatal(err)
	}
	if st.UID != [4]int{} || len(st.Groups) != 0 || st.CapEff != allCaps(40) || st.NoNewPrivs {
		t.Errorf("root status: %+v", st)
	}

	bad := []string{
		strings.Replace(sampleStatus, "Uid:\t65534\t65534\t65534\t65534", "Uid:\t1 2", 1),
		strings.Replace(sampleStatus, "CapEff:\t0000000000002000", "CapEff:\tzz", 1),
		strings.Replace(sampleStatus, "NoNewPrivs:\t1\n", "", 1),
		"",
	}
	for _, b := range bad {
		if _, err := parseProcStatus(b); err == nil {
			t.Errorf("parsed bad status:\n%s", b)
		}
	}
}

// SPDX-License-Identifier: MIT

package dropprivs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestResultLogValue(t *testing.T) {
	tests := []struct {
		res  Result
		want []string
		not  []string
	}{
		{
			Result{User: "nobody", UID: 65534, GID: 65534, Groups: []int{65534}, Caps: NewCapSet(CapNetRaw), BoundingTrimmed: true},
			[]string{"privs.mode=dropped", "privs.user=nobody", "privs.uid=65534", "privs.gid=65534", "privs.groups=[65534]", "privs.caps=CAP_NET_RAW", "privs.bounding_trimmed=true"},
			[]string{"chroot", "skipped"},
		},
		{
			Result{AlreadyUnprivileged: true, User: "miredo", UID: 998, GID: 998, Chroot: "/var/empty", Skipped: []string{"bounding set: needs CAP_SETPCAP"}},
			[]string{"privs.mode=already-unprivileged", "privs.caps=none", "privs.chroot=/var/empty", `privs.skipped="[bounding set: needs CAP_SETPCAP]"`},
			nil,
		},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("dropped privileges", "privs", tt.res)
		out := buf.String()
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("log %q lacks %q", out, w)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(out, n) {
				t.Errorf("log %q has %q", out, n)
			}
		}
	}
}

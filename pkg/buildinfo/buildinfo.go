// SPDX-License-Identifier: MIT

// Package buildinfo holds the version stamped into the binaries at link time.
//
// The Makefile sets Version with
//
//	-ldflags "-X github.com/miredo-go/miredo/pkg/buildinfo.Version=..."
//
// so that `miredo-* --version` names the exact build an operator runs.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release name; "dev" for builds that were not stamped.
var Version = "dev"

// String describes the build in one line: version, VCS revision when the Go
// toolchain recorded one, and the Go version that built it.
func String(program string) string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " (" + s.Value[:12] + ")"
			}
		}
	}
	return fmt.Sprintf("%s %s%s %s %s/%s", program, Version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// SPDX-License-Identifier: MIT

package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// spdx is the line every source file carries near its top: the licence of
// the whole project is in LICENSE, and each file says which it is under.
const spdx = "SPDX-License-Identifier: MIT"

// TestSPDXHeaders: every Go file, script, build file, unit template, man
// page and nfpm file names its licence in its first lines (Go files as a
// line comment above the build constraint and package comment).
func TestSPDXHeaders(t *testing.T) {
	out, err := exec.Command("git", "-C", "..", "ls-files").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	checked := 0
	for _, f := range strings.Fields(string(out)) {
		if !needsSPDX(f) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("..", f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		checked++
		head := bytes.SplitN(b, []byte("\n"), 6)
		if !bytes.Contains(bytes.Join(head[:min(len(head), 5)], []byte("\n")), []byte(spdx)) {
			t.Errorf("%s: no %q in its first lines", f, spdx)
		}
	}
	if checked < 100 {
		t.Errorf("only %d files checked: is the list of kinds right?", checked)
	}
}

// needsSPDX says which files carry the header: source and build files,
// not data (test vectors, captures, sample configurations).
func needsSPDX(f string) bool {
	if strings.Contains(f, "/testdata/") {
		return false
	}
	switch filepath.Ext(f) {
	case ".go", ".sh", ".yaml", ".in", ".5", ".8":
		return true
	}
	return filepath.Base(f) == "Makefile" || f == ".ci/run" || strings.HasPrefix(f, "packaging/scripts/")
}

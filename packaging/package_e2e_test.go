// SPDX-License-Identifier: MIT

//go:build e2e

package packaging

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pkgRoles are the packages, with the configuration file each ships.
var pkgRoles = []struct{ role, conf string }{
	{"client", "miredo.conf"},
	{"relay", "miredo-relay.conf"},
	{"server", "miredo-server.conf"},
}

// TestPackages builds the packages with `make package`, lints the .debs,
// compares each .rpm with its .deb, then installs, upgrades and purges the
// .debs in a throwaway root: an overlay over / in a private mount
// namespace. The machine's own root, whose Debian miredo is the interop
// reference, is never written to.
func TestPackages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the throwaway root is an overlay mount")
	}
	for _, tool := range []string{"make", "dpkg", "dpkg-deb", "lintian", "rpm", "systemd-analyze", "unshare", "nsenter", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
	start := time.Now()
	tmp := t.TempDir()
	v1 := makePackages(t, tmp, "1.0")
	// lintian runs while the second version builds; a failure below still
	// waits for it (no t.Log after the test ends).
	type lintResult struct {
		out string
		err error
	}
	lint := make(chan lintResult, 1)
	go func() {
		out, err := lintDebs(v1)
		lint <- lintResult{out, err}
	}()
	defer func() {
		r := <-lint
		t.Logf("lintian:\n%s", r.out)
		if r.err != nil {
			t.Errorf("lintian: %v", r.err)
		}
	}()
	v2 := makePackages(t, tmp, "1.1")
	t.Logf("packages built in %v", time.Since(start).Round(time.Millisecond))

	t.Run("rpm", func(t *testing.T) {
		for _, r := range pkgRoles {
			debFiles, debConf := debContents(t, v1.deb(r.role))
			rpmFiles, rpmConf := rpmContents(t, v1.rpm(r.role))
			// The lintian override is Debian's business.
			debFiles = slices.DeleteFunc(debFiles, func(p string) bool { return strings.HasPrefix(p, "/usr/share/lintian/") })
			if !slices.Equal(debFiles, rpmFiles) {
				t.Errorf("%s: the rpm holds\n%s\nthe deb\n%s", r.role, strings.Join(rpmFiles, "\n"), strings.Join(debFiles, "\n"))
			}
			if want := []string{"/etc/miredo/" + r.conf}; !slices.Equal(debConf, want) || !slices.Equal(rpmConf, want) {
				t.Errorf("%s: configuration files: deb %v, rpm %v, want %v", r.role, debConf, rpmConf, want)
			}
		}
	})

	t.Run("install-upgrade-purge", func(t *testing.T) {
		installUpgradePurge(t, tmp, v1, v2)
	})

	t.Logf("installed, upgraded and purged %v after the start", time.Since(start).Round(time.Millisecond))
}

// dist is one `make package` output.
type dist struct{ dir, version string }

func (d dist) deb(role string) string {
	return filepath.Join(d.dir, fmt.Sprintf("miredo-go-%s_%s_%s.deb", role, d.version, debArch()))
}

func (d dist) rpm(role string) string {
	m, _ := filepath.Glob(filepath.Join(d.dir, fmt.Sprintf("miredo-go-%s-%s-1.*.rpm", role, d.version)))
	if len(m) != 1 {
		return filepath.Join(d.dir, "no rpm for "+role)
	}
	return m[0]
}

func debArch() string {
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// makePackages runs `make package` for version into its own directory.
func makePackages(t *testing.T, tmp, version string) dist {
	t.Helper()
	d := dist{dir: filepath.Join(tmp, "dist-"+version), version: version}
	cmd := exec.Command("make", "-s", "-C", "..", "package", "DIST="+d.dir, "PKG_VERSION="+version, "PKG_STAGE="+filepath.Join(tmp, "stage"))
	// Not a sub-make of `make check`: its flags (a jobserver, say) would
	// not reach this make through go test intact.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	for _, r := range pkgRoles {
		for _, p := range []string{d.deb(r.role), d.rpm(r.role)} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("make package made no %s: %v", filepath.Base(p), err)
			}
		}
	}
	return d
}

// lintDebs runs lintian on the .debs and returns what it said, and an
// error for any error or warning: one the project keeps must be overridden
// in the package and explained in packaging/README.md.
func lintDebs(d dist) (string, error) {
	// Overridden tags are shown (as O:) but fail nothing; any E: or W:
	// line does.
	args := []string{"--allow-root", "--display-level", ">=pedantic", "--show-overrides", "--fail-on", "none"}
	for _, r := range pkgRoles {
		args = append(args, d.deb(r.role))
	}
	out, err := exec.Command("lintian", args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			return string(out), fmt.Errorf("%s", line)
		}
	}
	return string(out), err
}

// debContents lists a .deb's files (not directories) and conffiles.
func debContents(t *testing.T, deb string) (files, conffiles []string) {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c %s: %v", deb, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || strings.HasPrefix(f[0], "d") {
			continue
		}
		files = append(files, strings.TrimPrefix(f[5], "."))
	}
	out, err = exec.Command("dpkg-deb", "-I", deb, "conffiles").Output()
	if err != nil {
		t.Fatalf("dpkg-deb -I %s conffiles: %v", deb, err)
	}
	conffiles = strings.Fields(string(out))
	slices.Sort(files)
	return files, conffiles
}

// rpmContents lists an .rpm's files (not directories) and config files.
func rpmContents(t *testing.T, rpm string) (files, config []string) {
	t.Helper()
	out, err := exec.Command("rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", rpm).Output()
	if err != nil {
		t.Fatalf("rpm -qp %s: %v", rpm, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		perms, name, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(perms, "d") {
			files = append(files, name)
		}
	}
	if out, err = exec.Command("rpm", "-qlp", rpm).Output(); err != nil {
		t.Fatalf("rpm -qlp %s: %v", rpm, err)
	}
	listed := strings.Fields(string(out))
	for _, f := range files {
		if !slices.Contains(listed, f) {
			t.Errorf("rpm -qlp %s does not list %s", rpm, f)
		}
	}
	if out, err = exec.Command("rpm", "-qcp", rpm).Output(); err != nil {
		t.Fatalf("rpm -qcp %s: %v", rpm, err)
	}
	slices.Sort(files)
	return files, strings.Fields(string(out))
}

func installUpgradePurge(t *testing.T, tmp string, v1, v2 dist) {
	root := newThrowawayRoot(t, filepath.Join(tmp, "ns"))
	// The packages go into the root's own /tmp, which its dpkg can read.
	debs := func(d dist, roles ...string) []string {
		var out []string
		for _, r := range roles {
			b, err := os.ReadFile(d.deb(r))
			if err != nil {
				t.Fatal(err)
			}
			in := "/tmp/" + filepath.Base(d.deb(r))
			if err := os.WriteFile(root.path(in), b, 0o644); err != nil {
				t.Fatal(err)
			}
			out = append(out, in)
		}
		return out
	}

	// Exercise the user's creation: drop the miredo user Debian's miredo
	// made (in the throwaway root only); the packages make their own.
	// --force: a lab test may be running Debian's miredo as that user.
	if _, err := root.output("getent", "passwd", "miredo"); err == nil {
		root.run(t, "userdel", "--force", "miredo")
	}
	debianMiredo := root.status("miredo") == "install ok installed"
	debianServer := root.status("miredo-server") == "install ok installed"

	// The relay first: it shares no path with Debian's miredo, which stays.
	root.run(t, append([]string{"dpkg", "-i"}, debs(v1, "relay")...)...)
	if debianMiredo && root.status("miredo") != "install ok installed" {
		t.Errorf("installing the relay removed Debian's miredo: %s", root.status("miredo"))
	}
	pw, err := root.output("getent", "passwd", "miredo")
	if err != nil {
		t.Fatalf("no miredo user after installing the relay: %v", err)
	}
	f := strings.Split(strings.TrimSpace(pw), ":")
	if uid, _ := strconv.Atoi(f[2]); len(f) != 7 || uid == 0 || uid >= 1000 || f[5] != "/nonexistent" || f[6] != "/usr/sbin/nologin" {
		t.Errorf("miredo user %q: want a system uid, home /nonexistent, shell /usr/sbin/nologin", pw)
	}

	// Client and server take the place of Debian's miredo and miredo-server
	// (Conflicts and Replaces), and find the user made.
	root.run(t, append([]string{"dpkg", "-i"}, debs(v1, "client", "server")...)...)
	if debianMiredo && !strings.HasSuffix(root.status("miredo"), " config-files") {
		t.Errorf("Debian's miredo after installing the client: %q, want removed", root.status("miredo"))
	}
	if debianServer && !strings.HasSuffix(root.status("miredo-server"), " config-files") {
		t.Errorf("Debian's miredo-server after installing the server: %q, want removed", root.status("miredo-server"))
	}
	if pw2, _ := root.output("getent", "passwd", "miredo"); pw2 != pw {
		t.Errorf("the miredo user changed: %q, then %q", pw, pw2)
	}
	root.nothingRunning(t)

	installed := map[string][]string{} // package -> its files
	for _, r := range pkgRoles {
		pkg := "miredo-go-" + r.role
		if v := root.version(pkg); v != v1.version {
			t.Fatalf("%s version %q, want %s", pkg, v, v1.version)
		}
		list, err := root.output("dpkg", "-L", pkg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range strings.Fields(list) {
			fi, err := os.Lstat(root.path(p))
			if err != nil {
				t.Errorf("%s: %v", pkg, err)
			} else if !fi.IsDir() {
				installed[pkg] = append(installed[pkg], p)
			}
		}
		for _, want := range []string{"/usr/sbin/miredo-" + r.role, "/usr/lib/systemd/system/miredo-" + r.role + ".service",
			"/usr/share/man/man8/miredo-" + r.role + ".8.gz", "/usr/share/man/man5/" + r.conf + ".5.gz",
			"/etc/miredo/" + r.conf, "/usr/share/doc/" + pkg + "/copyright"} {
			if !slices.Contains(installed[pkg], want) {
				t.Errorf("%s does not install %s: %v", pkg, want, installed[pkg])
			}
		}
		if out, err := root.output("/usr/sbin/miredo-"+r.role, "--version"); err != nil {
			t.Errorf("miredo-%s --version: %v %s", r.role, err, out)
		}
	}

	// systemd loads the installed units: the programs they run, the user
	// and the man pages they name exist.
	var units []string
	for _, r := range pkgRoles {
		units = append(units, "/usr/lib/systemd/system/miredo-"+r.role+".service")
	}
	if out, err := root.output(append([]string{"systemd-analyze", "verify", "--man=yes"}, units...)...); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The operator edits each file and enables the client; an upgrade
	// keeps both.
	const edit = "# edited by the operator\n"
	for _, r := range pkgRoles {
		p := root.path("/etc/miredo/" + r.conf)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(b, edit...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root.run(t, "systemctl", "enable", "miredo-client.service")
	wants := "/etc/systemd/system/multi-user.target.wants/miredo-client.service"
	if _, err := os.Lstat(root.path(wants)); err != nil {
		t.Fatalf("systemctl enable made no link: %v", err)
	}

	root.run(t, append([]string{"dpkg", "-i"}, debs(v2, "client", "relay", "server")...)...)
	for _, r := range pkgRoles {
		pkg := "miredo-go-" + r.role
		if v := root.version(pkg); v != v2.version {
			t.Errorf("%s version %q after the upgrade, want %s", pkg, v, v2.version)
		}
		b, err := os.ReadFile(root.path("/etc/miredo/" + r.conf))
		if err != nil || !bytes.HasSuffix(b, []byte(edit)) {
			t.Errorf("/etc/miredo/%s lost the operator's edit in the upgrade: %v\n%s", r.conf, err, b)
		}
		for _, suffix := range []string{".dpkg-new", ".dpkg-dist", ".dpkg-old"} {
			if _, err := os.Lstat(root.path("/etc/miredo/" + r.conf + suffix)); err == nil {
				t.Errorf("the upgrade left /etc/miredo/%s%s", r.conf, suffix)
			}
		}
	}
	if _, err := os.Lstat(root.path(wants)); err != nil {
		t.Errorf("the upgrade removed the client's enable link: %v", err)
	}
	root.nothingRunning(t)

	// Purging leaves nothing: no file of the packages, no link, nothing
	// new anywhere but in dpkg's own records and logs.
	root.run(t, "dpkg", "--purge", "miredo-go-client", "miredo-go-relay", "miredo-go-server")
	for pkg, files := range installed {
		for _, p := range files {
			if _, err := os.Lstat(root.path(p)); err == nil {
				t.Errorf("%s purged, %s is still there", pkg, p)
			}
		}
	}
	if _, err := os.Lstat(root.path(wants)); err == nil {
		t.Errorf("%s is still there after the purge", wants)
	}
	if left := root.leftovers(t); len(left) > 0 {
		t.Errorf("the purge left:\n%s", strings.Join(left, "\n"))
	}
	root.nothingRunning(t)
}

// throwawayRoot is an overlay over / in a mount namespace of its own, held
// open by a sleeping process: everything written to it lands in a tmpfs
// that only that namespace sees, and goes with it.
type throwawayRoot struct {
	pid   int
	dir   string // the overlay's mount point, inside the namespace
	upper string
	mntNS string
}

func newThrowawayRoot(t *testing.T, dir string) *throwawayRoot {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "infinity")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	r := &throwawayRoot{pid: holder.Process.Pid, dir: filepath.Join(dir, "root"), upper: filepath.Join(dir, "upper")}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	deadline := time.Now().Add(10 * time.Second)
	for { // unshare has made the namespace once it execs sleep
		r.mntNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", r.pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", r.pid))
		if r.mntNS != "" && r.mntNS != self && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare made no mount namespace (ns %q, comm %q)", r.mntNS, comm)
		}
		time.Sleep(10 * time.Millisecond)
	}
	work := filepath.Join(dir, "work")
	for _, args := range [][]string{
		{"mount", "-t", "tmpfs", "-o", "mode=0755", "throwaway-root", dir},
		{"mkdir", r.upper, work, r.dir},
		{"mount", "-t", "overlay", "overlay", "-o", "lowerdir=/,upperdir=" + r.upper + ",workdir=" + work, r.dir},
		{"mount", "-t", "proc", "proc", filepath.Join(r.dir, "proc")},
		{"mount", "--rbind", "/dev", filepath.Join(r.dir, "dev")},
		{"mount", "-t", "tmpfs", "tmpfs", filepath.Join(r.dir, "run")},
		{"mount", "-t", "tmpfs", "tmpfs", filepath.Join(r.dir, "tmp")},
	} {
		if out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(r.pid), "-m", "--"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	// No service may start from a maintainer script, and man-db need not
	// rebuild its index after each package.
	if err := os.WriteFile(r.path("/usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.path("/var/lib/man-db/auto-update")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return r
}

// path is p inside the throwaway root, as this process can reach it.
func (r *throwawayRoot) path(p string) string {
	return fmt.Sprintf("/proc/%d/root%s%s", r.pid, r.dir, p)
}

func (r *throwawayRoot) command(args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(r.pid), "-m", "--", "chroot", r.dir,
		"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}, args...)
	cmd := exec.Command("nsenter", full...)
	cmd.Stdin = nil // dpkg must not wait for an answer
	return cmd
}

// output runs args in the root and returns its standard output and error
// together.
func (r *throwawayRoot) output(args ...string) (string, error) {
	out, err := r.command(args...).CombinedOutput()
	return string(out), err
}

func (r *throwawayRoot) run(t *testing.T, args ...string) {
	t.Helper()
	out, err := r.output(args...)
	t.Logf("%s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
}

func (r *throwawayRoot) status(pkg string) string {
	out, _ := r.command("dpkg-query", "-W", "-f=${Status}", pkg).Output()
	return string(out)
}

func (r *throwawayRoot) version(pkg string) string {
	out, _ := r.command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	return string(out)
}

// nothingRunning checks that no process but the holder is left in the
// root's mount namespace: a maintainer script started no daemon.
func (r *throwawayRoot) nothingRunning(t *testing.T) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		if pid == r.pid {
			continue
		}
		if ns, err := os.Readlink(p + "/ns/mnt"); err == nil && ns == r.mntNS {
			cmdline, _ := os.ReadFile(p + "/cmdline")
			t.Errorf("process %d runs in the throwaway root: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}

// keptAfterPurge are the places where installing and purging may leave
// something new: dpkg's records and logs, caches, the user database (the
// miredo user stays, as Debian's system users do), and the test's own
// policy-rc.d.
var keptAfterPurge = []string{
	"var/lib/dpkg/", "var/log/", "var/cache/", "var/lib/systemd/deb-systemd-helper-masked/",
	"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/.pwd.lock", "etc/subuid", "etc/subgid",
	"usr/sbin/policy-rc.d",
}

// leftovers lists what the overlay's upper layer holds that the machine's
// root does not: files and directories made since the root was set up,
// less keptAfterPurge. Deletions (whiteouts) and changed files that were
// there before are not leftovers.
func (r *throwawayRoot) leftovers(t *testing.T) []string {
	t.Helper()
	upper := fmt.Sprintf("/proc/%d/root%s", r.pid, r.upper)
	var left []string
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		if rel == "." {
			return nil
		}
		for _, k := range keptAfterPurge {
			if rel == strings.TrimSuffix(k, "/") || strings.HasPrefix(rel, k) || strings.HasPrefix(rel, k+"-") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
			return nil // a whiteout: something deleted
		}
		if _, err := os.Lstat("/" + rel); err != nil {
			left = append(left, "/"+rel)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// SPDX-License-Identifier: MIT

package dropprivs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultUser is the account Drop switches to when Config.User is empty.
const DefaultUser = "nobody"

var (
	// ErrCgo: the binary was built with cgo, where Go cannot change
	// per-thread state on every thread (syscall.AllThreadsSyscall).
	ErrCgo = errors.New("dropping capabilities needs a binary built with CGO_ENABLED=0")
	// ErrRoot: the process would still run as uid 0.
	ErrRoot = errors.New("refusing to run as root")
	// ErrMissingCaps: a capability to keep is not in the permitted set.
	ErrMissingCaps = errors.New("capability to keep is not permitted")
)

// Config says what to drop to.
type Config struct {
	// User is the account to switch to, by name or numeric uid; empty
	// means DefaultUser. It must not be uid 0.
	User string
	// Chroot, if set, is the directory to chroot into; the working
	// directory becomes its root.
	Chroot string
	// Keep is the set of capabilities to keep, permitted and effective.
	// Everything else leaves the permitted, effective and bounding sets;
	// the inheritable and ambient sets are emptied, so nothing passes to a
	// program the daemon runs (and no_new_privs stops setuid programs).
	Keep CapSet
}

// Result says what Drop did, for the caller to log.
type Result struct {
	// AlreadyUnprivileged is true when the process was not root to begin
	// with: Drop then only trimmed capabilities.
	AlreadyUnprivileged bool
	User                string // name of the account the process runs as
	UID, GID            int
	Groups              []int  // supplementary groups
	Chroot              string // the new root, "" if none
	Caps                CapSet // permitted and effective capabilities now
	BoundingTrimmed     bool   // the bounding set now holds only Caps
	// Skipped names each requested step that was not done, and why.
	Skipped []string
}

// LogValue lets a Result be logged as one slog group with stable keys.
func (r Result) LogValue() slog.Value {
	mode := "dropped"
	if r.AlreadyUnprivileged {
		mode = "already-unprivileged"
	}
	attrs := []slog.Attr{
		slog.String("mode", mode),
		slog.String("user", r.User),
		slog.Int("uid", r.UID),
		slog.Int("gid", r.GID),
		slog.Any("groups", r.Groups),
		slog.String("caps", r.Caps.String()),
		slog.Bool("bounding_trimmed", r.BoundingTrimmed),
	}
	if r.Chroot != "" {
		attrs = append(attrs, slog.String("chroot", r.Chroot))
	}
	if len(r.Skipped) > 0 {
		attrs = append(attrs, slog.Any("skipped", r.Skipped))
	}
	return slog.GroupValue(attrs...)
}

// Drop gives up privileges as cfg says; call it once every privileged
// resource is open. As root it chroots (if asked), switches to the user
// with the user's primary group and the supplementary groups /etc/group
// lists for it (as initgroups(3) and systemd's User= do), and keeps only
// cfg.Keep. When already unprivileged it only trims capabilities to
// cfg.Keep. Either way it sets no_new_privs and fails with ErrRoot if the
// process would still run as uid 0.
//
// On error the process may be left partly dropped and should exit.
func Drop(cfg Config) (Result, error) {
	if err := probeAllThreads(); err != nil {
		return Result{}, err
	}
	if os.Geteuid() == 0 {
		return dropRoot(cfg)
	}
	return trim(cfg)
}

// dropRoot is the path for a process started as root. The order matters:
// the user database is read before chroot hides it; the bounding set is cut
// while CAP_SETPCAP is still effective; keep-caps carries the permitted set
// across setuid, which empties the effective set; capset then sets both to
// exactly cfg.Keep.
func dropRoot(cfg Config) (Result, error) {
	res := Result{Chroot: cfg.Chroot}
	name := cfg.User
	if name == "" {
		name = DefaultUser
	}
	u, err := lookupUser(name)
	if err != nil {
		return res, err
	}
	uid, gid, groups, err := ids(u)
	if err != nil {
		return res, err
	}
	if uid == 0 {
		return res, fmt.Errorf("dropprivs: %w: user %q has uid 0; choose an unprivileged user", ErrRoot, name)
	}
	res.User = u.Username // read now: a chroot may hide /etc/passwd
	cur, err := capGet()
	if err != nil {
		return res, err
	}
	if missing := cfg.Keep.Without(cur.permitted); missing != 0 {
		return res, fmt.Errorf("dropprivs: %w: %s (permitted: %s)", ErrMissingCaps, missing, cur.permitted)
	}
	last, err := lastCap()
	if err != nil {
		return res, err
	}

	if cfg.Chroot != "" {
		// chroot and chdir act on the filesystem context that all of Go's
		// threads share (CLONE_FS), so one call is enough.
		if err := unix.Chroot(cfg.Chroot); err != nil {
			return res, fmt.Errorf("dropprivs: chroot %s: %w", cfg.Chroot, err)
		}
		if err := unix.Chdir("/"); err != nil {
			return res, fmt.Errorf("dropprivs: chdir / in chroot: %w", err)
		}
	}
	if cfg.Keep != 0 {
		if err := prctlAllThreads(unix.PR_SET_KEEPCAPS, 1); err != nil {
			return res, fmt.Errorf("dropprivs: set keep-caps: %w", err)
		}
	}
	if err := trimBounding(cfg.Keep, last); err != nil {
		return res, err
	}
	res.BoundingTrimmed = true
	if err := clearAmbient(); err != nil {
		return res, err
	}
	if err := syscall.Setgroups(groups); err != nil {
		return res, fmt.Errorf("dropprivs: setgroups %v: %w", groups, err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return res, fmt.Errorf("dropprivs: setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return res, fmt.Errorf("dropprivs: setresuid %d: %w", uid, err)
	}
	if err := capSetAllThreads(capState{effective: cfg.Keep, permitted: cfg.Keep}); err != nil {
		return res, err
	}
	if cfg.Keep != 0 {
		if err := prctlAllThreads(unix.PR_SET_KEEPCAPS, 0); err != nil {
			return res, fmt.Errorf("dropprivs: clear keep-caps: %w", err)
		}
	}
	return finish(res, cfg.Keep)
}

// trim is the path for a process that is not root: it cannot switch user
// or chroot and needs nothing from them, so it only narrows capabilities.
func trim(cfg Config) (Result, error) {
	res := Result{AlreadyUnprivileged: true}
	cur, err := capGet()
	if err != nil {
		return res, err
	}
	if missing := cfg.Keep.Without(cur.permitted); missing != 0 {
		return res, fmt.Errorf("dropprivs: %w: %s (permitted: %s; under systemd add them to AmbientCapabilities=)", ErrMissingCaps, missing, cur.permitted)
	}
	if cfg.Chroot != "" {
		res.Skipped = append(res.Skipped, "chroot: not root (use systemd's RootDirectory=)")
	}
	if cfg.User != "" {
		if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err != nil || (u.Username != cfg.User && u.Uid != cfg.User) {
			res.Skipped = append(res.Skipped, "user switch: already running unprivileged")
		}
	}
	if cur.effective.Has(CapSetPCap) {
		last, err := lastCap()
		if err != nil {
			return res, err
		}
		if err := trimBounding(cfg.Keep, last); err != nil {
			return res, err
		}
		res.BoundingTrimmed = true
	} else {
		res.Skipped = append(res.Skipped, "bounding set: needs CAP_SETPCAP (use systemd's CapabilityBoundingSet=)")
	}
	if err := clearAmbient(); err != nil {
		return res, err
	}
	if err := capSetAllThreads(capState{effective: cfg.Keep, permitted: cfg.Keep}); err != nil {
		return res, err
	}
	return finish(res, cfg.Keep)
}

// finish sets no_new_privs, then checks and reports the state the process
// is really in.
func finish(res Result, keep CapSet) (Result, error) {
	if err := prctlAllThreads(unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
		return res, fmt.Errorf("dropprivs: set no_new_privs: %w", err)
	}
	ruid, euid, suid := unix.Getresuid()
	if ruid == 0 || euid == 0 || suid == 0 {
		return res, fmt.Errorf("dropprivs: %w: uids are %d/%d/%d after the drop", ErrRoot, ruid, euid, suid)
	}
	res.UID, res.GID = euid, os.Getegid()
	if res.User == "" {
		res.User = strconv.Itoa(euid)
		if u, err := user.LookupId(res.User); err == nil {
			res.User = u.Username
		}
	}
	groups, err := syscall.Getgroups()
	if err != nil {
		return res, fmt.Errorf("dropprivs: getgroups: %w", err)
	}
	res.Groups = groups
	now, err := capGet()
	if err != nil {
		return res, err
	}
	res.Caps = now.effective
	if now.effective != keep || now.permitted != keep || now.inheritable != 0 {
		return res, fmt.Errorf("dropprivs: capabilities are effective %s, permitted %s, inheritable %s after the drop; want %s",
			now.effective, now.permitted, now.inheritable, keep)
	}
	return res, nil
}

// lookupUser finds an account by name, or by number when the name is one.
// os/user reads /etc/passwd itself when cgo is disabled.
func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dropprivs: look up user %q: %w", name, err)
	}
	return u, nil
}

// ids returns the account's uid, primary gid and the supplementary groups
// that initgroups(3) would set: the primary group plus every group in
// /etc/group that lists the user.
func ids(u *user.User) (uid, gid int, groups []int, err error) {
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, nil, fmt.Errorf("dropprivs: uid %q of %s: %w", u.Uid, u.Username, err)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, nil, fmt.Errorf("dropprivs: gid %q of %s: %w", u.Gid, u.Username, err)
	}
	groups = []int{gid}
	gids, err := u.GroupIds()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("dropprivs: groups of %s: %w", u.Username, err)
	}
	for _, g := range gids {
		n, err := strconv.Atoi(g)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("dropprivs: group id %q of %s: %w", g, u.Username, err)
		}
		if !slices.Contains(groups, n) {
			groups = append(groups, n)
		}
	}
	return uid, gid, groups, nil
}

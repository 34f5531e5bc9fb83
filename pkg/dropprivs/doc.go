// SPDX-License-Identifier: MIT

// Package dropprivs gives up root once a daemon has opened what needs it
// (sockets, the tunnel device): an optional chroot, a switch to an
// unprivileged user, and a capability set trimmed to what the caller names.
//
// What each Teredo role keeps, after upstream Miredo:
//   - a data path (relay, client packet process): nothing;
//   - miredo-server: CAP_NET_RAW, for its raw IPv6 socket;
//   - the client's configuration helper: CAP_NET_ADMIN.
//
// Capabilities, the bounding and ambient sets, the keep-caps flag and
// no_new_privs are per-thread in Linux, and a Go process has many threads.
// The uid and gid calls of package syscall already apply to every thread;
// for the rest this package uses syscall.AllThreadsSyscall, which Go
// provides only in binaries built with CGO_ENABLED=0 (the project's build).
// A cgo binary gets ErrCgo before anything is changed.
//
// Under systemd with User= and AmbientCapabilities= the process starts
// unprivileged: Drop then only trims the capability set (and leaves chroot
// and the bounding set to systemd's RootDirectory= and
// CapabilityBoundingSet=), and says so in its Result.
package dropprivs

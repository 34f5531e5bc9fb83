// SPDX-License-Identifier: MIT

// Package packaging holds no code: the directory carries what installs the
// daemons (systemd units in systemd/, man pages in man/, sample
// configurations in conf/, the nfpm configuration and maintainer scripts
// behind `make package`) and their tests: each unit's hardening against its
// role, systemd-analyze on the installed units, the samples as the daemons
// read them, and (with the e2e tag, as root) the packages built, linted,
// installed, upgraded and purged in a throwaway root.
package packaging

// Package packaging holds no code: the directory carries the systemd units
// (systemd/*.service.in, installed by `make install-units`) and their tests,
// which check each unit's hardening against its role and, where systemd's
// tools are installed, have systemd-analyze verify the installed units
// without starting anything.
package packaging

// SPDX-License-Identifier: MIT

// Package faults holds the fault tests: what users of Teredo report
// breaking (a dead relay, an unreachable server, a lossy path, a NAT that
// forgets mappings quickly, a host that changes address, a boot before DNS
// works, a small path MTU), each done to our client in the lab and timed,
// next to Debian's Miredo under the same fault where it can take it. The
// tests are e2e only; `go test -tags e2e ./internal/faults -full` also
// times Miredo in every NAT placement (CI times it in one).
package faults

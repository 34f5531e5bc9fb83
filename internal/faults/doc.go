// SPDX-License-Identifier: MIT

// Package faults holds the fault tests: what users of Teredo report
// breaking (a dead relay, an unreachable server, a lossy path, a NAT that
// forgets mappings quickly, a host that changes address, a boot before DNS
// works, a small path MTU), each done to our client in the lab and timed,
// next to Debian's Miredo under the same fault where it can take it. The
// tests are e2e only; `make faults` (go test -tags e2e ./internal/faults
// -args -full) also times Miredo under each fault, which CI does not wait
// for (Miredo takes minutes to get over some of them).
package faults

// SPDX-License-Identifier: MIT

// Package soak holds the soak test: our server, relay and twenty clients
// behind two NATs in the lab, under steady traffic with their peers
// churning and a spoofed flood at every daemon every few minutes, sampled
// every 10 s for what leaks show in: resident memory, goroutines, open
// files, peer table size and queued bytes. CI runs it for two minutes;
// `make soak` for thirty (go test -tags e2e ./internal/soak -args
// -duration 30m). The bounds it checks are the same for both.
package soak

// SPDX-License-Identifier: MIT

// Package server is the Teredo server role (RFC 4380 §5.3): router
// solicitations answered on two consecutive IPv4 addresses, bubbles and
// connectivity tests forwarded, nothing else. Only cmd/miredo-server imports
// it.
//
// handler.go holds the rules as a pure function; server.go the sockets and
// the batched loops around it.
package server

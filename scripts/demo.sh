#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo: a whole Teredo network in network namespaces (our server, relay
# and a client behind a NAT, plus a native IPv6 host), showing IPv6 reaching
# the client. Needs root (network namespaces); `make demo` builds bin/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root for network namespaces: sudo make demo" >&2
  exit 1
fi
CGO_ENABLED=0 exec go run ./internal/demo -bin bin "$@"

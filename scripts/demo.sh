#!/usr/bin/env bash
# The demo: a whole Teredo network in network namespaces (server, relay, a
# client behind a NAT, a native IPv6 host), showing IPv6 reaching the client.
set -euo pipefail
echo "demo: not yet: the server, relay and client roles are still being written (issues 4-6)." >&2
echo "demo: 'make test' runs what exists today." >&2
exit 1
